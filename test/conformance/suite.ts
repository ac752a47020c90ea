import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { describeAcquire } from './acquire.js';
import { describeDisconnect } from './disconnect.js';
import { describeErrors } from './errors.js';
import { describeCredentialExpiry } from './expiry.js';
import { describeKeys } from './keys.js';
import { describeObserve } from './observe.js';
import { describeQueue } from './queue.js';
import { describeSteal } from './steal.js';
import { describeTextAndCounts } from './text-and-counts.js';
import { describeTimeouts } from './timeouts.js';
import { describeWaitCancel } from './wait-cancel.js';

/**
 * Registers the whole protocol conformance suite against `target`. Every
 * store runs this one list, so a suite added here runs on all of them.
 */
export function describeConformance(target: ConformanceTarget): void {
  describeAcquire(target);
  describeQueue(target);
  describeSteal(target);
  describeTimeouts(target);
  describeWaitCancel(target);
  describeObserve(target);
  describeErrors(target);
  describeKeys(target);
  describeDisconnect(target);
  describeCredentialExpiry(target);
  describeTextAndCounts(target);
}
