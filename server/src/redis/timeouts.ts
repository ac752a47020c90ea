import type { LocalTable } from './local-table.js';
import type { LocalHold, LocalPending } from './local-state.js';
import type { Reconciler } from './reconciler.js';
import { expiresAtOf, num, str } from './records.js';
import type { StepRunner } from './step-runner.js';
import { retrySoon, type StoreContext } from './store-context.js';

/**
 * The acquire, wait and hold timeouts of this node's sessions, on the
 * store's clock. A timer runs where the request or hold lives: when it is
 * due, the node takes the request out of Redis (`unqueue`) or ends the hold
 * (`expire`, which keeps a hold Redis extended meanwhile).
 */
export class Timeouts {
  readonly #ctx: StoreContext;
  readonly #table: LocalTable;
  readonly #steps: StepRunner;
  readonly #reconciler: Reconciler;

  constructor(ctx: StoreContext, table: LocalTable, steps: StepRunner, reconciler: Reconciler) {
    this.#ctx = ctx;
    this.#table = table;
    this.#steps = steps;
    this.#reconciler = reconciler;
  }

  /** Times the pending request out in `ms` unless it settles first. */
  armTimeout(pending: LocalPending, ms: number): void {
    pending.timer = this.#ctx.clock.setTimeout(() => void this.#timeOut(pending), ms);
  }

  #timeOut(pending: LocalPending): Promise<boolean> {
    pending.timer = null;
    const tickets = this.#table.tickets;
    if (tickets.get(pending.ticket) !== pending) return Promise.resolve(false);
    // Due before its script answered: time it out right after (a grant or `free` answer wins).
    if (pending.sending) return pending.sent.then(() => this.#timeOut(pending));
    const kind = pending.kind === 'acquire' ? 'a' : 'w';
    return this.unqueue(pending, () => {
      const listener = this.#ctx.listener;
      if (pending.kind === 'acquire') listener?.acquireTimedOut(pending.session, pending.ticket);
      else listener?.waitDone(pending.session, pending.ticket, false);
    })
      .then(async (removed) => {
        if (removed || tickets.get(pending.ticket) !== pending) return removed;
        // Gone from Redis, yet unsettled here: its grant (or the end of its wait) was never heard.
        this.#reconciler.settleProbed(pending, await this.#reconciler.probe(pending.key, pending.session, kind, String(pending.ticket)));
        return false;
      })
      .catch(() => {
        // Redis is unreachable: try again soon; a node that cannot vouch settles everything anyway.
        retrySoon(this.#ctx, () => {
          if (tickets.get(pending.ticket) === pending) void this.#timeOut(pending);
        });
        return false;
      });
  }

  /** Takes a pending request out of Redis if it is still there; `settled` runs before the step's batch. */
  unqueue(pending: LocalPending, settled: () => void): Promise<boolean> {
    const kind = pending.kind === 'acquire' ? 'a' : 'w';
    return this.#steps.step('unqueue', pending.key, [pending.session, String(pending.ticket), kind], (r) => {
      if (num(r, 'ok') !== 1 || this.#table.tickets.get(pending.ticket) !== pending) return false;
      this.#table.removePending(pending);
      settled();
      return true;
    });
  }

  /** (Re)arms the hold's timer for its `expiresAt`; none when it has no hold timeout. */
  armHold(hold: LocalHold): void {
    this.#table.clearTimer(hold);
    if (hold.expiresAt === null) return;
    const clock = this.#ctx.clock;
    hold.timer = clock.setTimeout(() => void this.#expire(hold), Math.max(0, hold.expiresAt - clock.now()));
  }

  /** True while `hold` is still the hold this node knows for its session and key. */
  #current(hold: LocalHold): boolean {
    return this.#table.sessions.get(hold.session)?.holds.get(hold.key) === hold;
  }

  async #expire(hold: LocalHold): Promise<void> {
    hold.timer = null;
    if (!this.#current(hold)) return;
    try {
      await this.#steps.step('expire', hold.key, [hold.session, String(hold.token)], (r) => {
        // Gone before its expiry ran, and never reported here (e.g. an earlier try ran late):
        // the reconciliation tells the holder.
        if (num(r, 'gone') === 1 && this.#current(hold)) this.#reconciler.reconcileSoon();
        const x = str(r, 'x');
        if (x !== '' && this.#current(hold)) {
          hold.expiresAt = expiresAtOf(x);
          this.armHold(hold);
        }
      });
    } catch {
      retrySoon(this.#ctx, () => {
        if (this.#current(hold) && hold.timer === null) void this.#expire(hold);
      });
    }
  }
}
