import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer } from '@lockwire/server';
import { createRedisStore } from '../../server/src/redis/redis-store.js';
import { checkHistory, formatViolations } from '../checker/check.js';
import { HistoryRecorder } from '../checker/history.js';
import { FencedResource } from '../checker/oracle.js';
import { RecordingClient, type AcquireResult, type PendingAcquire } from '../checker/recording-client.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { within } from './within.js';

// Faults between lockwire nodes and Redis, with the nodes in this process
// (real time: node liveness runs on it) and one real redis-server: Redis
// restarted empty, Redis unreachable, the pub/sub connection killed during
// a release, and one node partitioned from Redis while both contend.

const NODE_TTL = 1000;

const tokenOf = (result: AcquireResult): number => {
  if (result.outcome !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(result)}`);
  return result.token;
};

describe('Redis store: faults between the nodes and Redis', () => {
  let redis: RedisServer;
  let run = 0;
  let servers: LockServer[] = [];
  let proxies: TcpProxy[] = [];
  let clients: RecordingClient[] = [];
  let recorder: HistoryRecorder;

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.terminate()));
    for (const proxy of proxies) proxy.resume();
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all(proxies.map((p) => p.close()));
    servers = [];
    proxies = [];
    clients = [];
  });

  /** Starts one node per entry; `proxied` nodes reach Redis through their own proxy. */
  async function nodes(...proxied: boolean[]): Promise<{ servers: LockServer[]; proxies: (TcpProxy | undefined)[] }> {
    recorder = new HistoryRecorder();
    const namespace = `lwf${process.pid}x${++run}`;
    const made: (TcpProxy | undefined)[] = [];
    for (const viaProxy of proxied) {
      const proxy = viaProxy ? await startTcpProxy({ targetPort: redis.port }) : undefined;
      if (proxy) proxies.push(proxy);
      made.push(proxy);
      const url = proxy ? `redis://127.0.0.1:${proxy.port}` : redis.url;
      const store = createRedisStore({ url, namespace, nodeTtl: NODE_TTL, commandTimeout: 300 });
      servers.push(await createLockServer({ port: 0, store, heartbeatInterval: 0 }));
    }
    return { servers: [...servers], proxies: made };
  }
  async function connect(server: LockServer | undefined, name: string): Promise<RecordingClient> {
    if (!server) throw new Error('no such node');
    const client = await RecordingClient.connect(server.url, { recorder, name });
    clients.push(client);
    return client;
  }
  /** Acquires with `acquireTimeout: 0`, retrying while the store answers store_unavailable or the key is taken. */
  async function acquireSoon(client: RecordingClient, key: string, ms: number): Promise<{ token: number; refused: number }> {
    const deadline = performance.now() + ms;
    let refused = 0;
    for (;;) {
      const result = await client.acquire(key, { acquireTimeout: 0 });
      if (result.outcome === 'granted') return { token: result.token, refused };
      if (result.outcome === 'unknown') throw new Error(`${client.name}'s connection ended`);
      if (result.outcome === 'failed' && result.code !== 'store_unavailable') throw new Error(`acquire failed: ${result.code}`);
      refused++;
      if (performance.now() > deadline) throw new Error(`${client.name} not granted ${key} within ${ms} ms`);
      // The client's own retry pace; each try is itself an awaited round trip.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  /** A try-once acquire's answer, past the node's brief store_unavailable while it recovers. */
  async function tryOnceWhenServing(client: RecordingClient, key: string, ms: number) {
    const deadline = performance.now() + ms;
    for (;;) {
      const result = await client.acquire(key, { acquireTimeout: 0 });
      if (result.outcome !== 'failed' || result.code !== 'store_unavailable') return result;
      if (performance.now() > deadline) throw new Error(`${client.name} still store_unavailable after ${ms} ms`);
      // The client's own retry pace; each try is itself an awaited round trip.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  /** Sends acquires until one is queued, past the node's brief store_unavailable after a pub/sub reconnect. */
  async function queueSoon(client: RecordingClient, key: string, ms: number): Promise<PendingAcquire> {
    const deadline = performance.now() + ms;
    for (;;) {
      const pending = client.startAcquire(key);
      if (await pending.queued) return pending;
      const result = await pending.result;
      if (result.outcome !== 'failed' || result.code !== 'store_unavailable') {
        throw new Error(`${client.name}'s acquire of ${key} was answered ${JSON.stringify(result)} instead of queued`);
      }
      if (performance.now() > deadline) throw new Error(`${client.name} could not queue for ${key} within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  const expectValid = (options: Parameters<typeof checkHistory>[1] = {}) => {
    const result = checkHistory(recorder.history(), options);
    expect(result.ok, formatViolations(result.violations)).toBe(true);
  };

  it('after Redis restarts without persistence, the holder hears revoked before anyone is granted again, and tokens keep rising', async () => {
    const { servers: [n1, n2] } = await nodes(false, false);
    const a = await connect(n1, 'a');
    const b = await connect(n2, 'b');
    const held = tokenOf(await a.acquire('k'));
    const queued = b.startAcquire('k', { acquireTimeout: 60_000 });
    expect(await within(queued.queued, 2000, 'b is queued')).toBe(true);

    await redis.restart();
    const lost = await within(a.nextLost('k'), NODE_TTL + 2000, 'the holder hears lost');
    expect(lost).toMatchObject({ token: held, reason: 'revoked' });
    // The queued request was in the lost state too: it is answered with an error (never "not granted"
    // before its acquireTimeout), or granted if the node could still vouch for it.
    const waited = await within(queued.result, NODE_TTL + 3000, 'the queued acquire is answered');
    expect(waited.outcome === 'granted' || (waited.outcome === 'failed' && waited.code === 'store_unavailable'), JSON.stringify(waited)).toBe(true);
    const token = waited.outcome === 'granted' ? waited.token : (await acquireSoon(b, 'k', 5000)).token;
    expect(token).toBeGreaterThan(held);
    expectValid();
  });

  it('while Redis is unreachable, acquires answer store_unavailable and holders hear revoked within the node TTL; the nodes recover when it is back', async () => {
    const { servers: [n1, n2], proxies: [p1, p2] } = await nodes(true, true);
    if (!p1 || !p2) throw new Error('proxies');
    const a = await connect(n1, 'a');
    const b = await connect(n2, 'b');
    const held = tokenOf(await a.acquire('k'));

    const downAt = recorder.now();
    p1.refuse();
    p2.refuse();
    expect(await b.acquire('other', { acquireTimeout: 0 })).toEqual({ outcome: 'failed', code: 'store_unavailable' });
    const lost = await within(a.nextLost('k'), NODE_TTL + 2000, 'the holder hears lost');
    expect(lost).toMatchObject({ token: held, reason: 'revoked' });
    expect(recorder.now() - downAt).toBeLessThan(NODE_TTL + 500);

    p1.resume();
    p2.resume();
    const { token } = await acquireSoon(b, 'k', 10_000);
    expect(token).toBeGreaterThan(held);
    expect(await tryOnceWhenServing(a, 'k', 10_000)).toEqual({ outcome: 'not-granted' });
    expectValid();
  });

  it('a grant made while the waiter node has lost its pub/sub connection still reaches the waiter', async () => {
    const { servers: [n1, n2] } = await nodes(false, false);
    const admin = createClient({ url: redis.url });
    admin.on('error', () => {});
    await admin.connect();
    try {
      const a = await connect(n1, 'a');
      const b = await connect(n2, 'b');
      let holder = a;
      let waiter = b;
      let last = tokenOf(await holder.acquire('k'));
      for (let round = 0; round < 8; round++) {
        const next = await queueSoon(waiter, 'k', 5000);
        // The release and the kill race: the grant's notification may be published while nobody listens.
        const killed = admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
        expect(await holder.release('k')).toEqual({ outcome: 'released' });
        expect(Number(await killed)).toBeGreaterThan(0);
        const token = tokenOf(await within(next.result, 5000, `round ${round}: the waiter is granted`));
        expect(token).toBeGreaterThan(last);
        last = token;
        [holder, waiter] = [waiter, holder];
      }
    } finally {
      admin.destroy();
    }
    expectValid({ fifo: true });
  });

  it('two nodes contending while one is partitioned from Redis: its holders hear revoked before the other node grants, and fencing holds throughout', async () => {
    const { servers: [n1, n2], proxies: [p1] } = await nodes(true, false);
    if (!p1) throw new Error('proxy');
    const resource = new FencedResource({ recorder });
    const cutOff = await Promise.all([connect(n1, 'p0'), connect(n1, 'p1')]);
    const reachable = await Promise.all([connect(n2, 'r0'), connect(n2, 'r1')]);
    let contending = true;
    let onGrant: (client: RecordingClient) => void = () => {};
    const contend = async (client: RecordingClient, key: string) => {
      while (contending) {
        const result = await client.acquire(key, { acquireTimeout: 200 });
        if (result.outcome === 'unknown') return;
        if (result.outcome !== 'granted') {
          // store_unavailable comes at once; pace the retries like a client would.
          if (result.outcome === 'failed') await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        onGrant(client);
        resource.write(client.name, key, result.token);
        await client.ping();
        resource.write(client.name, key, result.token);
        if (!client.lost.some((l) => l.token === result.token)) await client.release(key);
      }
    };
    const all = [...cutOff, ...reachable];
    const workers = all.flatMap((client) => [contend(client, 'x'), contend(client, 'y')]);

    // A holder on the node about to be cut off, so the partition has a lock to take away.
    const pinned = await connect(n1, 'pinned');
    const pinnedToken = tokenOf(await pinned.acquire('z'));
    const stealer = await connect(n2, 'successor');
    const successor = stealer.startAcquire('z');
    expect(await within(successor.queued, 2000, 'the successor is queued')).toBe(true);

    p1.hold();
    const reachableGranted = new Promise<void>((resolve) => {
      onGrant = (client) => reachable.includes(client) && resolve();
    });
    const lost = await within(pinned.nextLost('z'), NODE_TTL + 2000, 'the cut-off holder hears lost');
    expect(lost).toMatchObject({ token: pinnedToken, reason: 'revoked' });
    const granted = tokenOf(await within(successor.result, 2 * NODE_TTL + 3000, 'the other node grants z'));
    expect(granted).toBeGreaterThan(pinnedToken);
    // The reachable node kept granting while the other was cut off.
    await within(reachableGranted, 3000, 'a client of the reachable node is granted during the partition');
    p1.resume();
    const { token } = await acquireSoon(cutOff[0] as RecordingClient, 'w', 10_000);
    expect(token).toBeGreaterThan(0);
    contending = false;
    await Promise.all(workers);
    expectValid();
  });
});
