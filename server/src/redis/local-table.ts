import type { Clock } from '../clock.js';
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
    local.holds.set(grant.key, hold);
    this.#armHold(hold, due);
  }

  /** Forgets a hold and stops its timer; a no-op once it was replaced or dropped. */
  dropHold(hold: LocalHold | undefined): void {
    if (!hold) return;
    this.clearTimer(hold);
    const local = this.sessions.get(hold.session);
    if (local?.holds.get(hold.key) === hold) local.holds.delete(hold.key);
  }

  /** Stops a request's or hold's timer, if any. */
  clearTimer(owner: { timer: unknown }): void {
    if (owner.timer !== null) this.#clock.clearTimeout(owner.timer);
    owner.timer = null;
  }
}
