import { afterAll, beforeAll } from 'vitest';
import { redisTarget } from '../helpers/redis-target.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-server.js';
import { describeConformance } from './suite.js';

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

describeConformance(target);
