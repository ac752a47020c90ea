import { describe, expect, it } from 'vitest';
import { useConformance } from './helpers/conformance-context.js';
import { runSessions, useRedisNodes } from './helpers/differential.js';
import { memoryTarget } from './helpers/memory-target.js';

// The seeded programs of three sessions on two nodes contending for three
// keys (test/helpers/differential.ts), on two nodes of one redis-server: the
// Redis store must answer every request, tell every loss and show every
// key's events exactly as the memory store does, and leave the same table.

const redisNodes = useRedisNodes(2);
const SEEDS = 150;

describe('sessions on two nodes contending for a few keys, on the Redis store and the memory store', () => {
  const limits = { maxLocksPerSession: 2, maxWaitersPerKey: 2 };
  const memory = useConformance(memoryTarget, { limits });
  const onRedis = useConformance(redisNodes, { limits });

  it(`answer, lose, show events and leave the table alike, for each of ${SEEDS} seeded programs`, { timeout: 120_000 }, async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const expected = await runSessions(memory(), seed);
      expect({ seed, ...(await runSessions(onRedis(), seed)) }).toEqual({ seed, ...expected });
    }
  });
});
