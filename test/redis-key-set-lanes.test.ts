import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey, keyNames } from '../server/src/redis/key-codec.js';
import { NodeKeySet } from '../server/src/redis/node-key-set.js';
import { connectRedis, type RedisLink } from '../server/src/redis/redis-link.js';
import { onPort, startRedisServer, type RedisServer } from './helpers/redis-server.js';

// A node records the keys its sessions use in its key set (so survivors can
// clean up after it) before their steps. With several command connections to
// a single server, the SADD and the SREM of a key go on the connection of
// the key's own steps: Redis' CLIENT LIST tells which connection ran a
// command last.

describe("a node's key set on a single server with several command connections", () => {
  let redis: RedisServer;
  let link: RedisLink;
  beforeAll(async () => {
    redis = await startRedisServer();
    link = await connectRedis({ url: redis.url, cluster: false, connections: 4, commandTimeout: 2000, reconnectDelay: 100 });
  });
  afterAll(async () => {
    await link.close();
    await redis.stop();
  });

  const names = keyNames('lanes');
  /** The Redis client id of the connection carrying the lock key's steps, and what it ran last. */
  const laneClient = async (key: string) => {
    const route = names.lockKeys(encodeKey(key))[0];
    if (!link.commandBefore) throw new Error('a single server link routes by key');
    return String(await link.commandBefore(route, ['CLIENT', 'ID']));
  };
  const lastCommandOf = (id: string) =>
    onPort(redis.port, async (admin) => /\bcmd=(\S+)/.exec(String(await admin.sendCommand(['CLIENT', 'LIST', 'ID', id])))?.[1]);

  it('sends the SADD of a new key, and its SREM once unused, on the connection of the key\'s steps', async () => {
    const keySet = new NodeKeySet(names);
    const set = names.nodeKeys('n1');
    // Keys over every lane: each is checked on its own lane's connection.
    const keys = Array.from({ length: 12 }, (_, i) => `room-${i}`);
    const lanes = new Set<string>();
    for (const key of keys) {
      const id = await laneClient(key);
      lanes.add(id);
      await keySet.register(link, encodeKey(key), 'n1');
      // The set's own slot is on one lane; the SADD is on the key's.
      await expect.poll(() => lastCommandOf(id), { timeout: 2000 }).toBe('sadd');
    }
    expect(lanes.size).toBeGreaterThan(1);
    expect((await onPort(redis.port, (admin) => admin.sMembers(set))).sort()).toEqual(keys.map(encodeKey).sort());

    for (const key of keys) {
      const id = await laneClient(key);
      await keySet.trim(link, 'n1', new Set(keys.filter((other) => other !== key).map(encodeKey)));
      expect(await lastCommandOf(id)).toBe('srem');
    }
    expect(await onPort(redis.port, (admin) => admin.sMembers(set))).toEqual([]);
  });
});
