import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDifferentialPage, type DifferentialPage } from '../web-locks-differential/page.js';
import type { Step } from '../web-locks-differential/program.js';

/**
 * Fixed programs of the Web Locks differential fuzz (`npm run fuzz`): each
 * runs in Chromium on `navigator.locks` and on lockwire clients'
 * `client.locks`, and every request must go through the same after each
 * step, with the same `query()`; then, with the aborts Chromium does not
 * follow the spec in, on the spec's model and lockwire again (see
 * `test/web-locks-differential/program.ts`). Seeds 1 to 30 of the fuzz,
 * and programs written for the paths a seed reaches only by chance.
 */
const SEEDS = Array.from({ length: 30 }, (_, i) => i + 1);

const request = (agent: number, options: Extract<Step, { do: 'request' }>['options'], name = 'a'): Step => ({ do: 'request', agent, name, options });
const end = (index: number): Step => ({ do: 'end', request: index, fail: false });
const abort = (index: number): Step => ({ do: 'abort', request: index });

/** Programs for paths of the client's own queue and of aborts, each named after what it shows. */
const WRITTEN: Record<string, Step[]> = {
  // #2 waits in its client for #1, a writer of another client queued before it, and shares #0's hold once #1 is aborted.
  'a shared request behind an aborted writer of another client shares the hold of its own client': [
    request(0, { mode: 'shared' }),
    request(1, { mode: 'exclusive', signal: true }),
    request(0, { mode: 'shared' }),
    abort(1),
    end(0),
    end(2),
  ],
  // The writer at the head is aborted: the readers behind it are granted beside the reader holding the lock.
  'the readers behind an aborted writer are granted beside a reader holding the lock': [
    request(0, { mode: 'shared' }),
    request(1, { mode: 'exclusive', signal: true }),
    request(2, { mode: 'shared' }),
    request(1, { mode: 'shared' }, 'b'),
    abort(1),
    end(0),
    end(2),
  ],
  // An aborted reader in the middle of the queue changes nothing for the writer ahead of it or the one behind.
  'an aborted request in the middle of the queue holds back nothing': [
    request(0, { mode: 'exclusive' }),
    request(1, { mode: 'shared', signal: true }),
    request(2, { mode: 'exclusive' }),
    abort(1),
    end(0),
    end(2),
  ],
  // Requests of one client queue in it behind its own holder, in order, and are granted in turn.
  'requests of one client are granted in the order they were made': [
    request(0, { mode: 'exclusive' }),
    request(0, { mode: 'shared' }),
    request(0, { mode: 'exclusive' }),
    end(0),
    end(1),
    end(2),
  ],
};

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

  it.each(Object.entries(WRITTEN))('%s', async (label, steps) => {
    const { failure } = await page.runSteps(steps, label);
    expect(failure).toBeNull();
    expect(page.pageErrors).toEqual([]);
  }, 30_000);
});
