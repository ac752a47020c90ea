import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../server/src/clock.js';
import { encodeKey, keyNames } from '../server/src/redis/key-codec.js';
import { scripts, type ScriptName } from '../server/src/redis/scripts.js';
import { silentLogger } from '../server/src/logger.js';
import { listenerLog, useRedisStores } from '../server/test/redis-harness.js';
import { acquireInput } from '../server/test/server-harness.js';
import { RawClient } from './helpers/raw-client.js';
import { useRedisNodes } from './helpers/redis-nodes.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { flushAll, untilStateLossFound } from './helpers/redis-state-loss.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const NODE_TTL = 1000;

/** Acquires, retrying while the store answers store_unavailable; returns the final reply and how many were refused. */
async function acquireWhenAvailable(client: RawClient, key: string, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  let refused = 0;
  for (;;) {
    const reply = await client.request({ op: 'acquire', key, acquireTimeout: 0 });
    const error = reply.error as { code?: string } | undefined;
    if (reply.ok === true && reply.acquired === true) return { reply, refused };
    if (error?.code !== 'store_unavailable' && reply.acquired !== false) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
    refused++;
    if (Date.now() > deadline) throw new Error(`still not granted after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Sends a request until the store stops answering store_unavailable; returns that reply. */
async function requestWhenAvailable(client: RawClient, message: Record<string, unknown>, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const reply = await client.request(message);
    if ((reply.error as { code?: string } | undefined)?.code !== 'store_unavailable') return reply;
    if (Date.now() > deadline) throw new Error(`still store_unavailable after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('lockwire nodes as separate processes', () => {
  let redis: RedisServer;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        process.kill(child.pid, 'SIGKILL');
        await exited;
      }),
    );
    await redis.stop();
  });

  /** Starts `lockwire serve --store redis` and resolves its WebSocket URL from its first stdout line. */
  async function serveNode(): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(
      process.execPath,
      ['server/bin/lockwire.mjs', 'serve', '--port', '0', '--store', 'redis', '--redis-url', redis.url, '--node-ttl', String(NODE_TTL), '--log-level', 'warn'],
      { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('lockwire serve printed no URL within 15 s')), 15_000);
      lines.on('line', (line) => {
        const match = /ws:\/\/\S+/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[0]);
        }
      });
      child.once('exit', (code) => reject(new Error(`lockwire serve exited with ${code}`)));
    });
    return { url, child };
  }

  /**
   * Kills `node` with SIGKILL and expects `waiter`'s queued acquire `w`
   * granted by the survivors once the node TTL ran out, with a token above
   * `heldToken`, that of the dead node's hold.
   */
  async function killedThenGranted(node: ChildProcess, waiter: RawClient, heldToken: number): Promise<void> {
    const died = new Promise((resolve) => node.once('exit', resolve));
    if (node.pid !== undefined) process.kill(node.pid, 'SIGKILL');
    await died;
    // Liveness runs on real timers in the nodes' processes: this bound only guards against a hang.
    const granted = await waiter.reply('w', { timeout: NODE_TTL + 3000 });
    expect(granted).toMatchObject({ ok: true, acquired: true });
    expect(granted.token).toBeGreaterThan(heldToken);
  }

  it('a node killed with SIGKILL has its locks released and its queued requests dropped by the survivors once its node TTL runs out', async () => {
    const [n1, n2, n3] = [await serveNode(), await serveNode(), await serveNode()];
    const a = await RawClient.connect(n1.url);
    const b = await RawClient.connect(n2.url);
    const c = await RawClient.connect(n3.url);
    const held = await a.request({ op: 'acquire', key: 'job' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    await b.request({ op: 'acquire', key: 'other' });
    a.send({ op: 'acquire', id: 'q', key: 'other' });
    await a.next((m) => m.type === 'queued');
    c.send({ op: 'acquire', id: 'w', key: 'job' });
    await c.next((m) => m.type === 'queued');

    await killedThenGranted(n1.child, c, held.token as number);
    // The dead node's queued request is gone too: releasing `other` leaves it free.
    await b.request({ op: 'release', key: 'other' });
    const other = await c.request({ op: 'status', key: 'other' });
    expect(other).toMatchObject({ locked: false, queue: [] });
    for (const client of [b, c]) await client.close();
  });

  it('while Redis is full, the survivors pass on the locks of a node killed with SIGKILL once its node TTL runs out', async () => {
    const [n1, n2] = [await serveNode(), await serveNode()];
    const a = await RawClient.connect(n1.url);
    const c = await RawClient.connect(n2.url);
    const held = await a.request({ op: 'acquire', key: 'full-job' });
    expect(held).toMatchObject({ ok: true, acquired: true });
    c.send({ op: 'acquire', id: 'w', key: 'full-job' });
    await c.next((m) => m.type === 'queued' && m.id === 'w');
    await whileFull(redis.url, async () => {
      await killedThenGranted(n1.child, c, held.token as number);
      expect(await c.request({ op: 'acquire', key: 'full-other' })).toMatchObject({ ok: false, error: { code: 'store_unavailable' } });
    });
    await c.close();
  });
});

/**
 * Fills the Redis at `url` past a `maxmemory` below what it uses, with
 * `noeviction`: every command that may grow memory is refused (OOM), reads
 * and PEXPIRE are not. Runs `body`, then frees the memory again.
 */
async function whileFull(url: string, body: () => Promise<void>): Promise<void> {
  const admin = createClient({ url });
  admin.on('error', () => {});
  await admin.connect();
  try {
    await admin.configSet('maxmemory-policy', 'noeviction');
    for (let i = 0; i < 50; i++) await admin.set(`filler:${i}`, 'x'.repeat(10_000));
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
    await admin.configSet('maxmemory', String(used - 300_000));
    await body();
  } finally {
    await admin.configSet('maxmemory', '0');
    for (let i = 0; i < 50; i++) await admin.del(`filler:${i}`);
    admin.destroy();
  }
}

describe('Redis failures under in-process nodes', () => {
  const fixture = useRedisNodes('faults');

  async function twoNodes(): Promise<[RawClient, RawClient]> {
    const [s1, s2] = await fixture.startNodes(2, { nodeTtl: NODE_TTL, commandTimeout: 500 });
    if (!s1 || !s2) throw new Error('nodes');
    return [await fixture.connect(s1), await fixture.connect(s2)];
  }

  it('after a Redis restart the holder hears revoked before anyone else is granted, and tokens keep rising', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ acquired: true });
    await fixture.redis.restart();
    const { reply, refused } = await acquireWhenAvailable(b, 'k');
    expect(refused).toBeGreaterThan(0);
    // By the time the other node granted, the holder had been told.
    expect(a.received('lost')).toEqual([{ type: 'lost', key: 'k', token: held.token, reason: 'revoked' }]);
    expect(reply.token).toBeGreaterThan(held.token as number);
  });

  it('answers store_unavailable while Redis is down, reports held locks lost once the node TTL runs out, and recovers when Redis is back', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ acquired: true });
    await fixture.redis.kill();
    const refused = await b.request({ op: 'acquire', key: 'other' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'store_unavailable' } });
    // Liveness runs on real timers: this bound only guards against a hang.
    expect(await a.nextLost('k', { timeout: NODE_TTL + 2000 })).toEqual({ type: 'lost', key: 'k', token: held.token, reason: 'revoked' });
    await fixture.redis.restart();
    const { reply } = await acquireWhenAvailable(b, 'k');
    expect(reply.token).toBeGreaterThan(held.token as number);
    // The other node may still be in its own holdoff after finding Redis restarted.
    expect(await requestWhenAvailable(a, { op: 'acquire', key: 'k', acquireTimeout: 0 })).toMatchObject({ ok: true, acquired: false });
  });

  it('keeps every lock while Redis is full (noeviction) for longer than the node TTL: only new writes are refused, saying so, status, list and watch are answered, and the nodes stay ready', async () => {
    const [s1, s2] = await fixture.startNodes(2, { nodeTtl: NODE_TTL, commandTimeout: 500 });
    if (!s1 || !s2) throw new Error('nodes');
    const [a, b] = [await fixture.connect(s1), await fixture.connect(s2)];
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(held).toMatchObject({ acquired: true });
    await whileFull(fixture.redis.url, async () => {
      const refused = await b.request({ op: 'acquire', key: 'other' });
      expect(refused).toMatchObject({ ok: false, error: { code: 'store_unavailable', message: expect.stringMatching(/OOM|out of memory/) } });
      expect(refused).toMatchObject({ error: { message: expect.not.stringMatching(/unreachable/) } });
      // Two node TTLs of status on the holder's own connection: a `lost` would come before the last reply.
      const until = Date.now() + 2 * NODE_TTL;
      let answered = 0;
      while (Date.now() < until) {
        expect(await a.request({ op: 'status', key: 'k' })).toMatchObject({ ok: true, locked: true, holders: [{ token: held.token }] });
        answered++;
        // Paced far below the session's rate limit (1000 frames/s), which a fast Redis lets this loop pass.
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(await b.request({ op: 'status', key: 'k' })).toMatchObject({ ok: true, locked: true });
      expect(await b.request({ op: 'list' })).toMatchObject({ ok: true, locks: [{ key: 'k' }] });
      expect(await b.request({ op: 'watch', prefix: '' })).toMatchObject({ ok: true, locks: [{ key: 'k' }] });
      expect({ answered: answered > 0, lost: a.received('lost') }).toEqual({ answered: true, lost: [] });
      // Releases and hand-offs go on while Redis is full, so a balancer keeps the nodes (docs/operations.md).
      const ready = await Promise.all([s1, s2].map(async (s) => (await fetch(`${s.httpUrl}/readyz`)).status));
      expect(ready).toEqual([200, 200]);
    });
    // Memory freed: the lock was never lost, and nobody else can take it.
    expect(await b.request({ op: 'acquire', key: 'k', acquireTimeout: 0 })).toMatchObject({ ok: true, acquired: false });
    expect(a.received('lost')).toEqual([]);
  });

  /** Sends an acquire of `key` from `client` and resolves its id once it is queued. */
  async function queue(client: RawClient, key: string): Promise<number> {
    const id = client.id();
    client.send({ op: 'acquire', id, key });
    await client.next((m) => m.type === 'queued' && m.id === id);
    return id;
  }

  const oom = { ok: false, error: { code: 'store_unavailable', message: expect.stringMatching(/OOM/) } };

  it('while Redis is full, a holder releases, and the next waiter, on another node, is granted and told', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k' });
    const waiting = await queue(b, 'k');
    await whileFull(fixture.redis.url, async () => {
      expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
      const granted = await b.reply(waiting);
      expect(granted).toMatchObject({ ok: true, acquired: true });
      expect(granted.token).toBeGreaterThan(held.token as number);
      expect(await a.request({ op: 'status', key: 'k' })).toMatchObject({ locked: true, holders: [{ token: granted.token }], queue: [] });
      expect(await a.request({ op: 'acquire', key: 'other' })).toMatchObject(oom);
    });
  });

  it('while Redis is full, a closed connection has its locks passed on and its queued requests dropped', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k' });
    expect(await b.request({ op: 'acquire', key: 'k2' })).toMatchObject({ acquired: true });
    await queue(a, 'k2');
    const waiting = await queue(b, 'k');
    await whileFull(fixture.redis.url, async () => {
      await a.close();
      const granted = await b.reply(waiting);
      expect(granted).toMatchObject({ ok: true, acquired: true });
      expect(granted.token).toBeGreaterThan(held.token as number);
      // The closed connection's queued request is not granted k2 when its holder lets go.
      expect(await b.request({ op: 'release', key: 'k2' })).toMatchObject({ ok: true, released: true });
      expect(await b.request({ op: 'status', key: 'k2' })).toMatchObject({ locked: false, queue: [] });
      expect(await b.request({ op: 'acquire', key: 'other' })).toMatchObject(oom);
    });
  });

  it('while Redis is full, a queued acquire is cancelled and never granted', async () => {
    const [a, b] = await twoNodes();
    await a.request({ op: 'acquire', key: 'k' });
    const waiting = await queue(b, 'k');
    await whileFull(fixture.redis.url, async () => {
      expect(await b.request({ op: 'cancel', target: waiting })).toMatchObject({ ok: true, cancelled: true });
      expect(await b.reply(waiting)).toMatchObject({ ok: false, error: { code: 'cancelled' } });
      expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
      expect(await b.request({ op: 'status', key: 'k' })).toMatchObject({ locked: false, queue: [] });
    });
    expect(b.received('reply').filter((m) => m.acquired === true)).toEqual([]);
  });

  it('while Redis is full, a hold whose timeout runs out is lost by its holder and granted to the next waiter on another node', async () => {
    const clock = createManualClock();
    const [s1, s2] = await fixture.startNodes(2, { nodeTtl: NODE_TTL, commandTimeout: 500, clock });
    if (!s1 || !s2) throw new Error('nodes');
    const [a, b] = [await fixture.connect(s1), await fixture.connect(s2)];
    const held = await a.request({ op: 'acquire', key: 'k', holdTimeout: 1000 });
    const waiting = await queue(b, 'k');
    await whileFull(fixture.redis.url, async () => {
      clock.advance(1000);
      expect(await a.nextLost('k')).toEqual({ type: 'lost', key: 'k', token: held.token, reason: 'expired' });
      expect(await b.reply(waiting)).toMatchObject({ ok: true, acquired: true });
    });
  });

  it('while Redis is full, an acquire, an extend and a wait are refused saying Redis is out of memory, and change nothing', async () => {
    const [a, b] = await twoNodes();
    const held = await a.request({ op: 'acquire', key: 'k', holdTimeout: 60_000 });
    const before = await b.request({ op: 'status', key: 'k' });
    await whileFull(fixture.redis.url, async () => {
      expect(await b.request({ op: 'acquire', key: 'k' })).toMatchObject(oom);
      expect(await b.request({ op: 'acquire', key: 'k', steal: true })).toMatchObject(oom);
      expect(await a.request({ op: 'extend', key: 'k', holdTimeout: 120_000 })).toMatchObject(oom);
      expect(await b.request({ op: 'wait', key: 'k' })).toMatchObject(oom);
      expect(await b.request({ op: 'status', key: 'k' })).toEqual({ ...before, id: expect.anything() });
    });
    // Nothing of the refused requests was left in Redis: once k is released, nobody is granted it.
    expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
    expect(await b.request({ op: 'status', key: 'k' })).toMatchObject({ locked: false, queue: [] });
    expect({ lost: a.received('lost'), granted: b.received('reply').filter((m) => m.acquired === true) }).toEqual({ lost: [], granted: [] });
    expect(held).toMatchObject({ acquired: true });
  });

  describe('after a flush its node has not noticed yet', () => {
    // A node TTL of 10 s: the node's own renew rounds (every 3.3 s) do not find the flush before the request does.
    /**
     * Holds k (with `holdTimeout`), flushes Redis and sends `request`: expects
     * it answered `answer`, the holder told once that its hold was revoked
     * before that answer, and not told again once the node finds the flush.
     */
    async function answeredAfterLostOnce(request: Record<string, unknown>, answer: Record<string, unknown>, holdTimeout: number | null = null) {
      const [node] = await fixture.startNodes(1, { nodeTtl: 10_000, commandTimeout: 500 });
      if (!node) throw new Error('node');
      const a = await fixture.connect(node);
      const held = await a.request({ op: 'acquire', key: 'k', holdTimeout });
      expect(held).toMatchObject({ ok: true, acquired: true });
      await flushAll(fixture.redis.url);
      const reply = await a.request(request);
      expect(reply).toMatchObject(answer);
      const lostBefore = a.received('lost').filter((m) => a.indexOf(m) < a.indexOf(reply));
      expect(lostBefore).toEqual([{ type: 'lost', key: 'k', token: held.token, reason: 'revoked' }]);
      // The node's own finding of the flush does not tell the holder a second time.
      await untilStateLossFound(a);
      expect(a.received('lost')).toHaveLength(1);
    }

    it('a holder that releases hears lost (revoked) once, before its release is answered not_holder', async () => {
      await answeredAfterLostOnce({ op: 'release', key: 'k' }, { ok: false, error: { code: 'not_holder' } });
    });

    it('a holder that extends hears lost (revoked) once, before its extend is answered not_holder', async () => {
      await answeredAfterLostOnce({ op: 'extend', key: 'k', holdTimeout: 60_000 }, { ok: false, error: { code: 'not_holder' } }, 60_000);
    });

    it('a holder that waits on its own key hears lost (revoked) once, before the wait is answered free', async () => {
      await answeredAfterLostOnce({ op: 'wait', key: 'k', timeout: 5000 }, { ok: true, free: true });
    });

    it('a holder that acquires its key again hears lost (revoked) once, before the acquire is answered store_unavailable', async () => {
      await answeredAfterLostOnce({ op: 'acquire', key: 'k' }, { ok: false, error: { code: 'store_unavailable' } });
    });
  });

  it('answers a queued acquire and a pending wait store_unavailable, not acquired or free false, when their node loses Redis', async () => {
    const [a, b] = await twoNodes();
    expect(await a.request({ op: 'acquire', key: 'k' })).toMatchObject({ acquired: true });
    const queuedId = b.id();
    const queued = b.request({ op: 'acquire', id: queuedId, key: 'k' }, { timeout: NODE_TTL + 3000 });
    await b.next((m) => m.type === 'queued' && m.id === queuedId);
    const waiting = b.request({ op: 'wait', key: 'k' }, { timeout: NODE_TTL + 3000 });
    // The status runs after the wait on the same Redis connection: the wait is pending by its reply.
    expect(await b.request({ op: 'status', key: 'k' })).toMatchObject({ ok: true, locked: true });
    await fixture.redis.kill();
    const unavailable = { ok: false, error: { code: 'store_unavailable' } };
    expect(await queued).toMatchObject(unavailable);
    expect(await waiting).toMatchObject(unavailable);
    await fixture.redis.restart();
    const { reply } = await acquireWhenAvailable(b, 'k');
    expect(reply).toMatchObject({ acquired: true });
  });
});

describe('a Redis store while Redis is full', () => {
  const stores = useRedisStores('full');

  it('answers store_unavailable saying Redis is out of memory, not unreachable, while it cannot register anew for that', async () => {
    const proxy = await stores.proxy();
    const log = listenerLog();
    const debug = listenerLog();
    const logger = { ...silentLogger, debug: (o: object, msg: string) => debug.push(`${msg} ${JSON.stringify(o)}`) };
    const a = await stores.startStore({ url: proxy.url, namespace: stores.namespace(), nodeTtl: NODE_TTL, commandTimeout: 5000, tolerateCloseFailure: true, logger }, log.listener);
    expect(await a.acquire('h', acquireInput(1, 'k'))).toMatchObject({ status: 'granted' });
    // Replies past the node TTL: the node gives its id up, and must register a new one.
    proxy.delayReplies(1500);
    await log.next(/^lost h k /, 5000);
    await whileFull(stores.redis.url, async () => {
      proxy.delayReplies(0);
      // The new id's SET is refused.
      await debug.next(/OOM command not allowed/, 5000);
      const refused = a.acquire('s', acquireInput(2, 'other'));
      await expect(refused).rejects.toMatchObject({ code: 'store_unavailable', message: expect.stringMatching(/out of memory/) });
      await expect(refused).rejects.toMatchObject({ message: expect.not.stringMatching(/unreachable/) });
    });
  });

  it('runs the read-only and the letting-go scripts, as functions and as the EVAL scripts of a Redis without functions, and refuses the ones that may grow memory in both forms', async () => {
    const [node] = await stores.startNodes([stores.redis.url], {});
    if (!node) throw new Error('no node');
    const admin = createClient({ url: stores.redis.url });
    admin.on('error', () => {});
    await admin.connect();
    try {
      for (const form of ['FCALL', 'EVAL'] as const) {
        const encoded = encodeKey(`k-${form}`);
        const keys = keyNames(node.namespace).lockKeys(encoded);
        // Records of a node id no node serves, so no node's view of them changes behind its back.
        const call = (name: ScriptName, now: number, extra: string[], how: 'FCALL' | 'EVAL' = form) => {
          const head = how === 'FCALL' ? ['FCALL', scripts[name].fn] : ['EVAL', scripts[name].source];
          return admin.sendCommand([...head, String(keys.length), ...keys, 'ghost', '0', String(now), encoded, node.namespace, ...extra]);
        };
        const result = async (reply: Promise<unknown>) => JSON.parse(/^\S+ \S+ \S+ \S+ \S+ (.*)\n/.exec(String(await reply))?.[1] ?? 'null') as Record<string, unknown>;
        const acquire = (s: string, ticket: string, holdTimeout = '') => call('acquire', 0, [s, ticket, 'exclusive', '', holdTimeout, '', '', '', '100'], 'FCALL');
        const held = await result(acquire('h', '1', '1000'));
        expect(held).toMatchObject({ st: 'granted' });
        for (const [s, ticket] of [['w', '2'], ['v', '3'], ['u', '4'], ['r', '5']] as const) expect(await result(acquire(s, ticket))).toMatchObject({ st: 'queued' });
        expect(await result(call('wait', 0, ['z', '9'], 'FCALL'))).toEqual({ pending: 1 });
        const before = await call('status', 0, []);
        await whileFull(stores.redis.url, async () => {
          // A steal deletes the holds before it grants: its EVAL form is refused all the same.
          await expect(call('acquire', 0, ['x', '6', 'exclusive', '', '', '1', '', '', '100'])).rejects.toThrow(/^OOM /);
          await expect(call('extend', 0, ['h', '5000'])).rejects.toThrow(/^OOM /);
          await expect(call('wait', 0, ['y', '7'])).rejects.toThrow(/^OOM /);
          expect(await call('status', 0, [])).toEqual(before);
          expect(await result(call('unqueue', 0, ['v', '3', 'a']))).toMatchObject({ ok: 1 });
          // The hold's timeout settles the wait and grants w, w's release grants u, the revoke grants r.
          expect(await result(call('expire', 1000, ['h', String(held.t), String(held.x)]))).toMatchObject({ ok: 1 });
          expect(await result(call('release', 0, ['w']))).toMatchObject({ ok: 1 });
          expect(await result(call('revoke', 0, []))).toMatchObject({ n: 1 });
          expect(await result(call('drop', 0, ['h', 'n', 'ghost']))).toMatchObject({ ok: 1, t: expect.stringMatching(/^\d+$/) });
          // Lua's JSON writes an empty list as {}.
          const { h, q } = JSON.parse(String(await call('status', 0, []))) as Record<string, unknown>;
          expect({ h, q }).toEqual({ h: {}, q: {} });
          // Redis is still full.
          await expect(call('acquire', 0, ['x', '8', 'exclusive', '', '', '', '', '', '100'])).rejects.toThrow(/^OOM /);
        });
        expect(await admin.hLen(keys[4])).toBe(0);
      }
    } finally {
      admin.destroy();
    }
  });
});
