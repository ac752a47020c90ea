import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLockServer, type LockServer, type Logger } from '@lockwire/server';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { startPubSubProxy, type PubSubProxy } from '../server/test/redis-harness.js';
import { RawClient } from './helpers/raw-client.js';
import { startRedisServer, withRedis, type RedisServer } from './helpers/redis-server.js';

/** A logger that drops everything but resolves `closeFailed` once a session's close in the store failed. */
function closeWatcher(): { logger: Logger; closeFailed: Promise<void> } {
  let told = () => {};
  const closeFailed = new Promise<void>((resolve) => (told = resolve));
  const ignore = () => {};
  const logger: Logger = {
    debug: ignore,
    info: ignore,
    warn: ignore,
    error: (_obj, msg) => {
      if (msg === 'store failed to close the session') told();
    },
  };
  return { logger, closeFailed };
}

describe('a Redis node stopped while the drop of a closed session has not reached Redis', () => {
  let redis: RedisServer | undefined;
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];
  const proxies: PubSubProxy[] = [];
  let run = 0;

  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.terminate();
    await Promise.all(servers.splice(0).map((server) => server.close()));
    for (const proxy of proxies.splice(0)) proxy.close();
  });

  /**
   * Two nodes on one Redis: node a (through a proxy that can hold Redis'
   * replies back, with `proxied`) reaches it as a user whose scripts are
   * refused once a's holder of `k` has it and a waiter on node b queued for
   * it. The holder's connection then ends: its drop fails, and node a keeps
   * it to retry. Resolves once the drop failed.
   */
  async function dropFailedOnNodeA({ ttl, proxied = false }: { ttl: number; proxied?: boolean }) {
    if (!redis) throw new Error('the redis-server starts in beforeAll');
    const url = redis.url;
    const user = `stop${process.pid}x${++run}`;
    const namespace = `nodestop${process.pid}x${run}`;
    await withRedis(url, (admin) => admin.sendCommand(['ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all']));
    const proxy = proxied ? await startPubSubProxy(redis.port) : null;
    if (proxy) proxies.push(proxy);
    const watcher = closeWatcher();
    const a = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      logger: watcher.logger,
      store: createRedisStore({
        url: (proxy?.url ?? url).replace('redis://', `redis://${user}:pw@`),
        namespace,
        nodeTtl: ttl,
        ...(proxy ? { commandTimeout: 5000 } : {}),
      }),
    });
    servers.push(a);
    const b = await createLockServer({ port: 0, heartbeatInterval: 0, store: createRedisStore({ url, namespace, nodeTtl: ttl }) });
    servers.push(b);
    const holder = await RawClient.connect(a.url);
    const waiter = await RawClient.connect(b.url);
    clients.push(holder, waiter);

    expect(await holder.request({ op: 'acquire', key: 'k' })).toMatchObject({ acquired: true });
    waiter.send({ op: 'acquire', id: 'w', key: 'k' });
    expect(await waiter.next((m) => m.type === 'queued')).toMatchObject({ position: 1 });
    await withRedis(url, (admin) => admin.sendCommand(['ACL', 'SETUSER', user, '-@scripting']));
    holder.terminate();
    await watcher.closeFailed;
    /** Stops node a (not closed again after the test). */
    const stopA = async () => {
      servers.splice(servers.indexOf(a), 1);
      await a.close();
    };
    return { url, user, proxy, waiter, stopA };
  }

  it("leaves that session's locks to the other nodes, which pass them on within the node TTL", async () => {
    const ttl = 1000;
    const { waiter, stopA } = await dropFailedOnNodeA({ ttl });
    // Node a stops before a retry could drop it.
    await stopA();

    expect(await waiter.reply('w', { timeout: 3 * ttl })).toMatchObject({ acquired: true });
    expect(await waiter.request({ op: 'status', key: 'k' })).toMatchObject({ holders: [{ session: waiter.session }], queue: [] });
  });

  it("waits for the housekeeping's retry in flight, and leaves the session's locks to the other nodes when it failed too", async () => {
    const ttl = 3000;
    const { url, user, proxy, waiter, stopA } = await dropFailedOnNodeA({ ttl, proxied: true });
    const refused = () =>
      withRedis(url, async (admin) => {
        const log = (await admin.sendCommand(['ACL', 'LOG'])) as unknown[][];
        let count = 0;
        for (const entry of log) {
          const i = entry.indexOf('username');
          if (entry[i + 1] === user) count += Number(entry[entry.indexOf('count') + 1]);
        }
        return count;
      });
    const before = await refused();
    // The housekeeping's retry is refused in Redis, its answer held back: it is in flight when node a stops.
    proxy?.delayReplies(400);
    await vi.waitFor(async () => expect(await refused()).toBeGreaterThan(before), { timeout: 2 * ttl, interval: 20 });
    await stopA();

    expect(await waiter.reply('w', { timeout: 3 * ttl })).toMatchObject({ acquired: true });
  });
});
