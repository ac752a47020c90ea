/**
 * What the checker reports: which promise a history broke, in words, with the
 * events that show it.
 */
import type { HistoryEvent } from './history.js';

/**
 * The rules a history is checked against, by the promise they guard:
 * - `token-order` (1): tokens strictly increase per key in grant order; no
 *   token is granted twice; a re-acquire returns the token already held.
 * - `exclusive-overlap` (2): an exclusive hold never overlaps another hold of
 *   the same key.
 * - `fencing` (3): the fenced resource refused exactly the writes it should.
 * - `grant-validity` (4): every answer belongs to a request and comes once; no
 *   grant after a confirmed cancel; no timeout before its time; no `lost` or
 *   release of a lock never granted.
 * - `fifo` (4): waiters of a key are granted in queue order (option `fifo`).
 * - `release-bound` (5): a closed connection's locks are handed on to the
 *   next waiter: one still waiting when the close's bound (on the real clock
 *   a hang guard) has passed, with no other holder in the way, shows a lost
 *   hand-off.
 * - `lost-before-grant` (6): a holder is told it lost a lock before the next
 *   holder is granted it.
 */
export const Rule = {
  TokenOrder: 'token-order',
  ExclusiveOverlap: 'exclusive-overlap',
  Fencing: 'fencing',
  GrantValidity: 'grant-validity',
  Fifo: 'fifo',
  ReleaseBound: 'release-bound',
  LostBeforeGrant: 'lost-before-grant',
} as const;
export type Rule = (typeof Rule)[keyof typeof Rule];

/** One broken promise. */
export interface Violation {
  rule: Rule;
  /** What happened, naming clients, keys, tokens and times. */
  message: string;
  /** The events that show it, in time order where that matters. */
  events: HistoryEvent[];
}

/** Formats a time for messages: ms with three decimals. */
export function ms(at: number): string {
  return `${at.toFixed(3)}ms`;
}
