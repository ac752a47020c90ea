import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDifferentialPage, type DifferentialPage } from '../web-locks-differential/page.js';

/**
 * Random programs of Web Lock requests (exclusive and shared, `ifAvailable`,
 * `steal`, aborted signals, callbacks that end or fail) run in Chromium on
 * its own `navigator.locks` and on lockwire clients' `client.locks`: after
 * every step each request must have gone through the same (granted, in
 * which mode, called back with `null`, resolved or rejected, and with
 * what), and `query()` must show the same. The browser's lock manager is
 * the reference (see `test/web-locks-differential/program.ts`).
 *
 * `npm run fuzz`; `FUZZ_RUNS` programs (default 100) of `FUZZ_STEPS` steps
 * (default 16), seeded from `FUZZ_SEED` (default: the clock) so that a
 * failing one runs again; on the
 * memory store, or with `FUZZ_STORE=redis` (or `redis-nodes`, here the
 * same) on the Redis store, on a redis-server of its own.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const STEPS = Number(process.env.FUZZ_STEPS ?? 16);
const onRedis = (process.env.FUZZ_STORE ?? 'memory') !== 'memory';

let page: DifferentialPage;

beforeAll(async () => {
  page = await openDifferentialPage({ redis: onRedis });
}, 60_000);

afterAll(async () => {
  await page?.close();
});

describe(`Web Locks differential fuzz (${onRedis ? 'redis' : 'memory'} store, seed ${SEED})`, () => {
  it.each(Array.from({ length: RUNS }, (_, i) => SEED + i))('program %i', async (seed) => {
    const { failure } = await page.run(seed, STEPS);
    expect(failure, `FUZZ_SEED=${seed} FUZZ_RUNS=1 FUZZ_STEPS=${STEPS}`).toBeNull();
    expect(page.pageErrors).toEqual([]);
  }, 60_000);
});
