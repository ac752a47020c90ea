import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDifferentialPage, type DifferentialPage } from '../web-locks-differential/page.js';

/**
 * Fixed programs of the Web Locks differential fuzz (`npm run fuzz`): each
 * runs in Chromium on `navigator.locks` and on lockwire clients'
 * `client.locks`, and every request must go through the same after each
 * step, with the same `query()` (see `test/web-locks-differential/program.ts`).
 */
const SEEDS = Array.from({ length: 40 }, (_, i) => i + 1);

let page: DifferentialPage;

beforeAll(async () => {
  page = await openDifferentialPage();
}, 60_000);

afterAll(async () => {
  await page?.close();
});

describe('Web Locks: lockwire against the browser, step by step', () => {
  it.each(SEEDS)('program %i', async (seed) => {
    const { failure } = await page.run(seed);
    expect(failure).toBeNull();
    expect(page.pageErrors).toEqual([]);
  }, 30_000);
});
