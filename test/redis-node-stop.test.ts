import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLockServer, type LockServer, type Logger } from '@lockwire/server';
import { createRedisStore } from '../server/src/redis/redis-store.js';
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
