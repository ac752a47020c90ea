import type { SessionId } from '../store.js';
import type { LocalTable } from './local-table.js';
import { takeWaitingLost, type LocalPending } from './local-state.js';
import type { Batch, Note } from './records.js';
import { live, type StoreContext } from './store-context.js';
import { dueOfGrant, dueOfStep } from './timeouts.js';

/**
 * Settles the notes of steps (`granted`, `waitDone`, `lost`) for this node's
 * sessions, in order with the answers of their own requests: a note about a
 * request never reaches the session before the request's answer, and a
 * `lost` never before the acquire answer that may have granted the hold it
 * ends. A hold a reply finds gone without a note is told `lost` here too.
 */
export class NoteSettler {
  readonly #ctx: StoreContext;
  readonly #table: LocalTable;
  readonly #reconcileSoon: () => void;

  /** `reconcileSoon` runs when a grant comes for an acquire answered `store_unavailable` (it must be undone). */
  constructor(ctx: StoreContext, table: LocalTable, reconcileSoon: () => void) {
    this.#ctx = ctx;
    this.#table = table;
    this.#reconcileSoon = reconcileSoon;
  }

  /**
   * A note from a step with event version `version`. A note about a request
   * whose answer has not reached the caller yet waits for it, and so does a
   * `lost` while the session's acquire of that key is unanswered: that acquire
   * may have granted or confirmed the very hold the `lost` ends.
   */
  applyNote(key: string, note: Note, version: number): void {
    const answering = this.#answeringFor(key, note);
    if (answering) answering.early.push({ note, version });
    else this.#settleNote(key, note);
  }

  #answeringFor(key: string, note: Note): LocalPending | undefined {
    const local = this.#table.sessions.get(note.session);
    if (!local || local.answering.size === 0) return undefined;
    for (const pending of local.answering) {
      if (note.y === 'lost' ? pending.kind === 'acquire' && pending.key === key : pending.ticket === note.ticket) return pending;
    }
    return undefined;
  }

  #settleNote(key: string, note: Note): void {
    const listener = this.#ctx.listener;
    const table = this.#table;
    if (note.y === 'lost') {
      const hold = table.sessions.get(note.session)?.holds.get(key);
      if (hold && hold.token === note.token) {
        table.dropHold(hold);
        listener?.lost(note.session, { key, token: note.token, reason: note.reason });
      } else {
        // Perhaps the hold of a grant not heard yet: a probe may still answer it.
        for (const pending of table.sessions.get(note.session)?.pending.values() ?? []) {
          if (pending.kind === 'acquire' && pending.key === key) (pending.unheld ??= new Map()).set(note.token, note.reason);
        }
      }
      return;
    }
    const pending = table.tickets.get(note.ticket);
    if (!pending || pending.session !== note.session || pending.key !== key) {
      const local = table.sessions.get(note.session);
      const failed = local?.uncertain.get(note.ticket);
      if (!local || failed?.key !== key) return;
      // The grant of an acquire whose call failed: its session was told it failed, so the hold must go.
      if (note.y === 'granted' && failed.kind === 'acquire') this.#reconcileSoon();
      // A wait whose call failed ended in Redis, its record gone with it: nobody is told, nothing is left.
      if (note.y === 'waitDone' && failed.kind === 'wait') local.uncertain.delete(note.ticket);
      return;
    }
    if (note.y === 'granted' && pending.kind === 'acquire') {
      table.removePending(pending);
      const local = table.sessions.get(note.session);
      const grant = { key, token: note.token, expiresAt: note.expiresAt };
      const ended = pending.unheld?.get(grant.token);
      if (local && ended === undefined) {
        // A grant by this node's own step runs from that step; one by another node's, by the wall clock, bounded.
        const due = note.sent ? dueOfStep(grant.expiresAt, note.sent) : dueOfGrant(this.#ctx.clock, grant.expiresAt, pending, false);
        table.addHold(local, note.session, grant, due);
      }
      listener?.granted(note.session, note.ticket, grant);
      // A grant note overtaken by its hold's `lost` (a missed message given up on, then late): report it now.
      if (ended !== undefined) listener?.lost(note.session, { key, token: grant.token, reason: ended });
    } else if (note.y === 'waitDone' && pending.kind === 'wait') {
      table.removePending(pending);
      listener?.waitDone(note.session, note.ticket, true);
    }
  }

  /**
   * The broadcast of a step of this node whose call failed: its reply, the
   * only carrier of this node's notes, never came. A hold of this node that
   * the step ended (an expiry, a steal, a revoke) is reported lost with that
   * reason, as its note would have been; everything else the step settled
   * is left to the reconciliation that follows the failure.
   */
  settleOwnFailed(batch: Batch): void {
    for (const item of batch.items) {
      if (item.y !== 'ev') continue;
      const { event } = item;
      const reason = event.event === 'expired' || event.event === 'stolen' || event.event === 'revoked' ? event.event : null;
      if (reason === null || event.token === undefined) continue;
      // Tokens of a key are unique: a hold here under that session and token is the one that ended.
      if (this.#table.sessions.get(event.session)?.holds.get(batch.key)?.token !== event.token) continue;
      this.applyNote(batch.key, { y: 'lost', session: event.session, token: event.token, reason }, batch.v);
    }
  }

  /** Settles, before the request's answer, the waiting notes of steps Redis ran up to version `at`. */
  settleEarly(pending: LocalPending, at: number): void {
    if (pending.early.length === 0) return;
    const before = pending.early.filter((e) => e.version <= at);
    if (before.length === 0) return;
    pending.early.splice(0, pending.early.length, ...pending.early.filter((e) => e.version > at));
    for (const { note } of before) this.#settleNote(pending.key, note);
  }

  /**
   * Redis answered that `session` holds nothing on `key` while this node,
   * having applied every earlier step of the key, still records a hold of it
   * there: the hold vanished without a step (Redis lost its state to a flush
   * or a restart the node has not noticed yet), or a step's note is late.
   * The holder is told `lost` before the request's answer, with the reason
   * of a note that waits for an acquire's answer (see `applyNote`), else
   * `revoked`, as the node's abandon would tell it once its liveness check
   * finds the loss: the hold leaves the table here, so that abandon does not
   * tell it twice. Without such a note the liveness check looks at once.
   * A no-op when this node records no hold of the key for the session.
   */
  vanished(session: SessionId, key: string): void {
    const table = this.#table;
    const ctx = this.#ctx;
    const local = table.sessions.get(session);
    const hold = local?.holds.get(key);
    if (!local || !hold) return;
    table.dropHold(hold);
    const waiting = takeWaitingLost(local, key, hold.token);
    ctx.listener?.lost(session, { key, token: hold.token, reason: waiting ?? 'revoked' });
    if (waiting === undefined) live(ctx).checkNow();
  }

  /**
   * The request's script answered. Its waiting notes go out after the answer
   * reached the caller: the caller continues in microtasks, which all run
   * before `setImmediate`.
   */
  sent(pending: LocalPending): void {
    pending.sending = false;
    pending.markSent();
    const local = this.#table.sessions.get(pending.session);
    setImmediate(() => {
      local?.answering.delete(pending);
      for (const { note, version } of pending.early.splice(0)) this.applyNote(pending.key, note, version);
    });
  }
}
