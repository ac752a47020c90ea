/**
 * The handoff rules: a closed connection's locks are handed on to the next
 * waiter, never lost (5), and a holder hears `lost` before the next holder is
 * granted (6).
 */
import type { ConnectionClosed } from './history.js';
import { answerProves, type AcquireOp, type CausalAnswers, type ClientModel, type Hold, type HistoryModel } from './model.js';
import { Rule, ms, type Violation } from './violation.js';

/** True when the waiter surely still waited at the server at `deadline`. */
function waitingThrough(op: AcquireOp, deadline: number, model: HistoryModel): boolean {
  if (!op.queued || op.queued.at > deadline) return false;
  if (op.completion && op.completion.at <= deadline) return false;
  if (op.cancel && op.cancel.at <= deadline) return false;
  const timeout = op.invoked.acquireTimeout;
  if (timeout !== null && op.invoked.at + timeout < deadline) return false;
  const closed = model.clients.get(op.client)?.closed;
  return !closed || (closed.kind !== 'server' && closed.at > deadline);
}

/**
 * The deadline by which `key`, held by a connection closed at `closed`, must
 * have been granted again, or `undefined` when another holder may keep it
 * indefinitely. Other possible holders push the deadline: one whose own
 * connection closed, to its own bound; one whose hold ended (released, lost),
 * to that end plus this close's bound, which covers the delivery of the
 * grant that end allowed. Repeated until nothing moves.
 */
function handoffDeadline(key: string, closed: ConnectionClosed, bound: number, model: HistoryModel): number | undefined {
  let deadline = closed.at + bound;
  for (let moved = true; moved; ) {
    moved = false;
    for (const hold of model.holds) {
      if (hold.key !== key || hold.client === closed.client) continue;
      if (hold.grantUpper >= closed.at || hold.possiblyUntil <= closed.at) continue;
      if (!Number.isFinite(hold.possiblyUntil)) return undefined;
      // Another holder whose end is known: the key is due one bound after that end (or its own close bound).
      const due = hold.possiblyUntil + (hold.endKind === 'close' ? 0 : bound);
      if (due > deadline) {
        deadline = due;
        moved = true;
      }
    }
    for (const op of model.acquires) {
      if (op.invoked.key !== key || op.client === closed.client || op.completion) continue;
      const other = model.clients.get(op.client)?.closed;
      if (!other || op.invoked.at >= deadline) continue;
      if (other.boundMs === undefined) return undefined;
      const until = other.at + other.boundMs;
      if (until > deadline) {
        deadline = until;
        moved = true;
      }
    }
  }
  return deadline;
}

/**
 * Rule 5. For each connection closed with a `boundMs`, and each key it held
 * or may have been granted (an acquire without an answer): if some other
 * client's request was queued for the key and surely still waiting at
 * `close + bound`, some client other than the closed one must have received
 * a grant of the key between the close and that deadline. Checked only where
 * no other live holder may be keeping the key. The grant coming after the
 * close is rule 2's (the closed hold surely lasted until the close); the
 * bound only says how long to wait before calling the hand-off lost: on the
 * real clock a hang guard (`handoffGuardMs`), so no latency is judged.
 */
export function checkReleaseBound(model: HistoryModel): Violation[] {
  const violations: Violation[] = [];
  for (const client of model.clients.values()) {
    const closed = client.closed;
    if (!closed || closed.boundMs === undefined) continue;
    const keys = new Set<string>();
    for (const hold of model.holds) {
      if (hold.client === client.client && hold.endKind === 'close') keys.add(hold.key);
    }
    for (const op of model.acquires) {
      if (op.client === client.client && op.outcome === 'unknown') keys.add(op.invoked.key);
    }
    for (const key of keys) {
      const deadline = handoffDeadline(key, closed, closed.boundMs, model);
      if (deadline === undefined) continue;
      const waiter = model.acquires.find(
        (op) => op.invoked.key === key && op.client !== client.client && waitingThrough(op, deadline, model),
      );
      if (!waiter?.queued) continue;
      const handedOff = model.holds.some(
        (hold) =>
          hold.key === key && hold.client !== client.client && hold.grantUpper >= closed.at && hold.grantUpper <= deadline,
      );
      if (handedOff) continue;
      violations.push({
        rule: Rule.ReleaseBound,
        message:
          `${client.client} closed (${closed.kind}, bound ${closed.boundMs}ms) at ${ms(closed.at)} holding ` +
          `${JSON.stringify(key)}; ${waiter.client} waited in the queue, but no grant of the key arrived by ${ms(deadline)}`,
        events: [closed, waiter.queued, ...(waiter.completion ? [waiter.completion] : [])],
      });
    }
  }
  return violations;
}

/** Per key, holds by token, with the earliest grant arrival among higher tokens (any mode / exclusive only). */
function successorIndex(holds: readonly Hold[]): Map<string, { sorted: Hold[]; anyAfter: (Hold | undefined)[]; exclusiveAfter: (Hold | undefined)[] }> {
  const perKey = new Map<string, Hold[]>();
  for (const hold of holds) {
    const list = perKey.get(hold.key) ?? [];
    list.push(hold);
    perKey.set(hold.key, list);
  }
  const index = new Map<string, { sorted: Hold[]; anyAfter: (Hold | undefined)[]; exclusiveAfter: (Hold | undefined)[] }>();
  for (const [key, list] of perKey) {
    const sorted = [...list].sort((a, b) => a.token - b.token);
    const anyAfter: (Hold | undefined)[] = new Array<Hold | undefined>(sorted.length + 1).fill(undefined);
    const exclusiveAfter: (Hold | undefined)[] = new Array<Hold | undefined>(sorted.length + 1).fill(undefined);
    for (let i = sorted.length - 1; i >= 0; i--) {
      const hold = sorted[i];
      const anyNext = anyAfter[i + 1];
      const exclusiveNext = exclusiveAfter[i + 1];
      anyAfter[i] = hold && (!anyNext || hold.grantUpper < anyNext.grantUpper) ? hold : anyNext;
      exclusiveAfter[i] =
        hold?.mode === 'exclusive' && (!exclusiveNext || hold.grantUpper < exclusiveNext.grantUpper) ? hold : exclusiveNext;
    }
    index.set(key, { sorted, anyAfter, exclusiveAfter });
  }
  return index;
}

/** The first successor of `hold`: the earliest-arriving conflicting grant with a higher token. */
function firstSuccessor(hold: Hold, index: ReturnType<typeof successorIndex>): Hold | undefined {
  const entry = index.get(hold.key);
  if (!entry) return undefined;
  let lo = 0;
  let hi = entry.sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((entry.sorted[mid]?.token ?? Infinity) <= hold.token) lo = mid + 1;
    else hi = mid;
  }
  return hold.mode === 'exclusive' ? entry.anyAfter[lo] : entry.exclusiveAfter[lo];
}

/** The answer that proves the holder still believed it held the lock after `after`, if any (of those `causal` takes as proof). */
function laterAnswer(client: ClientModel | undefined, hold: Hold, after: number, causal: CausalAnswers) {
  return client?.answers.find(
    (answer) =>
      answer.invokedAt > after &&
      answer.event.at > hold.grantUpper &&
      answer.event.at < hold.endSeenAt &&
      answerProves(answer.event, hold.key, causal),
  );
}

/**
 * Rule 6. For each hold and its first successor (a conflicting grant of the
 * key with a higher token, hence made after this hold ended at the server):
 * - causal evidence, sound under any delays: the holder received an answer to
 *   a request it sent after the successor's grant arrived, and had not yet
 *   received `lost` (or had been told nothing at all). On one ordered
 *   connection the `lost` would have come first. With `causalAnswers`
 *   `same-key`, only an answer about the key or a pong is evidence.
 * - arrival order: the `lost` arrived more than `lostOrderSlackMs` after the
 *   successor's grant. This assumes both deliveries take about as long; set
 *   the slack to the spread of delivery times when clients run in other
 *   processes or are paused, `Infinity` to rely on causal evidence alone.
 * A release answered `not_holder` without a `lost` first is found while
 * reading the history (`model.ts`).
 */
export function checkLostBeforeGrant(model: HistoryModel, lostOrderSlackMs: number): Violation[] {
  const violations: Violation[] = model.found.filter((v) => v.rule === Rule.LostBeforeGrant);
  const index = successorIndex(model.holds);
  for (const hold of model.holds) {
    const next = firstSuccessor(hold, index);
    if (!next || next.client === hold.client) continue;
    const evidence = laterAnswer(model.clients.get(hold.client), hold, next.grantUpper, model.causalAnswers);
    if (evidence) {
      violations.push({
        rule: Rule.LostBeforeGrant,
        message:
          `${next.client} was granted ${JSON.stringify(hold.key)} (token ${next.token}) at ${ms(next.grantUpper)}, ` +
          `yet ${hold.client} (token ${hold.token}) got an answer to a later request without having been told it lost the lock`,
        events: [hold.grant, next.grant, evidence.event],
      });
      continue;
    }
    const lost = hold.endKind === 'lost' ? hold.endEvent : undefined;
    if (lost && next.grantUpper + lostOrderSlackMs < lost.at) {
      violations.push({
        rule: Rule.LostBeforeGrant,
        message:
          `${next.client} was granted ${JSON.stringify(hold.key)} (token ${next.token}) at ${ms(next.grantUpper)}, ` +
          `before ${hold.client} was told it lost token ${hold.token} (at ${ms(lost.at)})`,
        events: [hold.grant, next.grant, lost],
      });
    }
  }
  return violations;
}
