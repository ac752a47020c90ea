import { describe, expect, it } from 'vitest';
import { useConformance } from './helpers/conformance-context.js';
import { runSessions, useRedisClusterNodes } from './helpers/differential.js';
import { memoryTarget } from './helpers/memory-target.js';

// The seeded programs of three sessions on two nodes contending for three
// keys (test/helpers/differential.ts), on two nodes of a Redis Cluster of
// three primaries, where a program's keys lie on two or three shards: the
// Redis store must answer every request, tell every loss and show every
// key's events exactly as the memory store does, and leave the same table.
// Events of different keys may reach a watcher in another order than the
// steps ran (docs/scaling.md, Guarantees and their limits); each key's
// events are compared on their own. A program takes about seven times as
// long here as on one redis-server: the `ping` barriers that settle each
// step wait for markers that come back through every primary over the
// cluster bus. So fewer programs run here.

const clusterNodes = useRedisClusterNodes(2);
const SEEDS = 12;

describe('sessions on two nodes contending for a few keys, on the Redis store on a Redis Cluster and the memory store', () => {
  const limits = { maxLocksPerSession: 2, maxWaitersPerKey: 2 };
  const memory = useConformance(memoryTarget, { limits });
  const onCluster = useConformance(clusterNodes, { limits });

  it(`answer, lose, show events and leave the table alike, for each of ${SEEDS} seeded programs`, { timeout: 120_000 }, async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const expected = await runSessions(memory(), seed);
      expect({ seed, ...(await runSessions(onCluster(), seed)) }).toEqual({ seed, ...expected });
    }
  });
});
