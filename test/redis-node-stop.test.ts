import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLockServer, type LockServer, type Logger } from '@lockwire/server';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { startPubSubProxy, type PubSubProxy } from '../server/test/redis-harness.js';
import { RawClient } from './helpers/raw-client.js';
import { startRedisServer, withRedis, type RedisServer } from './helpers/redis-server.js';

const NODE_TTL = 1000;

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
  });

  it("leaves that session's locks to the other nodes, which pass them on within the node TTL", async () => {
    if (!redis) throw new Error('the redis-server starts in beforeAll');
    const url = redis.url;
    const user = `stop${process.pid}x${++run}`;
    // Node a reaches Redis as a user whose scripts can be refused while its plain commands still run.
    await withRedis(url, (admin) => admin.sendCommand(['ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all']));
    const namespace = `nodestop${process.pid}x${run}`;
    const watcher = closeWatcher();
    const a = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      logger: watcher.logger,
      store: createRedisStore({ url: url.replace('redis://', `redis://${user}:pw@`), namespace, nodeTtl: NODE_TTL }),
    });
    servers.push(a);
    const b = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      store: createRedisStore({ url, namespace, nodeTtl: NODE_TTL }),
    });
    servers.push(b);
    const holder = await RawClient.connect(a.url);
    const waiter = await RawClient.connect(b.url);
    clients.push(holder, waiter);

    expect(await holder.request({ op: 'acquire', key: 'k' })).toMatchObject({ acquired: true });
    waiter.send({ op: 'acquire', id: 'w', key: 'k' });
    expect(await waiter.next((m) => m.type === 'queued')).toMatchObject({ position: 1 });

    // The holder's connection ends while node a's scripts are refused: its drop fails and waits for a retry.
    await withRedis(url, (admin) => admin.sendCommand(['ACL', 'SETUSER', user, '-@scripting']));
    holder.terminate();
    await watcher.closeFailed;
    // Node a stops before a retry could drop it.
    servers.splice(servers.indexOf(a), 1);
    await a.close();

    const granted = await waiter.reply('w', { timeout: 3 * NODE_TTL });
    expect(granted).toMatchObject({ acquired: true });
    expect(await waiter.request({ op: 'status', key: 'k' })).toMatchObject({ holders: [{ session: waiter.session }], queue: [] });
  });
});

describe('a Redis node stopped while its housekeeping retries the drop of a closed session', () => {
  let redis: RedisServer | undefined;
  const servers: LockServer[] = [];
  const clients: RawClient[] = [];
  const proxies: PubSubProxy[] = [];

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

  it("waits for that retry, and leaves the session's locks to the other nodes when it failed too", async () => {
    if (!redis) throw new Error('the redis-server starts in beforeAll');
    const url = redis.url;
    const ttl = 3000;
    const user = `stophk${process.pid}`;
    await withRedis(url, (admin) => admin.sendCommand(['ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all']));
    // Node a reaches Redis through a proxy that can hold Redis's replies back while Redis runs the commands on time.
    const proxy = await startPubSubProxy(redis.port);
    proxies.push(proxy);
    const namespace = `nodestophk${process.pid}`;
    const watcher = closeWatcher();
    const a = await createLockServer({
      port: 0,
      heartbeatInterval: 0,
      logger: watcher.logger,
      store: createRedisStore({ url: proxy.url.replace('redis://', `redis://${user}:pw@`), namespace, nodeTtl: ttl, commandTimeout: 5000, logger: watcher.logger }),
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

    // The holder's connection ends while node a's scripts are refused: its drop fails and waits for a retry.
    await withRedis(url, (admin) => admin.sendCommand(['ACL', 'SETUSER', user, '-@scripting']));
    holder.terminate();
    await watcher.closeFailed;
    const refused = () => withRedis(url, async (admin) => {
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
    proxy.delayReplies(400);
    await vi.waitFor(async () => expect(await refused()).toBeGreaterThan(before), { timeout: 2 * ttl, interval: 20 });
    servers.splice(servers.indexOf(a), 1);
    await a.close();

    const granted = await waiter.reply('w', { timeout: 3 * ttl });
    expect(granted).toMatchObject({ acquired: true });
  });
});
