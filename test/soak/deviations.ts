/**
 * Known deviations the soak counts apart from violations, matched as
 * narrowly as the checker's report allows, so that anything else still
 * fails the run; see docs/guarantees.md.
 */
import { Rule, type Violation } from '../checker/check.js';

/** Earliness below this is put down to the server's millisecond timers. */
export const TIMER_TOLERANCE_MS = 2;

export interface Deviations {
  /**
   * Timeouts (acquire timeout, hold expiry) answered less than
   * `TIMER_TOLERANCE_MS` early: the server counts whole milliseconds.
   */
  earlyTimers: { count: number; maxMs: number };
}

export function noDeviations(): Deviations {
  return { earlyTimers: { count: 0, maxMs: 0 } };
}

/** How early a timeout fired, for a grant-validity violation about one; `undefined` for any other. */
function earliness(violation: Violation): number | undefined {
  if (violation.rule !== Rule.GrantValidity) return undefined;
  const invoked = violation.events[0];
  const end = violation.events[violation.events.length - 1];
  if (invoked?.type !== 'acquire' || !end) return undefined;
  const timeout = violation.message.includes('timed out early')
    ? invoked.acquireTimeout
    : violation.message.includes('expired early')
      ? invoked.holdTimeout
      : null;
  return timeout === null ? undefined : invoked.at + timeout - end.at;
}

/** Moves the known deviations out of `violations` into `into`; returns what is left. */
export function setDeviationsApart(violations: readonly Violation[], into: Deviations): Violation[] {
  return violations.filter((violation) => {
    const early = earliness(violation);
    if (early === undefined || early >= TIMER_TOLERANCE_MS) return true;
    into.earlyTimers.count++;
    into.earlyTimers.maxMs = Math.max(into.earlyTimers.maxMs, early);
    return false;
  });
}
