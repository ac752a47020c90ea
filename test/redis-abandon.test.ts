import { afterEach, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import type { LockError } from '../server/src/errors.js';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import type { StoreListener } from '../server/src/store.js';
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
