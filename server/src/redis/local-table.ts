import type { Clock, TimerHandle } from '../clock.js';
import type { SessionId, Ticket } from '../store.js';
import { createLocalSession, type LocalHold, type LocalPending, type LocalSession } from './local-state.js';

/**
 * This node's view of its own sessions in the shared table, indexed both
 * ways: session -> {holds, pending} and ticket -> pending, updated in the
 * same functions. Redis is the truth; this view is what the node answers
 * from and what it asks Redis about after missed messages.
 */
export class LocalTable {
  readonly sessions = new Map<SessionId, LocalSession>();
  readonly tickets = new Map<Ticket, LocalPending>();
  /**
   * Holds whose hold-timeout timer is armed, by key, each with the monotonic
   * time it is due (see `dueOn`); updated wherever a hold's timer is set
   * or cleared.
   */
  readonly #timedHolds = new Map<string, Map<LocalHold, number>>();
  /** Requests whose acquire or wait timeout is armed, by key, each with the monotonic time it is due. */
  readonly #timedRequests = new Map<string, Map<LocalPending, number>>();
  readonly #clock: Clock;
  readonly #armHold: (hold: LocalHold, due: number | null) => void;

  /** `armHold` (re)arms a new hold's hold-timeout timer on `clock`, due at a monotonic time (see `Timeouts#armHold`). */
  constructor(clock: Clock, armHold: (hold: LocalHold, due: number | null) => void) {
    this.#clock = clock;
    this.#armHold = armHold;
  }

  /** The session's local state, created on first use. */
  session(session: SessionId): LocalSession {
    let local = this.sessions.get(session);
    if (!local) {
      local = createLocalSession();
      this.sessions.set(session, local);
    }
    return local;
  }

  /** Records a new request of the session; it counts as answering until `NoteSettler#sent`. */
  addPending(local: LocalSession, pending: LocalPending): void {
    local.pending.set(pending.ticket, pending);
    local.answering.add(pending);
    this.tickets.set(pending.ticket, pending);
    if (pending.kind === 'acquire') local.acquiring++;
  }

  /** Forgets a pending request and stops its timer; a no-op once it was replaced or removed. */
  removePending(pending: LocalPending): void {
    this.clearTimer(pending);
    if (this.tickets.get(pending.ticket) === pending) this.tickets.delete(pending.ticket);
    const local = this.sessions.get(pending.session);
    if (local?.pending.get(pending.ticket) === pending) {
      local.pending.delete(pending.ticket);
      if (pending.kind === 'acquire') local.acquiring--;
    }
  }

  /**
   * Records a grant as the session's hold of its key and arms its timer for
   * `due` (monotonic ms of the clock, see `dueOfStep`/`dueOfGrant` in
   * timeouts.ts; null: none).
   */
  addHold(
    local: LocalSession,
    session: SessionId,
    grant: { key: string; token: number; expiresAt: number | null },
    due: number | null,
  ): void {
    const hold: LocalHold = { key: grant.key, session, token: grant.token, expiresAt: grant.expiresAt, timer: null };
    const replaced = local.holds.get(grant.key);
    if (replaced) this.clearHoldTimer(replaced);
    local.holds.set(grant.key, hold);
    this.#armHold(hold, due);
  }

  /** Forgets a hold and stops its timer; a no-op once it was replaced or dropped. */
  dropHold(hold: LocalHold | undefined): void {
    if (!hold) return;
    this.clearHoldTimer(hold);
    const local = this.sessions.get(hold.session);
    if (local?.holds.get(hold.key) === hold) local.holds.delete(hold.key);
  }

  /** Records `timer`, due at `due` (monotonic ms of the clock), as the request's timeout, stopping the one it had. */
  setTimer(pending: LocalPending, timer: TimerHandle, due: number): void {
    this.clearTimer(pending);
    pending.timer = timer;
    addTimed(this.#timedRequests, pending, due);
  }

  /** Stops a request's timer, if any (also the one that just ran, to forget it). */
  clearTimer(pending: LocalPending): void {
    if (pending.timer === null) return;
    this.#clock.clearTimeout(pending.timer);
    pending.timer = null;
    removeTimed(this.#timedRequests, pending);
  }

  /** Records `timer`, due at `due` (monotonic ms of the clock), as the hold's timer, stopping the one it had. */
  setHoldTimer(hold: LocalHold, timer: TimerHandle, due: number): void {
    this.clearHoldTimer(hold);
    hold.timer = timer;
    addTimed(this.#timedHolds, hold, due);
  }

  /** Stops a hold's timer, if any (also the one that just ran, to forget it). */
  clearHoldTimer(hold: LocalHold): void {
    if (hold.timer === null) return;
    this.#clock.clearTimeout(hold.timer);
    hold.timer = null;
    removeTimed(this.#timedHolds, hold);
  }

  /**
   * The holds and requests of `key` whose timer is due at `now` (monotonic
   * ms) but has not run yet (timers run late under load), earliest due first,
   * the order their timers would have run in; null when there are none, the
   * common case, which allocates nothing.
   */
  dueOn(key: string, now: number): Due[] | null {
    const holds = this.#timedHolds.get(key);
    const requests = this.#timedRequests.get(key);
    if (!holds && !requests) return null;
    let due: Due[] | null = null;
    for (const [hold, at] of holds ?? []) if (at <= now) (due ??= []).push({ at, hold });
    for (const [request, at] of requests ?? []) if (at <= now) (due ??= []).push({ at, request });
    return due && due.sort((x, y) => x.at - y.at);
  }

  /**
   * The session's holds and acquires whose timer is due at `now` (monotonic
   * ms) but has not run yet; empty, the common case, when there are none.
   */
  dueOf(local: LocalSession, now: number): Array<LocalHold | LocalPending> {
    const due: Array<LocalHold | LocalPending> = [];
    for (const hold of local.holds.values()) {
      const at = this.#timedHolds.get(hold.key)?.get(hold);
      if (at !== undefined && at <= now) due.push(hold);
    }
    if (local.acquiring === 0) return due;
    for (const pending of local.pending.values()) {
      const at = pending.kind === 'acquire' ? this.#timedRequests.get(pending.key)?.get(pending) : undefined;
      if (at !== undefined && at <= now) due.push(pending);
    }
    return due;
  }

  /** True when the hold's timer is due at `now` (monotonic ms) but has not run yet. */
  holdDue(hold: LocalHold, now: number): boolean {
    const at = this.#timedHolds.get(hold.key)?.get(hold);
    return at !== undefined && at <= now;
  }

  /**
   * The keys starting with `prefix` that have a hold or request due at `now`
   * (see `dueOn`); O(keys with a timer).
   */
  dueKeysUnder(prefix: string, now: number): string[] {
    const keys = new Set<string>();
    for (const timed of [this.#timedHolds, this.#timedRequests]) {
      for (const [key, onKey] of timed) {
        if (!key.startsWith(prefix) || keys.has(key)) continue;
        for (const at of onKey.values()) {
          if (at <= now) {
            keys.add(key);
            break;
          }
        }
      }
    }
    return [...keys];
  }
}

/** A hold or a request whose timer is due, and when (monotonic ms). */
export type Due = { at: number; hold: LocalHold; request?: undefined } | { at: number; request: LocalPending; hold?: undefined };

/** Records `item` of its key in `timed`, due at `due`. */
function addTimed<T extends { key: string }>(timed: Map<string, Map<T, number>>, item: T, due: number): void {
  let onKey = timed.get(item.key);
  if (!onKey) {
    onKey = new Map();
    timed.set(item.key, onKey);
  }
  onKey.set(item, due);
}

/** Forgets `item` in `timed`, and its key once nothing of it is left. */
function removeTimed<T extends { key: string }>(timed: Map<string, Map<T, number>>, item: T): void {
  const onKey = timed.get(item.key);
  if (onKey?.delete(item) && onKey.size === 0) timed.delete(item.key);
}
