import { afterAll, beforeAll } from 'vitest';
import { createRedisStore } from '../src/redis/redis-store.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { describeGrace } from './grace-scenarios.js';

let redis: RedisServer;
let namespace = 0;

beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis.stop();
});

describeGrace('redis store', async (clock) =>
  createRedisStore({ url: redis.url, namespace: `grace${process.pid}x${++namespace}`, clock }),
);
