import { afterEach, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import type { LockError } from '../server/src/errors.js';
import { silentLogger } from '../server/src/logger.js';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import type { LockStore, StoreListener } from '../server/src/store.js';
import { listenerLog, useRedisStores, type ListenerLog } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';
import { RawClient } from './helpers/raw-client.js';

// A node whose replies from Redis come late stops vouching for its locks
// (0.9 x node TTL after the last renew it saw succeed): it reports its holds
// lost and answers its pending requests store_unavailable, then registers
// under a new id and drops what its old id left in Redis. Node `a` reaches
// Redis through a proxy that delays replies; Redis runs every command on time.

const NODE_TTL = 1000;
/** Longer than the node TTL: a request sent once the delay is on is still out when its node gives up. */
const LATE = 1500;

/** A listener log that also records `failed` settlements, as `failed <session> #<ticket> <code>`. */
function failingLog(): ListenerLog & { readonly listener: StoreListener } {
  const log = listenerLog();
  const listener: StoreListener = { ...log.listener, failed: (s, t, e: LockError) => log.push(`failed ${s} #${t} ${e.code}`) };
  return { ...log, listener };
}

/** How a call ended: `answered <status>` or `failed <code>`. */
function outcomeOf(call: Promise<{ status: string }>): Promise<string> {
  return call.then(
    (o) => `answered ${o.status}`,
    (e: { code?: string }) => `failed ${e.code}`,
  );
}

describe('a Redis node that stops vouching while an acquire is in flight', () => {
  const stores = useRedisStores('abandon');

  it('answers the acquire store_unavailable, never granted, when its reply comes after the node gave it up, and the key ends up free', async () => {
    const proxy = await stores.proxy();
    const namespace = stores.namespace();
    const log = failingLog();
    const a = await stores.startStore({ url: proxy.url, namespace, nodeTtl: NODE_TTL, commandTimeout: 5000, tolerateCloseFailure: true }, log.listener);
    const bLog = listenerLog();
    const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl: NODE_TTL }, bLog.listener);
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    proxy.delayReplies(LATE);
    // Redis grants it at once; its reply reaches `a` only after `a` gave up.
    const call = outcomeOf(a.acquire('s', acquireInput(2, 'free')));
    await log.next(/^failed s #2 /, 5000);
    proxy.delayReplies(0);
    expect(await call).toBe('failed store_unavailable');
    // What Redis granted under the old id is released: another node's session gets the key.
    const w = await b.acquire('w', acquireInput(3, 'free'));
    if (w.status === 'queued') await bLog.next(/^granted w #3 /, 3 * NODE_TTL);
    expect((await b.status('free', null)).holders.map((x) => x.session)).toEqual(['w']);
    // `s` was never told it held the key, so it is never told it lost it.
    expect(log.lines).toEqual([`lost h k ${held.token} revoked`, 'failed s #2 store_unavailable']);
  });
});

describe('a Redis node that registers anew after it stopped vouching', () => {
  const stores = useRedisStores('reregister');

  /**
   * Node `a` through a proxy, with `h` holding `k`; `prepare` runs before the
   * replies turn late, `givenUp` once `a` reported the hold lost, its replies
   * still late. Resolves once `a` serves again under a new id (it logs that
   * it dropped what the old id left), with what `givenUp` returned.
   */
  async function nodeThatGaveUp<T>(prepare: (a: LockStore) => Promise<void>, givenUp: (a: LockStore) => T) {
    const proxy = await stores.proxy();
    const log = failingLog();
    const info = listenerLog();
    const logger = { ...silentLogger, info: (_o: object, msg: string) => info.push(msg) };
    const a = await stores.startStore(
      { url: proxy.url, namespace: stores.namespace(), nodeTtl: NODE_TTL, commandTimeout: 5000, tolerateCloseFailure: true, logger },
      log.listener,
    );
    const held = await a.acquire('h', acquireInput(1, 'k'));
    if (held.status !== 'granted') throw new Error('h was not granted');
    await prepare(a);
    proxy.delayReplies(LATE);
    await log.next(/^lost h k /, 5000);
    const during = givenUp(a);
    proxy.delayReplies(0);
    await info.next(/^dropped what previous ids of this node left$/, 3 * NODE_TTL + LATE);
    return { a, log, held, during, info };
  }
  const nothing = async () => {};

  it('reports dropping what its own old id left as that, never as the locks of a dead node', async () => {
    const { info } = await nodeThatGaveUp(nothing, () => null);
    expect(info.lines.filter((line) => line.startsWith('releasing the locks of a dead node'))).toEqual([]);
  });

  it('answers a re-acquire of a lock it reported lost with a new hold, which then stays held', async () => {
    const { a, log, held } = await nodeThatGaveUp(nothing, () => null);
    const again = await a.acquire('h', acquireInput(10, 'k', { acquireTimeout: 0 }));
    if (again.status !== 'granted') throw new Error(`h was answered ${again.status}`);
    expect(again.token).toBeGreaterThan(held.token);
    expect((await a.status('k', null)).holders.map((x) => `${x.session} ${x.token}`)).toEqual([`h ${again.token}`]);
    expect(await a.acquire('w', acquireInput(11, 'k', { acquireTimeout: 0 }))).toEqual({ status: 'not_granted' });
    expect(log.lines).toEqual([`lost h k ${held.token} revoked`]);
  });

  it('answers a retry of an acquire it gave up while queued as a new request, never as already queued', async () => {
    const { a, log, held } = await nodeThatGaveUp(
      async (node) => {
        expect(await node.acquire('q', acquireInput(2, 'k'))).toEqual({ status: 'queued', position: 1 });
      },
      () => null,
    );
    expect(log.lines).toEqual([`lost h k ${held.token} revoked`, 'failed q #2 store_unavailable']);
    // The old id's hold of `h` and queued request of `q` are gone: the retry finds the key free.
    const retry = await a.acquire('q', acquireInput(10, 'k', { acquireTimeout: 0 }));
    expect(retry).toMatchObject({ status: 'granted' });
    expect((await a.status('k', null)).queue).toEqual([]);
  });

  it('answers not_holder an extend of a lock it reported lost, sent before it registered anew (Redis still has the hold then)', async () => {
    const { a, log, held, during } = await nodeThatGaveUp(nothing, (node) => outcomeOf(node.extend('h', 'k', 1000).then(() => ({ status: 'extended' }))));
    expect(await during).toBe('failed not_holder');
    expect((await a.status('k', null)).holders).toEqual([]);
    // Nothing of it was kept as a hold of `h`: a new acquire is granted a new token, and nothing more is reported lost.
    const again = await a.acquire('h', acquireInput(10, 'k', { acquireTimeout: 0 }));
    expect(again).toMatchObject({ status: 'granted' });
    expect(log.lines).toEqual([`lost h k ${held.token} revoked`]);
  });
});

describe("the Redis scripts, for a session's records under another node id", () => {
  const stores = useRedisStores('stale');

  // Session ids are unique to a node, so such a record is left from an id the
  // session's node gave up. Two nodes sharing session names stand for that here.
  it("never answer the session with them: an acquire drops them first, an extend or release answers not_holder", async () => {
    const [old, now] = await stores.startNodes([stores.redis.url, stores.redis.url], { nodeTtl: 30_000 });
    if (!old || !now) throw new Error('two nodes were not started');
    const stale = await old.store.acquire('s', acquireInput(1, 'k'));
    if (stale.status !== 'granted') throw new Error('the stale hold was not granted');
    expect(await old.store.acquire('t', acquireInput(2, 'k2'))).toMatchObject({ status: 'granted' });
    expect(await old.store.acquire('h', acquireInput(3, 'q'))).toMatchObject({ status: 'granted' });
    expect(await old.store.acquire('u', acquireInput(4, 'q'))).toEqual({ status: 'queued', position: 1 });
    const again = await now.store.acquire('s', acquireInput(10, 'k'));
    if (again.status !== 'granted') throw new Error(`s was answered ${again.status}`);
    expect(again.token).toBeGreaterThan(stale.token);
    await expect(now.store.extend('t', 'k2', 1000)).rejects.toMatchObject({ code: 'not_holder' });
    await expect(now.store.release('t', 'k2')).rejects.toMatchObject({ code: 'not_holder' });
    expect(await now.store.acquire('u', acquireInput(11, 'q'))).toEqual({ status: 'queued', position: 1 });
    const status = async (key: string) => {
      const { holders, queue } = await now.store.status(key, null);
      return { holders: holders.map((x) => `${x.session} ${x.token}`), queue: queue.map((x) => x.session) };
    };
    expect({ k: await status('k'), k2: (await status('k2')).holders.length, q: (await status('q')).queue }).toEqual({
      k: { holders: [`s ${again.token}`], queue: [] },
      k2: 1,
      q: ['u'],
    });
  });
});

describe('a wait sent to a Redis node that stopped vouching, before it registered anew', () => {
  const stores = useRedisStores('waitgiveup');

  it('is answered store_unavailable, never free, while another node\'s session still holds the key', async () => {
    const proxy = await stores.proxy();
    const namespace = stores.namespace();
    const log = failingLog();
    const info = listenerLog();
    const logger = { ...silentLogger, info: (_o: object, msg: string) => info.push(msg) };
    const a = await stores.startStore({ url: proxy.url, namespace, nodeTtl: NODE_TTL, commandTimeout: 5000, tolerateCloseFailure: true, logger }, log.listener);
    const b = await stores.startStore({ url: stores.redis.url, namespace, nodeTtl: NODE_TTL }, listenerLog().listener);
    expect(await b.acquire('x', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    expect(await a.acquire('h', acquireInput(2, 'mine'))).toMatchObject({ status: 'granted' });
    proxy.delayReplies(LATE);
    await log.next(/^lost h mine /, 5000);
    // `a` gave its id up and has not registered anew: a wait would go out under the old id, whose cleanup drops its record.
    const wait = a.wait('w', { ticket: 3, key: 'k', timeout: null }).then(
      (state) => `answered ${state}`,
      (e: { code?: string }) => `failed ${e.code}`,
    );
    proxy.delayReplies(0);
    expect(await wait).toBe('failed store_unavailable');
    await info.next(/^dropped what previous ids of this node left$/, 3 * NODE_TTL + LATE);
    // The wait left nothing behind to settle: a wait sent now is pending, and only the end of `x`'s hold frees it.
    expect(await a.wait('w', { ticket: 4, key: 'k', timeout: null })).toBe('pending');
    await b.release('x', 'k');
    expect(await log.next(/ w #/, 3 * NODE_TTL)).toBe('waitDone w #4 true');
    expect(log.lines.filter((l) => / w #3/.test(l))).toEqual([]);
  });
});

describe('on the wire, an acquire in flight when its Redis node stops vouching', () => {
  const stores = useRedisStores('abandonwire');
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close().catch(() => {})));
  });

  it('is answered store_unavailable, not acquired: true, though Redis granted it', async () => {
    const proxy = await stores.proxy();
    const node = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      store: createRedisStore({ url: proxy.url, namespace: stores.namespace(), nodeTtl: NODE_TTL, commandTimeout: 5000 }),
    });
    servers.push(node);
    const h = await RawClient.connect(node.url);
    const c = await RawClient.connect(node.url);
    clients.push(h, c);
    const held = await h.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    proxy.delayReplies(LATE);
    const reply = c.request({ op: 'acquire', key: 'free', acquireTimeout: 0 }, { timeout: 5000 });
    expect(await h.nextLost('k', { timeout: 5000 })).toEqual({ type: 'lost', key: 'k', token: held.token, reason: 'revoked' });
    proxy.delayReplies(0);
    expect(await reply).toMatchObject({ ok: false, error: { code: 'store_unavailable' } });
    expect(c.received('lost')).toEqual([]);
  });
});
