import type { SessionId, Ticket } from '../store.js';
import type { LocalTable } from './local-table.js';
import type { LaterRequest, LimitGate } from './limit-gate.js';
import { startOf, type LocalPending } from './local-state.js';
import type { Timeouts } from './timeouts.js';

/**
 * The `LockStore#cancel` calls of this node's sessions, and their cancels in
 * flight by session and key: a session's new acquire of a key waits for its
 * cancel of that key's earlier request (see `LockRequests#acquire`), and an
 * acquire held back at its lock limit for all of the session's cancels
 * (see `LimitGate`).
 */
export class LockCancels {
  readonly #table: LocalTable;
  readonly #timeouts: Timeouts;
  readonly #gate: LimitGate;
  /**
   * Cancels in flight, by session and key. A session's new acquire of a key
   * waits for its cancel of that key's earlier request: sent first, that
   * acquire's step would reach Redis while the earlier request still waits
   * in the queue, and be refused as queued already (memory cancels at once).
   */
  readonly #cancelling = new Map<string, Promise<boolean>>();

  constructor(table: LocalTable, timeouts: Timeouts, gate: LimitGate) {
    this.#table = table;
    this.#timeouts = timeouts;
    this.#gate = gate;
  }

  /** The session's cancel of a request on `key` in flight, if any (no key text is built while none is). */
  of(session: SessionId, key: string): Promise<boolean> | undefined {
    return this.#cancelling.size === 0 ? undefined : this.#cancelling.get(sessionKey(session, key));
  }

  /** The session's cancels in flight, on any key. */
  ofSession(session: SessionId): Array<Promise<boolean>> {
    const prefix = sessionKey(session, '');
    const cancels: Array<Promise<boolean>> = [];
    for (const [id, cancelling] of this.#cancelling) if (id.startsWith(prefix)) cancels.push(cancelling);
    return cancels;
  }

  /**
   * `LockStore#cancel`: waits for the request's own answer first, so a cancel
   * never overtakes it. An acquire of the session on the same key made while
   * the cancel is in flight waits for it (see `#cancelling`).
   */
  async cancel(session: SessionId, ticket: Ticket): Promise<boolean> {
    const table = this.#table;
    const pending = table.tickets.get(ticket);
    if (!pending || pending.session !== session) return false;
    const id = sessionKey(session, pending.key);
    const local = table.sessions.get(session);
    const later = this.#gate.later(local);
    const cancelling = this.#unqueue(pending, startOf(local, pending.key), later);
    this.#cancelling.set(id, cancelling);
    if (later) this.#gate.track(later, cancelling);
    try {
      return await cancelling;
    } finally {
      if (this.#cancelling.get(id) === cancelling) this.#cancelling.delete(id);
    }
  }

  async #unqueue(pending: LocalPending, before: Promise<void> | null, later: LaterRequest | null): Promise<boolean> {
    // After the session's earlier request of the key that waits before its step (see `LocalSession#starting`).
    if (before) await before;
    // Awaited only while the request's script is out: an answered request is unqueued in this turn, so its
    // step goes to Redis ahead of any request the session sends after the cancel.
    if (pending.sending) await pending.sent;
    if (this.#table.tickets.get(pending.ticket) !== pending) return false;
    return this.#timeouts.unqueue(pending, () => {
      if (later && pending.kind === 'acquire') this.#gate.freed(later);
    });
  }
}

/** A session's key, as one map key (session ids never hold a NUL). */
function sessionKey(session: SessionId, key: string): string {
  return `${session}\u0000${key}`;
}
