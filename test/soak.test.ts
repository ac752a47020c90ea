import { describe, expect, it } from 'vitest';
import { formatViolations } from './checker/check.js';
import { runSoak, summarize } from './soak/run.js';

// The CI-sized soak: one minute of random traffic and faults per store
// (the server is built by the global setup),
// the history checked every 15 s. `npm run soak -- --minutes N` runs longer.
const MINUTE = 60_000;

describe('soak', () => {
  for (const store of ['memory', 'redis'] as const) {
    it(`a minute of random traffic and faults on the ${store} store breaks no promise`, { timeout: 3 * MINUTE }, async () => {
      // Run beside the other test files on a shared machine, a node's pub/sub delivery can lag another's
      // by more than the 100 ms `npm run soak` allows: a `lost` crossing nodes is checked against the next
      // grant with a wider slack here (it is not promised across nodes, docs/guarantees.md; fencing
      // tokens cover it), while the causal check, sound under any delay, stays as it is.
      const result = await runSoak({ store, durationMs: MINUTE, build: false, redisLostOrderSlackMs: 300 });
      expect(result.operations, summarize(result)).toBeGreaterThan(1000);
      expect(Object.values(result.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(10);
      if (store === 'redis') expect(result.faults['node-kill']).toBeGreaterThan(0);
      expect(result.violations, `${summarize(result)}\n${formatViolations(result.violations)}`).toEqual([]);
    });
  }
});
