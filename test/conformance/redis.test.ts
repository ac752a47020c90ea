import { afterAll, beforeAll } from 'vitest';
import { redisTarget } from '../helpers/redis-target.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { describeConformance } from './suite.js';

// The protocol conformance suite against three lockwire nodes sharing one
// redis-server: contending clients are connected to different nodes.
let redis: RedisServer | undefined;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis?.stop();
});

const target = redisTarget({
  name: 'redis, 3 nodes',
  url: () => {
    if (!redis) throw new Error('redis-server is not started');
    return redis.url;
  },
});

describeConformance(target);
