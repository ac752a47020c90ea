import { afterEach, describe, expect, it } from 'vitest';
import { createClient } from 'redis';
import { createManualClock, type ManualClock } from '../src/clock.js';
import { silentLogger } from '../src/logger.js';
import type { Grant, LockEvent, LostLock, StoreListener } from '../src/store.js';
import { decodeKey, encodeKey, keyNames } from '../src/redis/key-codec.js';
import { LateTimers } from '../../test/helpers/conformance-context.js';
import { useRedisStores } from './redis-harness.js';
import { acquireInput } from './server-harness.js';

type Heard =
  | { kind: 'granted'; session: string; ticket: number; grant: Grant }
  | { kind: 'acquireTimedOut'; session: string; ticket: number }
  | { kind: 'waitDone'; session: string; ticket: number; free: boolean }
  | { kind: 'lost'; session: string; lost: LostLock };

/** A listener that records what a store told it and lets a test await it. */
function recorder() {
  const heard: Heard[] = [];
  const waiters: Array<{ match: (h: Heard) => boolean; resolve: (h: Heard) => void }> = [];
  const push = (h: Heard) => {
    heard.push(h);
    for (const w of [...waiters]) {
      if (w.match(h)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(h);
      }
    }
  };
  const listener: StoreListener = {
    granted: (session, ticket, grant) => push({ kind: 'granted', session, ticket, grant }),
    acquireTimedOut: (session, ticket) => push({ kind: 'acquireTimedOut', session, ticket }),
    waitDone: (session, ticket, free) => push({ kind: 'waitDone', session, ticket, free }),
    lost: (session, lost) => push({ kind: 'lost', session, lost }),
  };
  const next = (match: (h: Heard) => boolean, timeoutMs = 5000): Promise<Heard> => {
    const found = heard.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing matching heard within ${timeoutMs} ms: ${JSON.stringify(heard)}`)), timeoutMs);
      waiters.push({ match, resolve: (h) => (clearTimeout(timer), resolve(h)) });
    });
  };
  return { heard, listener, next };
}

describe('the key encoding', () => {
  it('round-trips every code unit, including lone surrogates, NUL, braces, CRLF and the empty key', () => {
    for (const key of ['', '\u0000', '\ud800', '\udfff', '{a}*\r\n ', '😀', 'x'.repeat(256)]) {
      expect(decodeKey(encodeKey(key))).toBe(key);
      expect(encodeKey(key)).toMatch(/^k[0-9a-f]*$/);
    }
  });

  it('sorts and prefixes bytewise exactly as the keys do by code unit', () => {
    const keys = ['b', 'a', '\ud800', '\ufffd', 'ab', '', 'a\u0000', '😀'];
    const byCodeUnit = [...keys].sort();
    const byEncoding = [...keys].sort((x, y) => (encodeKey(x) < encodeKey(y) ? -1 : encodeKey(x) > encodeKey(y) ? 1 : 0));
    expect(byEncoding).toEqual(byCodeUnit);
    expect(encodeKey('ab').startsWith(encodeKey('a'))).toBe(true);
  });

  it('puts the five keys of a lock key, the empty key too, under one non-empty hash tag', () => {
    const names = keyNames('lw');
    for (const key of ['', 'doc:{42}']) {
      const tags = names.lockKeys(encodeKey(key)).map((name) => /\{([^}]*)\}/.exec(name)?.[1]);
      expect(new Set(tags).size).toBe(1);
      expect(tags[0]).toBe(encodeKey(key));
    }
  });
});

describe('the Redis store on one redis-server', () => {
  let clock: ManualClock;
  // Registered before the harness's hooks, so it runs after they closed the stores.
  afterEach(() => {
    expect(clock.pending()).toBe(0);
  });
  const stores = useRedisStores('st');

  /** Starts `n` nodes (stores) sharing one fresh namespace, on Redis' own URL unless `url` says otherwise. */
  async function nodes(n: number, { nodeTtl = 5000, url = stores.redis.url }: { nodeTtl?: number; url?: string } = {}) {
    clock = createManualClock();
    const made = await stores.startNodes(Array.from({ length: n }, () => url), { nodeTtl, clock }, recorder);
    return made.map(({ store, log, namespace }) => ({ store, namespace, ...log }));
  }

  it('pushes a grant to the waiter node when another node releases, with a greater token', async () => {
    const [n1, n2] = await nodes(2);
    if (!n1 || !n2) throw new Error('nodes');
    const first = await n1.store.acquire('a', acquireInput(1, 'k'));
    expect(first).toMatchObject({ status: 'granted' });
    expect(await n2.store.acquire('b', acquireInput(1, 'k'))).toEqual({ status: 'queued', position: 1 });
    await n1.store.release('a', 'k');
    const heard = await n2.next((h) => h.kind === 'granted');
    if (heard.kind !== 'granted' || first.status !== 'granted') throw new Error('unexpected');
    expect(heard).toMatchObject({ session: 'b', ticket: 1, grant: { key: 'k', expiresAt: null } });
    expect(heard.grant.token).toBeGreaterThan(first.token);
    expect(n1.heard).toEqual([]);
  });

  it('reads the broadcasts that arrive while it registers, without an error', async () => {
    const [busy] = await nodes(1);
    if (!busy) throw new Error('nodes');
    // Another node's steps, each broadcast, one after the other while the new node starts.
    let running = true;
    let ticket = 0;
    const traffic = (async () => {
      while (running) {
        await busy.store.acquire('s', acquireInput(++ticket, 'busy'));
        await busy.store.release('s', 'busy');
      }
    })();
    const errors: string[] = [];
    const logger = { ...silentLogger, error: (o: object, msg: string) => errors.push(`${msg} ${JSON.stringify(o)}`) };
    const before = ticket;
    await stores.startStore({ url: stores.redis.url, namespace: busy.namespace, nodeTtl: 5000, clock, logger }, recorder().listener);
    const during = ticket;
    running = false;
    await traffic;
    // Steps ran while it started (each with a round trip or two, as its registration).
    expect(during).toBeGreaterThan(before);
    expect(errors).toEqual([]);
  });

  it("adds its clock's resolution to a hold's length on grant and on extend, as the memory store does", async () => {
    clock = createManualClock();
    const manual = clock;
    // A clock like Date.now(): now() may lag the true time by up to 1 ms.
    const truncating = {
      now: () => manual.now(),
      monotonic: () => manual.monotonic(),
      setTimeout: (fn: () => void, ms: number) => manual.setTimeout(fn, ms),
      clearTimeout: (handle: unknown) => manual.clearTimeout(handle),
      resolution: 1,
    };
    const [node] = await stores.startNodes([stores.redis.url], { nodeTtl: 5000, clock: truncating }, recorder);
    if (!node) throw new Error('node');
    const granted = await node.store.acquire('a', acquireInput(1, 'k', { holdTimeout: 100 }));
    expect(granted).toMatchObject({ status: 'granted', expiresAt: manual.now() + 101 });
    expect(await node.store.extend('a', 'k', 250.5)).toBe(manual.now() + 252);
  });

  it("ends a closing session's hold that fell due before its timer ran as expired, unless an extend in flight moved its expiry", async () => {
    clock = createManualClock();
    // Timers that fall due are held back, as in a loaded process whose timers run late.
    const late = new LateTimers(clock);
    const [node] = await stores.startNodes([stores.redis.url], { nodeTtl: 5000, clock: late.clock }, recorder);
    if (!node) throw new Error('node');
    const { store, log } = node;
    const events: LockEvent[] = [];
    await store.watch('', 100, null, (event) => events.push(event));
    const endOf = async (key: string) => {
      // A status of the key waits for this node's steps of it.
      await store.status(key, null);
      return events.filter((e) => e.key === key && e.event !== 'acquired').map((e) => `${e.session} ${e.event}`);
    };
    for (const [session, key] of [['a', 'k1'], ['b', 'k2'], ['c', 'k3'], ['d', 'k4']] as const) {
      await store.acquire(session, acquireInput(1, key, { holdTimeout: 100 }));
    }
    // Sent before the deadline: Redis extends b's hold before b's drop runs.
    const extended = store.extend('b', 'k2', 500);
    late.advanceHolding(100);
    expect(late.held).toBe(4);
    // Closed while the extend's answer, which would re-arm its timer, is still on its way.
    const closedB = store.closeSession('b');

    await store.closeSession('a');
    expect(await endOf('k1')).toEqual(['a expired']);
    await closedB;
    await extended;
    expect(await endOf('k2')).toEqual(['b released']);
    // Revoked (its credentials expired): the holder, still connected, is told it expired.
    await store.closeSession('c', 'revoked');
    expect(await endOf('k3')).toEqual(['c expired']);
    // Each expired hold is reported lost, as on the memory store; the released one is not.
    const lost = () => log.heard.flatMap((h) => (h.kind === 'lost' ? [`${h.session} ${h.lost.key} ${h.lost.reason}`] : []));
    expect(lost()).toEqual(['a k1 expired', 'c k3 expired']);
    // d's timer, run late, ends its hold; the closed sessions' timers went with them.
    expect(late.held).toBe(1);
    late.runHeld();
    expect(await endOf('k4')).toEqual(['d expired']);
    expect(lost()).toEqual(['a k1 expired', 'c k3 expired', 'd k4 expired']);
  });

  it('resolves an acquire timeout racing a grant one way only', async () => {
    const [n1, n2] = await nodes(2);
    if (!n1 || !n2) throw new Error('nodes');
    for (let round = 0; round < 20; round++) {
      const key = `race${round}`;
      await n1.store.acquire('a', acquireInput(100 + round, key));
      await n2.store.acquire('b', acquireInput(200 + round, key, { acquireTimeout: 1000 }));
      const released = n1.store.release('a', key);
      clock.advance(1000);
      await released;
      const outcome = await n2.next((h) => 'ticket' in h && h.ticket === 200 + round);
      const status = await n1.store.status(key, null);
      if (outcome.kind === 'granted') {
        expect(status.holders.map((h) => h.session)).toEqual(['b']);
        await n2.store.release('b', key);
      } else {
        expect(outcome.kind).toBe('acquireTimedOut');
        expect(status).toMatchObject({ locked: false, queue: [] });
      }
      const settled = n2.heard.filter((h) => 'ticket' in h && h.ticket === 200 + round);
      expect(settled).toHaveLength(1);
    }
  });

  it('reconciles a grant whose notification was lost while its node resubscribed', async () => {
    const [n1, n2] = await nodes(2);
    if (!n1 || !n2) throw new Error('nodes');
    await n1.store.acquire('a', acquireInput(1, 'k'));
    await n2.store.acquire('b', acquireInput(1, 'k'));
    const admin = createClient({ url: stores.redis.url });
    await admin.connect();
    try {
      // Cut every pub/sub connection; the grant is published while they reconnect.
      await admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
      await n1.store.release('a', 'k');
    } finally {
      admin.destroy();
    }
    const heard = await n2.next((h) => h.kind === 'granted');
    expect(heard).toMatchObject({ session: 'b', ticket: 1 });
    expect((await n2.store.status('k', 'b')).heldByYou).toBe(true);
  });

  it('settles a wait when the holds present at its start end, on another node', async () => {
    const [n1, n2] = await nodes(2);
    if (!n1 || !n2) throw new Error('nodes');
    await n1.store.acquire('a', acquireInput(1, 'k', { mode: 'shared' }));
    await n1.store.acquire('c', acquireInput(2, 'k', { mode: 'shared' }));
    expect(await n2.store.wait('w', { ticket: 1, key: 'k', timeout: null })).toBe('pending');
    await n1.store.release('a', 'k');
    await n1.store.acquire('a', acquireInput(3, 'k', { mode: 'shared' }));
    expect(n2.heard).toEqual([]);
    await n1.store.release('c', 'k');
    expect(await n2.next((h) => h.kind === 'waitDone')).toMatchObject({ session: 'w', ticket: 1, free: true });
  });

  it('keeps tokens rising after FLUSHALL and tells the holder its lock was revoked before granting again', async () => {
    const [n1, n2] = await nodes(2, { nodeTtl: 1000 });
    if (!n1 || !n2) throw new Error('nodes');
    const before = await n1.store.acquire('a', acquireInput(1, 'k'));
    if (before.status !== 'granted') throw new Error('not granted');
    const admin = createClient({ url: stores.redis.url });
    await admin.connect();
    await admin.sendCommand(['FLUSHALL']);
    admin.destroy();
    // Another node tries at once and keeps trying, as fast as it can;
    // whenever it is granted, the old holder must already know.
    let afterToken: number;
    let refused = 0;
    const deadline = Date.now() + 5000;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`k was not granted again within 5000 ms (${refused} tries refused)`);
      const after = await n2.store
        .acquire('b', acquireInput(1, 'k', { acquireTimeout: 0 }))
        .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      if (after instanceof Error) expect(after).toMatchObject({ code: 'store_unavailable' });
      else if (after.status === 'granted') {
        afterToken = after.token;
        break;
      }
      refused++;
      // A refusal can come without a round trip; let the node's timers run before the next try.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(n1.heard).toEqual([{ kind: 'lost', session: 'a', lost: { key: 'k', token: before.token, reason: 'revoked' } }]);
    expect(refused).toBeGreaterThan(0);
    expect(afterToken).toBeGreaterThan(before.token);
  });

  /** Calls per command name since the last `CONFIG RESETSTAT`. */
  async function commandCalls(admin: ReturnType<typeof createClient>): Promise<Map<string, number>> {
    const info = String(await admin.sendCommand(['INFO', 'commandstats']));
    return new Map([...info.matchAll(/cmdstat_(\w+):calls=(\d+)/g)].map((m) => [m[1] ?? '', Number(m[2])]));
  }

  it('calls its scripts as functions and loads the library again when Redis lost it', async () => {
    const admin = createClient({ url: stores.redis.url });
    await admin.connect();
    try {
      const [n1] = await nodes(1);
      if (!n1) throw new Error('nodes');
      await admin.sendCommand(['CONFIG', 'RESETSTAT']);
      expect(await n1.store.acquire('a', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
      await admin.sendCommand(['FUNCTION', 'FLUSH']);
      await n1.store.release('a', 'k');
      expect(await n1.store.acquire('a', acquireInput(2, 'k'))).toMatchObject({ status: 'granted' });
      const calls = await commandCalls(admin);
      expect(calls.get('fcall')).toBeGreaterThanOrEqual(3);
      expect(calls.get('evalsha') ?? 0).toBe(0);
      expect(String(await admin.sendCommand(['FUNCTION', 'LIST']))).toContain('lockwire_');
    } finally {
      admin.destroy();
    }
  });

  it('runs its scripts with EVALSHA, with the same results, when Redis does not let it load functions', async () => {
    const admin = createClient({ url: stores.redis.url });
    await admin.connect();
    try {
      await admin.sendCommand(['ACL', 'SETUSER', 'nofunctions', 'on', 'nopass', '~*', '&*', '+@all', '-function', '-fcall']);
      const [n1, n2] = await nodes(2, { url: stores.redis.url.replace('redis://', 'redis://nofunctions:any@') });
      if (!n1 || !n2) throw new Error('nodes');
      await admin.sendCommand(['CONFIG', 'RESETSTAT']);
      expect(await n1.store.acquire('a', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
      expect(await n2.store.acquire('b', acquireInput(1, 'k'))).toEqual({ status: 'queued', position: 1 });
      await n1.store.release('a', 'k');
      expect(await n2.next((h) => h.kind === 'granted')).toMatchObject({ session: 'b', ticket: 1, grant: { key: 'k' } });
      const calls = await commandCalls(admin);
      expect(calls.get('evalsha')).toBeGreaterThanOrEqual(3);
      expect(calls.get('fcall') ?? 0).toBe(0);
    } finally {
      await admin.sendCommand(['ACL', 'DELUSER', 'nofunctions']);
      admin.destroy();
    }
  });

  it('answers not_holder for a release of a key held by a session of another node, and changes nothing', async () => {
    const [n1, n2] = await nodes(2);
    if (!n1 || !n2) throw new Error('nodes');
    await n1.store.acquire('a', acquireInput(1, 'k'));
    await expect(n2.store.release('b', 'k')).rejects.toMatchObject({ code: 'not_holder' });
    expect((await n2.store.status('k', null)).holders.map((h) => h.session)).toEqual(['a']);
  });
});
