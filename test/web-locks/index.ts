/**
 * The Web Locks suites, ported from web-platform-tests `web-locks/`, and a
 * runner for pages. Free of Node imports: bundle this file for a browser
 * and call `runSuites(connect)` with a `connect` that opens a `LockClient`
 * to a dedicated server (the cases expect no other lock traffic on it).
 */
import { acquireSuite } from './acquire.js';
import { framesSuite } from './frames.js';
import { runCase, type Connect, type WebLocksSuite } from './harness.js';
import { heldSuite } from './held.js';
import { ifAvailableSuite } from './if-available.js';
import { modeExclusiveSuite } from './mode-exclusive.js';
import { modeMixedSuite } from './mode-mixed.js';
import { modeSharedSuite } from './mode-shared.js';
import { queryEmptySuite } from './query-empty.js';
import { queryOrderingSuite } from './query-ordering.js';
import { querySuite } from './query.js';
import { resourceNamesSuite } from './resource-names.js';
import { signalSuite } from './signal.js';
import { stealSuite } from './steal.js';

export type { Connect, WebLocksCase, WebLocksContext, WebLocksSuite } from './harness.js';
export { runCase } from './harness.js';

/** Every ported suite, in a stable order. */
export const suites: readonly WebLocksSuite[] = [
  acquireSuite,
  modeExclusiveSuite,
  modeSharedSuite,
  modeMixedSuite,
  ifAvailableSuite,
  stealSuite,
  signalSuite,
  querySuite,
  queryEmptySuite,
  queryOrderingSuite,
  heldSuite,
  resourceNamesSuite,
  framesSuite,
];

/** The outcome of one case. */
export interface CaseResult {
  suite: string;
  name: string;
  ok: boolean;
  /** The failure's name and message, when not ok. */
  error?: string;
}

/**
 * Runs every case one after the other (each with its own clients) and
 * resolves with one result per case; never rejects.
 */
export async function runSuites(connect: Connect): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  let index = 0;
  for (const suite of suites) {
    for (const testCase of suite.cases) {
      try {
        await runCase(connect, testCase, index++);
        results.push({ suite: suite.name, name: testCase.name, ok: true });
      } catch (error) {
        const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        results.push({ suite: suite.name, name: testCase.name, ok: false, error: text });
      }
    }
  }
  return results;
}
