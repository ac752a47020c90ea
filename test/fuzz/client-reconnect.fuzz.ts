import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LockClient, type Lease } from '@lockwire/client';
import { createLockServer, createRedisStore, type LockStore } from '@lockwire/server';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';

/**
 * Random programs of the lockwire client with session grace on, its
 * connection through a TCP proxy that goes silent and comes back, or cuts
 * it: acquires (try once, bounded, with and without hold timeouts, some
 * aborted soon after), releases (of a lease, or of its key), extends,
 * `withLock` and Web Lock requests whose callbacks hold the lock for a
 * moment, and steals by another client. At each quiet point (the client
 * open again, its calls settled, two pings answered) the leases it holds
 * must be the holds the server has for its session, key by key and token
 * by token, and a watcher through the same proxy must show the server's
 * holders; a difference that lasts over four looks (a hold timeout may
 * run out between the reads of one) fails the program, printing what it did.
 *
 * `npm run fuzz`; `FUZZ_RUNS` programs (default 100), on the memory store, or
 * with `FUZZ_STORE=redis` on the Redis store (a redis-server of its own). With
 * `FUZZ_STORE=redis-nodes` two nodes share that Redis: the client is on one,
 * the other client and the watcher on the other (the watcher through a
 * proxy of its own), and each fault hits the client's path, the watcher's,
 * or both.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const STEPS = 12;
const KEYS = ['k0', 'k1', 'k2', 'k3'];
const storeKind = process.env.FUZZ_STORE ?? 'memory';
if (!['memory', 'redis', 'redis-nodes'].includes(storeKind)) throw new Error(`FUZZ_STORE: memory, redis or redis-nodes, not ${storeKind}`);
const onRedis = storeKind !== 'memory';
const twoNodes = storeKind === 'redis-nodes';

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

describe(`client reconnect fuzz (${storeKind})`, () => {
  let redis: RedisServer | null = null;
  beforeAll(async () => {
    if (onRedis) redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it.each(Array.from({ length: RUNS }, (_, i) => i))('program %i', async (run) => {
    const start = async () => {
      const store: LockStore | undefined = redis ? createRedisStore({ url: redis.url, namespace: `fuzz${run}` }) : undefined;
      return createLockServer({ port: 0, sessionGrace: 30_000, heartbeatInterval: 0, ...(store ? { store } : {}) });
    };
    const server = await start();
    // The other client's and the watcher's node: the client's own, or a second one on the same Redis.
    const server2 = twoNodes ? await start() : server;
    const proxy = await startTcpProxy(server.port);
    const proxy2 = twoNodes ? await startTcpProxy(server2.port) : proxy;
    const log: string[] = [];
    const started = performance.now();
    const note = (line: string) => log.push(`${(performance.now() - started).toFixed(1)} ${line}`);
    const options = { reconnect: { initialDelay: 1, maxDelay: 5, jitter: 0 }, keepalive: { interval: 50, timeout: 100 } };
    const client = await LockClient.connect(proxy.url(server.url), options);
    const other = await LockClient.connect(server2.url);
    // A dashboard through a proxy: its view of the holders, from its snapshot and events, follows the server's.
    const watcher = await LockClient.connect(proxy2.url(server2.url), options);
    const view = new Map<string, Map<string, number>>();
    const countMisses: string[] = [];
    const resync = (locks: ReadonlyArray<{ key: string; holders: ReadonlyArray<{ session: string; token: number }> }>) => {
      note(`watcher snapshot ${JSON.stringify(locks.map((lock) => [lock.key, lock.holders.map((holder) => holder.token)]))}`);
      view.clear();
      for (const lock of locks) view.set(lock.key, new Map(lock.holders.map((holder) => [holder.session, holder.token])));
    };
    const watch = await watcher.watch(
      '',
      (event) => {
        note(`watcher event ${event.key} ${event.event} ${event.token ?? ''} holders ${event.holders}`);
        const holders = view.get(event.key) ?? new Map<string, number>();
        view.set(event.key, holders);
        if (event.event === 'acquired' && event.session !== undefined && event.token !== undefined) holders.set(event.session, event.token);
        if (['released', 'expired', 'stolen', 'revoked'].includes(event.event) && event.session !== undefined) holders.delete(event.session);
        if (holders.size !== event.holders) countMisses.push(`${event.key} ${event.event}: ${event.holders} holders, ${holders.size} in view`);
      },
      { onResync: (snapshot) => resync(snapshot.locks) },
    );
    resync(watch.snapshot.locks);
    client.on('disconnect', (info) => note(`disconnect ${JSON.stringify(info)}`));
    client.on('reconnect', (info) => note(`reconnect ${JSON.stringify(info)}`));
    watcher.on('disconnect', (info) => note(`watcher disconnect ${JSON.stringify(info)}`));
    watcher.on('reconnect', (info) => note(`watcher reconnect ${JSON.stringify(info)}`));
    const calls: Promise<unknown>[] = [];
    const settle = (what: string, call: Promise<unknown>) =>
      calls.push(call.then((value) => note(`${what}: ${value instanceof Object ? (value as Lease).token : String(value)}`), (error) => note(`${what}: ${String(error)}`)));

    /**
     * The client's held leases and the server's holds for its session, as
     * sorted [key, token] lists; the watcher's view of every holder and the
     * server's, as sorted [key, session, token] lists.
     */
    const views = async () => {
      const holds: Array<[string, number]> = [];
      const all: Array<[string, string, number]> = [];
      for (const key of KEYS) {
        for (const holder of (await other.status(key)).holders) {
          if (holder.session === client.session) holds.push([key, holder.token]);
          all.push([key, holder.session, holder.token]);
        }
      }
      // The statuses may have run a hold's expiry whose event is still on its way to the watcher, and the
      // client's `lost` too: the events and losses the server sent before these answers are in by then.
      await Promise.all([client.ping(), watcher.ping()]);
      const believed = [...client.leases].filter(([, lease]) => lease.held).map(([key, lease]) => [key, lease.token]);
      const watched = [...view].flatMap(([key, holders]) => [...holders].map(([session, token]) => [key, session, token]));
      return { believed: believed.sort(), holds: holds.sort(), watched: watched.sort(), all: all.sort() };
    };
    const alike = (seen: Awaited<ReturnType<typeof views>>) =>
      JSON.stringify([seen.believed, seen.watched]) === JSON.stringify([seen.holds, seen.all]);

    try {
      for (let step = 0; step < STEPS; step++) {
        for (let i = 0; i < 4; i++) {
          const key = pick(KEYS);
          const lease = client.leases.get(key);
          if (lease && Math.random() < 0.5) {
            const how = Math.random();
            if (how < 0.6) {
              note(`release ${key} ${lease.token}`);
              settle(`released ${key}`, lease.release());
            } else if (how < 0.8) {
              note(`releaseLock ${key}`);
              settle(`releaseLock ${key}`, client.releaseLock(key));
            } else {
              const holdTimeout = pick([null, 1 + Math.floor(Math.random() * 200)]);
              note(`extend ${key} ${lease.token} ${holdTimeout}`);
              settle(`extended ${key}`, lease.extend(holdTimeout));
            }
          } else if (Math.random() < 0.15) {
            // An acquire given up after a moment: a grant that raced the cancel is handed back.
            const controller = new AbortController();
            note(`acquire ${key} aborted soon`);
            settle(`acquired ${key} (aborted)`, client.acquire(key, { acquireTimeout: 100, signal: controller.signal }));
            setTimeout(() => controller.abort(), Math.random() * 20);
          } else if (Math.random() < 0.25) {
            // A callback holding the lock for a moment; its hold is let go of when it returns, also after refusals.
            const hold = () => pause(Math.random() * 30);
            if (Math.random() < 0.5) {
              const acquireTimeout = pick([0, 100]);
              note(`withLock ${key} ${acquireTimeout}`);
              settle(`withLock ${key}`, client.withLock(key, hold, { acquireTimeout }));
            } else {
              const ifAvailable = Math.random() < 0.5;
              note(`Web Lock ${key}${ifAvailable ? ' ifAvailable' : ''}`);
              // A Web Lock request takes a signal only without ifAvailable.
              const request = ifAvailable ? { ifAvailable } : { signal: AbortSignal.timeout(200) };
              settle(`Web Lock ${key}`, client.locks.request(key, request, hold));
            }
          } else if (Math.random() < 0.2) {
            note(`steal ${key} by the other client`);
            settle(`other stole ${key}`, other.acquire(key, { steal: true, holdTimeout: 50 }));
          } else {
            const acquire = { acquireTimeout: pick([0, 100]), holdTimeout: Math.random() < 0.3 ? 1 + Math.floor(Math.random() * 200) : null };
            note(`acquire ${key} ${JSON.stringify(acquire)}`);
            settle(`acquired ${key}`, client.acquire(key, acquire));
          }
        }
        const fault = Math.random();
        // With two nodes a fault hits the client's path, the watcher's, or both.
        const paths = twoNodes ? pick([[proxy], [proxy2], [proxy, proxy2]]) : [proxy];
        const which = paths.length === 2 ? 'both paths' : paths[0] === proxy ? 'client path' : 'watcher path';
        if (fault < 0.4) {
          note(`${which} silent`);
          for (const path of paths) path.hold();
          await pause(Math.random() * 250);
          note(`${which} back`);
          for (const path of paths) path.resume();
        } else if (fault < 0.6) {
          note(`${which} cut`);
          for (const path of paths) path.cut();
        }
        for (let attempt = 0; ; attempt++) {
          await Promise.allSettled(calls);
          const deadline = performance.now() + 5000;
          const open = () => client.state === 'open' && watcher.state === 'open';
          while (!open() && performance.now() < deadline) await pause(5);
          expect([client.state, watcher.state], log.join('\n')).toEqual(['open', 'open']);
          let dropped = false;
          const stopWatching = [client, watcher].map((c) => c.on('disconnect', () => (dropped = true)));
          try {
            await Promise.all([client.ping(), watcher.ping()]);
            await Promise.all([client.ping(), watcher.ping()]);
            let seen = await views();
            // A hold timeout may run out between the reads of one look, and on the Redis store a loss, or an
            // event, may reach a session a moment after another connection saw it: a difference must last.
            for (let look = 0; look < 3 && !alike(seen); look++) seen = await views();
            if (dropped && attempt < 5) continue;
            const where = `program ${run}, step ${step}\n${log.join('\n')}`;
            expect(seen.believed, where).toEqual(seen.holds);
            expect(seen.watched, `${where}\nwatched`).toEqual(seen.all);
            expect(countMisses, where).toEqual([]);
            break;
          } catch (error) {
            if (dropped && attempt < 5) continue;
            throw error;
          } finally {
            for (const stop of stopWatching) stop();
          }
        }
      }
    } finally {
      await client.close();
      await watcher.close();
      await other.close();
      await proxy.close();
      if (proxy2 !== proxy) await proxy2.close();
      await server.close();
      if (server2 !== server) await server2.close();
    }
  }, 60_000);
});
