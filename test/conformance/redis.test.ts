import { afterAll, beforeAll } from 'vitest';
import { redisTarget } from '../helpers/redis-target.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { describeAcquire } from './acquire.js';
import { describeDisconnect } from './disconnect.js';
import { describeErrors } from './errors.js';
import { describeKeys } from './keys.js';
import { describeObserve } from './observe.js';
import { describeQueue } from './queue.js';
import { describeSteal } from './steal.js';
import { describeTimeouts } from './timeouts.js';
import { describeWaitCancel } from './wait-cancel.js';

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

describeAcquire(target);
describeQueue(target);
describeSteal(target);
describeTimeouts(target);
describeWaitCancel(target);
describeObserve(target);
describeErrors(target);
describeKeys(target);
describeDisconnect(target);
