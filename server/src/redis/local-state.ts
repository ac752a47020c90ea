import type { TimerHandle } from '../clock.js';
import type { LostReason } from '@lockwire/protocol';
import type { SessionId, Ticket } from '../store.js';
import type { Note } from './records.js';

/** A lock one of this node's sessions holds, as far as this node knows. */
export interface LocalHold {
  readonly key: string;
  readonly session: SessionId;
  readonly token: number;
  expiresAt: number | null;
  /** The hold-timeout timer on the store's clock. */
  timer: TimerHandle | null;
}

/** A pending `acquire` or `wait` of one of this node's sessions. */
export interface LocalPending {
  readonly ticket: Ticket;
  readonly session: SessionId;
  readonly key: string;
  readonly kind: 'acquire' | 'wait';
  /** True until its script answered. */
  sending: boolean;
  /** Resolves when the script answered. */
  readonly sent: Promise<void>;
  readonly markSent: () => void;
  /**
   * Notes about it (and, for an acquire, `lost` notes of its session and key)
   * that came before its answer reached the caller, with their step's event
   * version; delivered in arrival order once the answer is out.
   */
  readonly early: Array<{ note: Note; version: number }>;
  /**
   * For an acquire: `lost` notes of its session and key that named a token
   * this node held no hold under, by token. A grant of that token learned
   * later from a probe (whose reply may come after the pub/sub note of a
   * later steal or expiry) ended already and is reported lost right after.
   * Null until the first such note: most requests never see one, and an
   * empty `Map` costs about 180 bytes of heap, over a third of the record.
   */
  unheld: Map<number, LostReason> | null;
  /** The acquire or wait timeout on the store's clock. */
  timer: TimerHandle | null;
  /** When the request was made, in monotonic ms of the store's clock: a grant of it comes later. */
  readonly since: number;
  /** For an acquire: how long a grant of it is held (`holdTimeout` as the scripts add it), null when it has none. */
  readonly holdFor: number | null;
}

/** A request of a session answered `store_unavailable` that Redis may have run all the same. */
export interface UncertainRequest {
  readonly key: string;
  readonly kind: LocalPending['kind'];
}

/** What one session of this node has in the shared table. */
export interface LocalSession {
  readonly holds: Map<string, LocalHold>;
  readonly pending: Map<Ticket, LocalPending>;
  /** Pending acquires (held plus these count against `maxLocksPerSession`). */
  acquiring: number;
  /** Keys where a failed call may have left something of the session in Redis. */
  readonly dirty: Set<string>;
  /**
   * Acquires and waits answered `store_unavailable` that Redis may have run
   * anyway, by ticket: the reconciliation takes out what they left (a queued
   * request, a hold, a wait record) so that a failed request leaves nothing
   * of its own behind. What it ended stays ended: a steal's victims lost the key.
   */
  readonly uncertain: Map<Ticket, UncertainRequest>;
  /** Requests whose answer has not reached the caller yet (their notes wait in `early`). */
  readonly answering: Set<LocalPending>;
  /** While acquires of the session are held back at its lock limit (see `LimitGate`), else null. */
  gate: SessionGate | null;
  /**
   * Per key, resolves once the session's latest request of the key that
   * waits before its step has begun that step or ended without one: an
   * acquire that waits for the session's cancel of the key, to clear an
   * uncertain acquire of it, or held back at the lock limit, and any request
   * of the key made behind such a one. The session's later acquire, release,
   * extend, wait or cancel of the key waits for it: sent at once, its step
   * would reach Redis ahead of the earlier one's (memory applies a session's
   * requests in order). Null while no request of the session waits so, which
   * is the common case and allocates nothing.
   */
  starting: Map<string, Promise<void>> | null;
}

/**
 * The session's acquires held back at its lock limit until its earlier
 * requests settled, and what arrived after them (see `LimitGate`).
 */
export interface SessionGate {
  /** Held-back acquires whose step has not begun. */
  held: number;
  /** Arrival numbers handed out: to each held-back acquire and each release or cancel that came after one. */
  arrivals: number;
  /** Releases and cancels that arrived while the gate stood, until they settle (never rejected). */
  readonly later: Set<Promise<void>>;
  /** Arrival numbers of those that already took a hold or a queued acquire of the session out. */
  readonly freed: number[];
}

export function createLocalSession(): LocalSession {
  return {
    holds: new Map(),
    pending: new Map(),
    acquiring: 0,
    dirty: new Set(),
    uncertain: new Map(),
    answering: new Set(),
    gate: null,
    starting: null,
  };
}

/** A new pending request made at `since` (monotonic ms); `holdFor`: an acquire's hold duration, null for none or a wait. */
export function createPending(
  ticket: Ticket,
  session: SessionId,
  key: string,
  kind: 'acquire' | 'wait',
  since: number,
  holdFor: number | null = null,
): LocalPending {
  let markSent = () => {};
  const sent = new Promise<void>((resolve) => {
    markSent = resolve;
  });
  return { ticket, session, key, kind, sending: true, sent, markSent, early: [], unheld: null, timer: null, since, holdFor };
}

/**
 * Records that a request of the session on `key` waits before its step
 * (see `LocalSession#starting`). Returns its `begin`: call it in the turn the
 * step begins, or when the request ends without one. Idempotent.
 */
export function startLater(local: LocalSession, key: string): () => void {
  let resolve = () => {};
  const begun = new Promise<void>((r) => (resolve = r));
  (local.starting ??= new Map()).set(key, begun);
  let began = false;
  return () => {
    if (began) return;
    began = true;
    resolve();
    const starting = local.starting;
    if (starting?.get(key) !== begun) return;
    starting.delete(key);
    if (starting.size === 0) local.starting = null;
  };
}

/**
 * Resolves (never rejects) once the session's request of `key` that waits
 * before its step now has begun it; null when none waits. Read in the turn a
 * request arrives: a request made later must not be waited for.
 */
export function startOf(local: LocalSession | undefined, key: string): Promise<void> | null {
  return local?.starting?.get(key) ?? null;
}

/** True while a failed acquire of the session on `key` may still have something in Redis. */
export function uncertainAcquireOf(session: LocalSession, key: string): boolean {
  for (const request of session.uncertain.values()) if (request.kind === 'acquire' && request.key === key) return true;
  return false;
}

/** Every key a session touches in Redis: held, pending or uncertain. */
export function keysOf(session: LocalSession): Set<string> {
  const keys = new Set<string>(session.dirty);
  for (const key of session.holds.keys()) keys.add(key);
  for (const pending of session.pending.values()) keys.add(pending.key);
  for (const request of session.uncertain.values()) keys.add(request.key);
  return keys;
}

/**
 * The reason of a `lost` note of the session's hold of `key` under `token`
 * that waits for the answer of an acquire of the key, taken out of that
 * acquire's notes (the caller reports it); undefined when none waits.
 */
export function takeWaitingLost(local: LocalSession, key: string, token: number): LostReason | undefined {
  for (const pending of local.answering) {
    if (pending.key !== key) continue;
    const at = pending.early.findIndex(({ note }) => note.y === 'lost' && note.token === token);
    const found = pending.early[at];
    if (found?.note.y !== 'lost') continue;
    pending.early.splice(at, 1);
    return found.note.reason;
  }
  return undefined;
}
