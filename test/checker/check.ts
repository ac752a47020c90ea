/**
 * Checks a recorded lock history against lockwire's promises.
 *
 * Every rule is conservative: it reports a violation only when the observed
 * times prove one, whatever the message delays were, except where an option
 * says otherwise (`lostOrderSlackMs`, and the close bounds, which are
 * measured to the arrival of the next grant by definition, and on the real
 * clock are hang guards: see `handoffGuardMs`). Requests without
 * an answer (`unknown`) are never flagged: they may or may not have taken
 * effect, and are counted as possible holders where that matters.
 */
import type { History } from './history.js';
import { checkExclusiveOverlap, checkFencing, checkTokenOrder } from './hold-rules.js';
import { checkFifo, checkGrantValidity } from './grant-rules.js';
import { checkLostBeforeGrant, checkReleaseBound } from './handoff-rules.js';
import { buildModel, type CausalAnswers } from './model.js';
import { Rule, type Violation } from './violation.js';

export { Rule, type Violation } from './violation.js';

export interface CheckOptions {
  /**
   * Check FIFO among the waiters of each key (rule 4). Only meaningful when no
   * faults were injected. Default `false`.
   */
  fifo?: boolean;
  /**
   * How much later than the next holder's grant a `lost` push may arrive
   * (rule 6), for the spread of delivery times between clients. Default 0:
   * the order of arrival must match the order of sending, true when the
   * clients share one process and nobody is paused. `Infinity` keeps only the
   * causal check.
   */
  lostOrderSlackMs?: number;
  /**
   * Which answers show that a holder had not lost its lock when it sent the
   * request (rule 6, and the end of a hold the other rules take as sure):
   * `any` (default), as on one server that answers in order; `same-key`, an
   * answer about the lock's key and a pong only, as the Redis store promises
   * across nodes, where an answer about another key may overtake a `lost`
   * still travelling over pub/sub.
   */
  causalAnswers?: CausalAnswers;
}

/** The checker's verdict: `ok` exactly when `violations` is empty. */
export interface CheckResult {
  ok: boolean;
  violations: Violation[];
}

/**
 * Checks `history` against the rules (see `Rule`). Never throws on a
 * malformed history: an answer without a request, a second answer, a `lost`
 * for a lock never granted are violations too.
 */
export function checkHistory(history: History, options: CheckOptions = {}): CheckResult {
  const model = buildModel(history, options.causalAnswers ?? 'any');
  const violations = [
    ...model.found.filter((v) => v.rule === Rule.TokenOrder),
    ...checkTokenOrder(model),
    ...checkExclusiveOverlap(model),
    ...checkFencing(model),
    ...checkGrantValidity(model),
    ...(options.fifo ? checkFifo(model) : []),
    ...checkReleaseBound(model),
    ...checkLostBeforeGrant(model, options.lostOrderSlackMs ?? 0),
  ];
  return { ok: violations.length === 0, violations };
}

/** A readable summary of violations, one per line, for test failure messages. */
export function formatViolations(violations: readonly Violation[]): string {
  return violations.map((v) => `[${v.rule}] ${v.message}`).join('\n');
}
