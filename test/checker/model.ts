/**
 * Turns a flat history into what the rules reason about: acquire operations
 * with their outcomes, and holds (one per grant of a token to a client) with
 * conservative bounds on when the server granted and ended them.
 *
 * Bounds, for a hold granted by an acquire sent at `i` and received at `g`:
 * - the server granted it in (i, g): `grantLower = i`, `grantUpper = g`;
 * - the server ended it no earlier than `surelyUntil` and no later than
 *   `possiblyUntil`. So the hold surely existed during
 *   `[grantUpper, surelyUntil]` and possibly during `[grantLower, possiblyUntil]`.
 *
 * `surelyUntil` by how the hold ended, as the client saw it:
 * - released: when the successful `release` was sent (the server cannot have
 *   released it before the request arrived);
 * - lost, reason `expired`: `i + holdTimeout` (the hold timer starts at the
 *   grant, after `i`), but not after the `lost` arrived;
 * - lost otherwise (stolen/revoked can come at any moment): `grantUpper`;
 * - connection closed on the client's side (`clean`, `half-open`, `crash`):
 *   the close, but not after `i + holdTimeout`, nor after any other client
 *   sent a `steal` for the key, nor after this client sent a release;
 *   closed by the server: `grantUpper`;
 * - not ended by the end of the history: as for a close at infinity.
 * Then, if the client received an answer to a request sent at `x` while it
 * still believed it held the lock, the hold existed at `x` (had it ended, the
 * `lost` push would have preceded that answer on the ordered connection), so
 * `surelyUntil` is raised to `x`. This leans on rule 6, which is checked on
 * its own. With `causalAnswers` `same-key` only answers about the hold's key
 * and pongs raise it (see `CheckOptions.causalAnswers`). Revokes by an admin connection that is not in the history, and
 * `extend`, are not modelled: histories with either may be flagged wrongly.
 */
import type {
  AcquireInvoked,
  AcquireQueued,
  CancelAnswered,
  CancelInvoked,
  ConnectionClosed,
  History,
  HistoryEvent,
  HistoryRequestId,
  LockLost,
  ReleaseInvoked,
  ResourceWrite,
} from './history.js';
import { Rule, type Violation } from './violation.js';

/** One acquire request and what became of it. */
export interface AcquireOp {
  client: string;
  invoked: AcquireInvoked;
  queued?: AcquireQueued;
  /** `unknown`: no answer arrived (the connection ended, or the history did). */
  outcome: 'granted' | 'not-granted' | 'failed' | 'unknown';
  /** The answer, if one arrived. */
  completion?: HistoryEvent;
  token?: number;
  /** A grant of a key the client already held with that token: not a new hold. */
  reacquire: boolean;
  cancel?: CancelInvoked;
  cancelReply?: CancelAnswered;
}

export type HoldEndKind = 'release' | 'lost' | 'close' | 'open' | 'silent';

/** One grant of a token for a key to a client, from grant to end. */
export interface Hold {
  client: string;
  key: string;
  token: number;
  mode: AcquireInvoked['mode'];
  acquire: AcquireOp;
  grant: HistoryEvent;
  grantLower: number;
  grantUpper: number;
  endKind: HoldEndKind;
  /** The event that ended the hold from the client's view (release answer, `lost`, `closed`), if any. */
  endEvent?: HistoryEvent;
  /** When the client stopped believing it held the lock; `Infinity` if it never did. */
  endSeenAt: number;
  releaseInvokedAt?: number;
  surelyUntil: number;
  possiblyUntil: number;
}

/** An answer a client received, with when its request was sent. */
export interface Answer {
  invokedAt: number;
  event: HistoryEvent;
}

export interface ClientModel {
  client: string;
  closed?: ConnectionClosed;
  /** Answers in receive order. */
  answers: Answer[];
}

/** Which answers tell that a holder had not lost its lock when it sent the request (see `CheckOptions.causalAnswers`). */
export type CausalAnswers = 'any' | 'same-key';

/** Whether `event`, an answer, tells that its client still held `key` when it sent the request. */
export function answerProves(event: HistoryEvent, key: string, scope: CausalAnswers): boolean {
  return scope === 'any' || event.type === 'pong' || ('key' in event && event.key === key);
}

export interface HistoryModel {
  /** Which answers the rules take as causal evidence. */
  causalAnswers: CausalAnswers;
  clients: Map<string, ClientModel>;
  acquires: AcquireOp[];
  holds: Hold[];
  writes: ResourceWrite[];
  /** Violations evident while reading the history (answered twice, a `lost` for a lock never held, ...). */
  found: Violation[];
}

interface ClientState {
  model: ClientModel;
  pendingAcquires: Map<HistoryRequestId, AcquireOp>;
  answeredAcquires: Map<HistoryRequestId, AcquireOp>;
  pendingRequests: Map<HistoryRequestId, { at: number; release?: ReleaseInvoked }>;
  open: Map<string, Hold>;
  holds: Hold[];
}

/** Orders events by time, keeping recording order among equal times (and so each client's own order). */
function sortByTime(history: History): HistoryEvent[] {
  return history
    .map((event, index) => ({ event, index }))
    .sort((a, b) => a.event.at - b.event.at || a.index - b.index)
    .map(({ event }) => event);
}

function newHold(state: ClientState, op: AcquireOp, grant: HistoryEvent, token: number): Hold {
  const hold: Hold = {
    client: op.client,
    key: op.invoked.key,
    token,
    mode: op.invoked.mode,
    acquire: op,
    grant,
    grantLower: op.invoked.at,
    grantUpper: grant.at,
    endKind: 'open',
    endSeenAt: Infinity,
    surelyUntil: grant.at,
    possiblyUntil: Infinity,
  };
  state.open.set(hold.key, hold);
  state.holds.push(hold);
  return hold;
}

function endHold(state: ClientState, hold: Hold, kind: HoldEndKind, event: HistoryEvent): void {
  hold.endKind = kind;
  hold.endEvent = event;
  hold.endSeenAt = event.at;
  state.open.delete(hold.key);
}

function answer(state: ClientState, id: HistoryRequestId, event: HistoryEvent): ReleaseInvoked | undefined {
  const request = state.pendingRequests.get(id);
  state.pendingRequests.delete(id);
  if (request) state.model.answers.push({ invokedAt: request.at, event });
  return request?.release;
}

function completeAcquire(state: ClientState, found: Violation[], event: HistoryEvent & { id: HistoryRequestId }): AcquireOp | undefined {
  const op = state.pendingAcquires.get(event.id);
  if (!op) {
    const earlier = state.answeredAcquires.get(event.id);
    found.push({
      rule: Rule.GrantValidity,
      message: earlier
        ? `acquire ${String(event.id)} of ${event.client} was answered twice (${earlier.outcome}, then ${event.type})`
        : `${event.client} got an acquire answer for request ${String(event.id)}, which it never sent`,
      events: earlier?.completion ? [earlier.invoked, earlier.completion, event] : [event],
    });
    return undefined;
  }
  state.pendingAcquires.delete(event.id);
  state.answeredAcquires.set(event.id, op);
  answer(state, event.id, event);
  op.completion = event;
  return op;
}

function apply(state: ClientState, found: Violation[], acquires: AcquireOp[], event: HistoryEvent): void {
  switch (event.type) {
    case 'acquire': {
      const op: AcquireOp = { client: event.client, invoked: event, outcome: 'unknown', reacquire: false };
      acquires.push(op);
      state.pendingAcquires.set(event.id, op);
      state.pendingRequests.set(event.id, { at: event.at });
      return;
    }
    case 'queued': {
      const op = state.pendingAcquires.get(event.id);
      if (op) op.queued = event;
      return;
    }
    case 'granted': {
      const op = completeAcquire(state, found, event);
      if (!op) return;
      op.outcome = 'granted';
      op.token = event.token;
      const open = state.open.get(event.key);
      if (open?.token === event.token) {
        op.reacquire = true;
        return;
      }
      if (open) {
        found.push({
          rule: Rule.TokenOrder,
          message: `${event.client} holding ${JSON.stringify(event.key)} with token ${open.token} was granted it again with token ${event.token}`,
          events: [open.grant, event],
        });
        endHold(state, open, 'silent', event);
      }
      newHold(state, op, event, event.token);
      return;
    }
    case 'not-granted':
    case 'acquire-failed': {
      const op = completeAcquire(state, found, event);
      if (op) op.outcome = event.type === 'not-granted' ? 'not-granted' : 'failed';
      return;
    }
    case 'unknown':
      state.pendingRequests.delete(event.id);
      return;
    case 'release': {
      state.pendingRequests.set(event.id, { at: event.at, release: event });
      const hold = state.open.get(event.key);
      if (hold && hold.releaseInvokedAt === undefined) hold.releaseInvokedAt = event.at;
      return;
    }
    case 'released': {
      const request = answer(state, event.id, event);
      const hold = state.open.get(event.key);
      if (!hold) {
        found.push({
          rule: Rule.GrantValidity,
          message: `${event.client} released ${JSON.stringify(event.key)}, which it was never granted (or had lost)`,
          events: request ? [request, event] : [event],
        });
        return;
      }
      endHold(state, hold, 'release', event);
      hold.surelyUntil = request?.at ?? hold.grantUpper;
      return;
    }
    case 'release-failed': {
      const request = answer(state, event.id, event);
      const hold = state.open.get(event.key);
      if (hold && event.code === 'not_holder') {
        found.push({
          rule: Rule.LostBeforeGrant,
          message: `${event.client} was told it does not hold ${JSON.stringify(event.key)} (token ${hold.token}) without a lost push first`,
          events: request ? [hold.grant, request, event] : [hold.grant, event],
        });
        endHold(state, hold, 'silent', event);
      }
      return;
    }
    case 'cancel': {
      state.pendingRequests.set(event.id, { at: event.at });
      const op = state.pendingAcquires.get(event.target);
      if (op) op.cancel = event;
      return;
    }
    case 'cancel-reply': {
      answer(state, event.id, event);
      const op = state.pendingAcquires.get(event.target) ?? state.answeredAcquires.get(event.target);
      if (op) op.cancelReply = event;
      return;
    }
    case 'ping':
      state.pendingRequests.set(event.id, { at: event.at });
      return;
    case 'pong':
      answer(state, event.id, event);
      return;
    case 'lost': {
      const hold = state.open.get(event.key);
      if (hold?.token !== event.token) {
        found.push({
          rule: Rule.GrantValidity,
          message: `${event.client} got lost for ${JSON.stringify(event.key)} token ${event.token}, a lock it did not hold`,
          events: hold ? [hold.grant, event] : [event],
        });
        return;
      }
      endHold(state, hold, 'lost', event);
      const lost: LockLost = event;
      const holdTimeout = hold.acquire.invoked.holdTimeout;
      hold.surelyUntil =
        lost.reason === 'expired' && holdTimeout !== null
          ? Math.min(lost.at, hold.grantLower + holdTimeout)
          : hold.grantUpper;
      return;
    }
    case 'closed':
      state.model.closed ??= event;
      return;
    case 'write':
      return;
  }
}

/** The earliest `steal` each key saw, per client that sent it, in time order. */
function stealsByKey(acquires: readonly AcquireOp[]): Map<string, AcquireOp[]> {
  const steals = new Map<string, AcquireOp[]>();
  for (const op of acquires) {
    if (!op.invoked.steal) continue;
    const list = steals.get(op.invoked.key) ?? [];
    list.push(op);
    steals.set(op.invoked.key, list);
  }
  return steals;
}

/** Sets the end bounds of holds the client never saw end, and raises `surelyUntil` by later answers. */
function finishHolds(state: ClientState, steals: Map<string, AcquireOp[]>, causalAnswers: CausalAnswers): void {
  const closed = state.model.closed;
  for (const hold of state.open.values()) {
    if (closed) {
      hold.endKind = 'close';
      hold.endEvent = closed;
    }
    hold.possiblyUntil = closed ? closed.at + (closed.boundMs ?? Infinity) : Infinity;
    let until = !closed ? Infinity : closed.kind === 'server' ? hold.grantUpper : closed.at;
    if (hold.releaseInvokedAt !== undefined) until = Math.min(until, hold.releaseInvokedAt);
    const holdTimeout = hold.acquire.invoked.holdTimeout;
    if (holdTimeout !== null) until = Math.min(until, hold.grantLower + holdTimeout);
    for (const steal of steals.get(hold.key) ?? []) {
      if (steal.client !== hold.client && steal.invoked.at >= hold.grantLower) {
        until = Math.min(until, steal.invoked.at);
      }
    }
    hold.surelyUntil = Math.max(hold.grantUpper, until);
  }
  state.open.clear();
  for (const hold of state.holds) {
    if (hold.endKind === 'release' || hold.endKind === 'lost' || hold.endKind === 'silent') {
      hold.possiblyUntil = hold.endSeenAt;
    }
    for (const { invokedAt, event } of state.model.answers) {
      const proves = invokedAt > hold.surelyUntil && answerProves(event, hold.key, causalAnswers);
      if (proves && event.at > hold.grantUpper && event.at < hold.endSeenAt) {
        hold.surelyUntil = Math.min(invokedAt, hold.possiblyUntil);
      }
    }
  }
}

/** Reads a history into operations and holds; see the module comment for the bounds. */
export function buildModel(history: History, causalAnswers: CausalAnswers = 'any'): HistoryModel {
  const states = new Map<string, ClientState>();
  const acquires: AcquireOp[] = [];
  const writes: ResourceWrite[] = [];
  const found: Violation[] = [];
  for (const event of sortByTime(history)) {
    if (event.type === 'write') {
      writes.push(event);
      continue;
    }
    let state = states.get(event.client);
    if (!state) {
      state = {
        model: { client: event.client, answers: [] },
        pendingAcquires: new Map(),
        answeredAcquires: new Map(),
        pendingRequests: new Map(),
        open: new Map(),
        holds: [],
      };
      states.set(event.client, state);
    }
    apply(state, found, acquires, event);
  }
  const steals = stealsByKey(acquires);
  const holds: Hold[] = [];
  const clients = new Map<string, ClientModel>();
  for (const state of states.values()) {
    finishHolds(state, steals, causalAnswers);
    holds.push(...state.holds);
    clients.set(state.model.client, state.model);
  }
  return { causalAnswers, clients, acquires, holds, writes, found };
}
