import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultsLayer, envLayer, flagLayer, resolveConfig } from '../server/src/config.js';
import { DEFAULT_REDIS_CONNECTIONS } from '../server/src/redis/command-pool.js';
import { connectRedis } from '../server/src/redis/redis-link.js';
import { createRedisStore } from '../server/src/redis/redis-store.js';
import { acquireInput, quietListener } from '../server/test/server-harness.js';
import { onPort, startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { inProcessServes } from './helpers/serve-in-process.js';

// A node's command connections to a single Redis server: how many it opens,
// and which one carries each command (Redis' own CLIENT ID and CLIENT LIST).

describe('the command connections of a node to a single Redis server', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis.stop();
  });

  /** Connections the server has now, the counting one excluded. */
  const clientCount = () => onPort(redis.port, async (admin) => (await admin.clientList()).length - 1);

  it('opens the given number of command connections beside its pub/sub connection, and closes them all', async () => {
    const before = await clientCount();
    const link = await connectRedis({ url: redis.url, cluster: false, connections: 3, commandTimeout: 2000, reconnectDelay: 100 });
    expect(await clientCount()).toBe(before + 4);
    await link.close();
    await expect.poll(clientCount, { timeout: 2000 }).toBe(before);
  });

  it(`opens ${DEFAULT_REDIS_CONNECTIONS} command connections when not told`, async () => {
    const before = await clientCount();
    const link = await connectRedis({ url: redis.url, cluster: false, commandTimeout: 2000, reconnectDelay: 100 });
    try {
      expect(await clientCount()).toBe(before + DEFAULT_REDIS_CONNECTIONS + 1);
    } finally {
      await link.close();
    }
  });

  it('sends every command of one hash slot on one connection, and the slots of many keys on each of them', async () => {
    const link = await connectRedis({ url: redis.url, cluster: false, connections: 3, commandTimeout: 2000, reconnectDelay: 100 });
    try {
      const idOf = async (key: string | undefined) => String(await link.command(key, ['CLIENT', 'ID']));
      // A hash tag puts keys in one slot: a lock key's records, its steps and reads all travel together.
      for (const tag of ['a', 'b', 'lock:7']) {
        const ids = new Set(await Promise.all(['k', 'h', 'q', 'w', 'v'].map((part) => idOf(`lw:{${tag}}:${part}`))));
        expect(ids.size).toBe(1);
      }
      const spread = new Set(await Promise.all(Array.from({ length: 60 }, (_, i) => idOf(`lw:{key-${i}}:k`))));
      expect(spread.size).toBe(3);
      // A command of no key takes the first connection, which is one of them.
      expect(spread.has(await idOf(undefined))).toBe(true);
    } finally {
      await link.close();
    }
  });

  it('refuses a count below 1, above 64 or not whole, before connecting', async () => {
    const before = await clientCount();
    for (const connections of [0, 65, 1.5, Number.NaN]) {
      await expect(connectRedis({ url: redis.url, cluster: false, connections, commandTimeout: 2000, reconnectDelay: 100 })).rejects.toThrow(
        /connections must be an integer from 1 to 64/,
      );
    }
    expect(await clientCount()).toBe(before);
  });

  describe('lockwire serve --redis-connections', () => {
    const serves = inProcessServes();
    afterEach(() => serves.stopAll());
    const namespace = () => `poolcli${process.pid}x${Math.random().toString(36).slice(2)}`;

    it('opens as many command connections as the flag or LOCKWIRE_REDIS_CONNECTIONS says', async () => {
      const before = await clientCount();
      await serves.listen(['--store', 'redis', '--redis-url', redis.url, '--redis-namespace', namespace(), '--redis-connections', '5']);
      expect(await clientCount()).toBe(before + 6);
      await serves.listen(['--store', 'redis', '--redis-url', redis.url, '--redis-namespace', namespace()], { LOCKWIRE_REDIS_CONNECTIONS: '1' });
      expect(await clientCount()).toBe(before + 6 + 2);
    });

    it('exits with a usage error for a count outside 1 to 64, opening nothing', async () => {
      const before = await clientCount();
      for (const count of ['0', '65', 'two']) {
        const run = await serves.run(['--store', 'redis', '--redis-url', redis.url, '--redis-connections', count]);
        expect(run.exit).toBe(2);
        expect(run.stderr).toContain('--redis-connections');
      }
      expect(await clientCount()).toBe(before);
    });

    it(`defaults to ${DEFAULT_REDIS_CONNECTIONS}, below the environment, below the flag`, () => {
      const redisFlags = { store: 'redis', 'redis-url': 'redis://127.0.0.1:6379' };
      expect(resolveConfig([defaultsLayer(), flagLayer(redisFlags)]).redisConnections).toBe(DEFAULT_REDIS_CONNECTIONS);
      const env = envLayer({ LOCKWIRE_REDIS_CONNECTIONS: '3' });
      expect(resolveConfig([defaultsLayer(), env, flagLayer(redisFlags)]).redisConnections).toBe(3);
      expect(resolveConfig([defaultsLayer(), env, flagLayer({ ...redisFlags, 'redis-connections': '7' })]).redisConnections).toBe(7);
    });
  });

  it('a store opens the connections its options give and serves on them', async () => {
    const before = await clientCount();
    const store = createRedisStore({ url: redis.url, namespace: `pool${process.pid}`, connections: 4 });
    await store.start(quietListener());
    try {
      expect(await clientCount()).toBe(before + 5);
      for (let i = 0; i < 20; i++) {
        const outcome = await store.acquire(`session-${i}`, acquireInput(i + 1, `key-${i}`));
        expect(outcome.status).toBe('granted');
      }
      expect((await store.list('key-', 100, null)).locks).toHaveLength(20);
    } finally {
      await store.close();
    }
  });
});
