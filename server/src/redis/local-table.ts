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
   * time it is due (see `dueHolds`); updated wherever a hold's timer is set
   * or cleared.
   */
  readonly #timed = new Map<string, Map<LocalHold, number>>();
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

  /** Stops a request's timer, if any. */
  clearTimer(pending: LocalPending): void {
    if (pending.timer !== null) this.#clock.clearTimeout(pending.timer);
    pending.timer = null;
  }

  /** Records `timer`, due at `due` (monotonic ms of the clock), as the hold's timer, stopping the one it had. */
  setHoldTimer(hold: LocalHold, timer: TimerHandle, due: number): void {
    this.clearHoldTimer(hold);
    hold.timer = timer;
    let onKey = this.#timed.get(hold.key);
    if (!onKey) {
      onKey = new Map();
      this.#timed.set(hold.key, onKey);
    }
    onKey.set(hold, due);
  }

  /** Stops a hold's timer, if any (also the one that just ran, to forget it). */
  clearHoldTimer(hold: LocalHold): void {
    if (hold.timer === null) return;
    this.#clock.clearTimeout(hold.timer);
    hold.timer = null;
    const onKey = this.#timed.get(hold.key);
    if (onKey?.delete(hold) && onKey.size === 0) this.#timed.delete(hold.key);
  }

  /**
   * The session's holds whose timer is due at `now` (monotonic ms) but has
   * not run yet; empty, the common case, when there are none.
   */
  dueHoldsOf(local: LocalSession, now: number): LocalHold[] {
    const due: LocalHold[] = [];
    for (const hold of local.holds.values()) {
      const at = this.#timed.get(hold.key)?.get(hold);
      if (at !== undefined && at <= now) due.push(hold);
    }
    return due;
  }

  /**
   * The holds of `key` whose timer is due at `now` (monotonic ms) but has
   * not run yet (timers run late under load), earliest due first, the order
   * their timers would have run in; null when there are none, the common
   * case, which allocates nothing.
   */
  dueHolds(key: string, now: number): LocalHold[] | null {
    const onKey = this.#timed.get(key);
    if (!onKey) return null;
    let due: Array<[LocalHold, number]> | null = null;
    for (const entry of onKey) if (entry[1] <= now) (due ??= []).push(entry);
    return due && due.sort((x, y) => x[1] - y[1]).map(([hold]) => hold);
  }

  /** The keys starting with `prefix` that have a hold due at `now` (see `dueHolds`); O(keys with a timed hold). */
  dueKeysUnder(prefix: string, now: number): string[] {
    const keys: string[] = [];
    for (const [key, onKey] of this.#timed) {
      if (!key.startsWith(prefix)) continue;
      for (const at of onKey.values()) {
        if (at <= now) {
          keys.push(key);
          break;
        }
      }
    }
    return keys;
  }
}
