import { afterAll, beforeAll } from 'vitest';
import { redisTarget } from '../helpers/redis-target.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-server.js';
import { describeAcquire } from './acquire.js';
import { describeDisconnect } from './disconnect.js';
import { describeErrors } from './errors.js';
import { describeKeys } from './keys.js';
import { describeObserve } from './observe.js';
import { describeQueue } from './queue.js';
import { describeSteal } from './steal.js';
import { describeTimeouts } from './timeouts.js';
import { describeWaitCancel } from './wait-cancel.js';

// The protocol conformance suite against two lockwire nodes on a Redis
// Cluster of three primaries: keys spread over the shards by hash slot.
let cluster: RedisCluster | undefined;
beforeAll(async () => {
  cluster = await startRedisCluster();
});
afterAll(async () => {
  await cluster?.stop();
});

const target = redisTarget({
  name: 'redis cluster, 2 nodes',
  cluster: true,
  nodes: 2,
  url: () => {
    if (!cluster) throw new Error('the Redis Cluster is not started');
    return cluster.url;
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
