import type { Clock, Instant } from '../clock.js';
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
 *
 * Every timer runs on the monotonic clock, so a step of the wall clock
 * neither ends a hold early nor keeps it past its timeout. A hold's
 * `expiresAt` stays a point in wall time (reported, and stored in Redis),
 * and a hold timer is armed for a monotonic deadline found from it (see
 * `dueOfStep`, `dueOfGrant`, `dueByWall`); the `expire` step it sends names
 * the `expiresAt` it was armed for and ends the hold only while Redis still
 * has that one, so no clock is compared in Redis.
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
    const clock = this.#ctx.clock;
    this.#table.setTimer(pending, clock.setTimeout(() => void this.#timeOut(pending), ms), clock.monotonic() + ms);
  }

  #timeOut(pending: LocalPending): Promise<boolean> {
    this.#table.clearTimer(pending);
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

  /**
   * (Re)arms the hold's timer to end its current `expiresAt` at `due`
   * (monotonic ms of the store's clock; at once when past); none when it has
   * no hold timeout or `due` is null.
   */
  armHold(hold: LocalHold, due: number | null): void {
    this.#table.clearHoldTimer(hold);
    const expiresAt = hold.expiresAt;
    if (expiresAt === null || due === null) return;
    const clock = this.#ctx.clock;
    const timer = clock.setTimeout(() => void this.#expire(hold, expiresAt), Math.max(0, due - clock.monotonic()));
    this.#table.setHoldTimer(hold, timer, due);
  }

  /**
   * Runs what of this node's sessions on `key` is due and whose timer has
   * not run yet (timers run late under load), as those timers would, in the
   * order they would have run: holds end (`expire`), acquires and waits time
   * out (`unqueue`). Their steps are sent now, ahead of any step of the key
   * sent after this call, and their timers are stopped first, so each runs
   * once (also when a step sent here asks for what is due in turn). Null,
   * without a Redis call, when nothing is due. What another node's session
   * has is timed on that node and runs when its timer runs there.
   */
  runDue(key: string): Promise<void> | null {
    const due = this.#table.dueOn(key, this.#ctx.clock.monotonic());
    if (due === null) return null;
    for (const { hold, request } of due) {
      if (hold) this.#table.clearHoldTimer(hold);
      else this.#table.clearTimer(request);
    }
    const running: Array<Promise<unknown>> = [];
    for (const { hold, request } of due) {
      // A hold's `expiresAt` is the one its timer was armed for: every change of it re-arms.
      if (hold) running.push(hold.expiresAt === null ? Promise.resolve() : this.#expire(hold, hold.expiresAt));
      else running.push(this.#timeOut(request));
    }
    return Promise.all(running).then(() => {});
  }

  /** `runDue` for every key starting with `prefix`, before a `list` or a watch's snapshot of it. */
  runDueUnder(prefix: string): void {
    for (const key of this.#table.dueKeysUnder(prefix, this.#ctx.clock.monotonic())) void this.runDue(key);
  }

  /** True while `hold` is still the hold this node knows for its session and key. */
  #current(hold: LocalHold): boolean {
    return this.#table.sessions.get(hold.session)?.holds.get(hold.key) === hold;
  }

  /** Ends the hold in Redis if Redis still has the `expiresAt` its timer was armed for. */
  async #expire(hold: LocalHold, armedFor: number): Promise<void> {
    this.#table.clearHoldTimer(hold);
    if (!this.#current(hold)) return;
    try {
      await this.#steps.step('expire', hold.key, [hold.session, String(hold.token), String(armedFor)], (r) => {
        // Gone before its expiry ran, and never reported here (e.g. an earlier try ran late):
        // the reconciliation tells the holder.
        if (num(r, 'gone') === 1 && this.#current(hold)) this.#reconciler.reconcileSoon();
        const x = str(r, 'x');
        // Extended meanwhile by an extend whose answer this node did not apply (its reply was lost,
        // or is still on its way and re-arms again): timed from the new expiry by the wall clock.
        if (x !== '' && this.#current(hold) && hold.timer === null) {
          hold.expiresAt = expiresAtOf(x);
          this.armHold(hold, dueByWall(this.#ctx.clock, hold.expiresAt));
        }
      });
    } catch {
      retrySoon(this.#ctx, () => {
        if (this.#current(hold) && hold.timer === null && hold.expiresAt === armedFor) void this.#expire(hold, armedFor);
      });
    }
  }
}

/**
 * When (monotonic ms) a hold whose `expiresAt` a step of this node set runs
 * out (its grant or extend, also a grant by a release or expiry of another
 * session's hold, whose note came in the step's reply): the step computed
 * it from the wall clock it sent (`sent.wall`), so the hold lasts
 * `expiresAt - sent.wall` (its duration) of monotonic time from
 * `sent.monotonic`, whatever the wall clock did since. Null for a hold
 * without a timeout.
 */
export function dueOfStep(expiresAt: number | null, sent: Instant): number | null {
  return expiresAt === null ? null : sent.monotonic + (expiresAt - sent.wall);
}

/**
 * When (monotonic ms of `clock`) a hold granted to `pending` by another
 * node's step (a release or expiry through that node, its note heard over
 * pub/sub), or learned from Redis late, runs out: when this node's wall
 * clock reaches its `expiresAt` (the granting node's clock set it: across
 * nodes a hold lasts `holdTimeout` give or take the skew between them), yet
 * never before its duration has passed since the acquire was made, as it
 * was granted after that. `late` (learned from Redis after its grant
 * message was missed, at any time after the grant): nor later than its
 * duration from now, as it was granted before now.
 */
export function dueOfGrant(clock: Clock, expiresAt: number | null, pending: LocalPending, late: boolean): number | null {
  const due = dueByWall(clock, expiresAt);
  if (due === null || pending.holdFor === null) return due;
  const earliest = pending.since + pending.holdFor;
  const latest = late ? clock.monotonic() + pending.holdFor : Number.POSITIVE_INFINITY;
  // The acquire was made before now, so earliest <= latest.
  return Math.min(Math.max(due, earliest), latest);
}

/** When (monotonic ms of `clock`) its wall clock reaches `expiresAt`; null for null. */
export function dueByWall(clock: Clock, expiresAt: number | null): number | null {
  return expiresAt === null ? null : clock.monotonic() + (expiresAt - clock.now());
}
