import { ErrorCode, MAX_DURATION_MS } from '@lockwire/protocol';
import { holdDuration } from '../clock.js';
import { LockError, badRequest, notHolder } from '../errors.js';
import type { AcquireInput, AcquireOutcome, SessionId, StoreLimits, Ticket, WaitInput } from '../store.js';
import type { LocalTable } from './local-table.js';
import { LimitGate, type LaterRequest } from './limit-gate.js';
import { LockCancels } from './lock-cancels.js';
import {
  createPending,
  startLater,
  startOf,
  uncertainAcquireOf,
  type LocalHold,
  type LocalPending,
  type LocalSession,
} from './local-state.js';
import type { NoteSettler } from './note-settler.js';
import type { Reconciler } from './reconciler.js';
import { expiresAtOf, num, str, type Json } from './records.js';
import type { StepRunner } from './step-runner.js';
import { live, type StoreContext } from './store-context.js';
import { dueOfStep, type Timeouts } from './timeouts.js';

/** The parts the requests update and answer through. */
export interface LockRequestsOptions {
  ctx: StoreContext;
  table: LocalTable;
  steps: StepRunner;
  timeouts: Timeouts;
  notes: NoteSettler;
  reconciler: Reconciler;
}

/**
 * The `LockStore` calls that change the table, each one step on one key:
 * what goes into the script, and how its reply updates this node's view
 * and answers the caller.
 */
export class LockRequests {
  readonly #o: LockRequestsOptions;
  /** Holds an acquire at the session's lock limit back until its earlier requests settle (see `LimitGate`). */
  readonly #gate: LimitGate;
  /** The session's cancels in flight, which its later acquire of the same key waits for (see `LockCancels`). */
  readonly #cancels: LockCancels;

  constructor(options: LockRequestsOptions) {
    this.#o = options;
    this.#gate = new LimitGate(options.steps, options.ctx.limits, (session) => this.#cancels.ofSession(session));
    this.#cancels = new LockCancels(options.table, options.timeouts, this.#gate);
  }

  /**
   * True when an acquire of `session` on `key` made now would wait before its
   * step begins (for the session's cancel of the key, for its earlier request
   * of the key that waits so, to clear an uncertain acquire of it, or held
   * back at the session's lock limit); otherwise its step is in flight once
   * `acquire` returns (see `StepRunner#busy`).
   */
  waitsBeforeStep(session: SessionId, key: string): boolean {
    if (this.#cancels.of(session, key)) return true;
    const local = this.#o.table.sessions.get(session);
    if (local === undefined) return false;
    return (
      startOf(local, key) !== null ||
      uncertainAcquireOf(local, key) ||
      this.#gate.wouldHoldBack(session, local) ||
      this.#dueAtLimit(local, local.acquiring) !== null
    );
  }

  /**
   * At the session's lock limit (`acquiring` of its acquires counted), its
   * holds and acquires that are past their deadline but whose timer has not
   * run yet (timers run late under load); null when it is below the limit or
   * none is due. The memory store runs whatever is due before each request,
   * so such a hold or acquire must not count toward `too_many_locks`,
   * whichever key the acquire is for: the acquire ends them first, as their
   * timers would.
   */
  #dueAtLimit(local: LocalSession, acquiring: number): Array<LocalHold | LocalPending> | null {
    const { ctx, table } = this.#o;
    if (local.holds.size + acquiring < ctx.limits.maxLocksPerSession) return null;
    const due = table.dueOf(local, ctx.clock.monotonic());
    return due.length > 0 ? due : null;
  }

  /** `LockStore#acquire`: the answer waits for every earlier step of the key this node has not applied yet. */
  async acquire(session: SessionId, input: AcquireInput): Promise<AcquireOutcome> {
    const { ctx, table, timeouts, notes } = this.#o;
    const { ticket, key, mode, acquireTimeout, holdTimeout, steal } = input;
    checkDuration('acquireTimeout', acquireTimeout);
    checkDuration('holdTimeout', holdTimeout);
    if (steal && mode !== 'exclusive') throw badRequest('steal: only an exclusive acquire can steal');
    if (steal && acquireTimeout === 0) throw badRequest('steal: cannot be combined with acquireTimeout 0');
    const liveness = live(ctx);
    if (!liveness.serving) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const local = table.session(session);
    const hold = holdArg(ctx, holdTimeout);
    const pending = createPending(ticket, session, key, 'acquire', ctx.clock.monotonic(), hold === '' ? null : Number(hold));
    table.addPending(local, pending);
    // The timeout runs from the request's arrival, as in memory, even while its script is in flight.
    if (acquireTimeout !== null && acquireTimeout > 0) timeouts.armTimeout(pending, acquireTimeout);
    // All read in this turn: a request made after this one must not be waited for (it may wait for this one).
    const cancelling = this.#cancels.of(session, key);
    const held = this.#gate.holdBack(session, local, pending);
    const before = startOf(local, key);
    // Counted without this request itself. Their `expire` and `unqueue` steps go now, ahead of this acquire's
    // step on the same key; the `lost` of a hold of the acquire's own key waits for its answer, so such a hold
    // is counted out below.
    const due = this.#dueAtLimit(local, local.acquiring - 1);
    const expiring = due ? Promise.all([...new Set(due.map((h) => h.key))].map((k) => timeouts.runDue(k))) : null;
    // One that waits before its step keeps its place: the session's later requests of the key wait until
    // it begins (see `LocalSession#starting`). The common acquire waits for nothing and records nothing.
    const begin = cancelling || held || before || expiring || uncertainAcquireOf(local, key) ? startLater(local, key) : null;
    try {
      if (cancelling || held || before || expiring) {
        await cancelling?.catch(() => false);
        await held?.settled;
        await before;
        await expiring;
        if (table.sessions.get(session) !== local || table.tickets.get(ticket) !== pending) {
          // The session closed, or the node gave up its requests, meanwhile.
          table.removePending(pending);
          throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
        }
      }
      if (uncertainAcquireOf(local, key)) {
        // A failed acquire of this session on the key may still wait in Redis' queue (the retry would be
        // refused as already queued) or hold a grant the session was told it did not get: it is taken
        // out first, and this acquire runs as the new request it is.
        await this.#o.reconciler.clearUncertain(session, local, key).catch((error: unknown) => {
          table.removePending(pending);
          throw error;
        });
        if (table.sessions.get(session) !== local || table.tickets.get(ticket) !== pending) {
          // The session closed, or the node gave up its requests, meanwhile: it must not reach Redis after that.
          table.removePending(pending);
          throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
        }
      }
      // Counted without this request itself; exact when held back, else an upper bound below the limit.
      const ending = due?.filter((h) => local.holds.get(h.key) === h).length ?? 0;
      const full = held ? held.full(ending) : local.holds.size + local.acquiring - 1 - ending >= ctx.limits.maxLocksPerSession;
      // The id the step runs under (the step runner reads it in this same turn).
      const node = liveness.id;
      // The session's later requests of the key go after this step, which the step runner begins in this turn.
      held?.begin();
      begin?.();
      return await this.#o.steps.step(
        'acquire',
        key,
        [
          session,
          String(ticket),
          mode,
          durationArg(acquireTimeout),
          hold,
          steal ? '1' : '0',
          input.meta === null ? '' : JSON.stringify(input.meta),
          full ? '1' : '0',
          String(ctx.limits.maxWaitersPerKey),
        ],
        (r, at, sent): AcquireOutcome => {
          if (this.#givenUp(local, pending, node)) throw new LockError(ErrorCode.StoreUnavailable, GIVEN_UP);
          // `lost` notes of steps Redis ran before this one come before its answer.
          notes.settleEarly(pending, at);
          const st = str(r, 'st');
          if (st === 'queued') return { status: 'queued', position: num(r, 'p') };
          table.removePending(pending);
          if (st === 'granted') {
            const grant = { key, token: Number(str(r, 't')), expiresAt: expiresAtOf(str(r, 'x')) };
            const had = local.holds.get(key);
            if (table.sessions.get(session) === local && had?.token !== grant.token) {
              // A hold this node still knows under another token ended unheard (a late message): it is lost.
              if (had) {
                table.dropHold(had);
                ctx.listener?.lost(session, { key, token: had.token, reason: 'revoked' });
              }
              table.addHold(local, session, grant, dueOfStep(grant.expiresAt, sent));
            }
            return { status: 'granted', ...grant };
          }
          if (st === 'not_granted') return { status: 'not_granted' };
          if (str(r, 'err') === 'lost_state') {
            // The session's hold of the key went with the rest: it hears so before this answer.
            this.#o.notes.vanished(session, key);
            liveness.checkNow();
            throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
          }
          throw acquireError(r, key, ctx.limits);
        },
        () => {
          table.removePending(pending);
          local.dirty.add(key);
          // Redis may have run it all the same (only the reply was late): the reconciliation undoes it.
          if (table.sessions.get(session) === local) this.#o.reconciler.uncertain(local, ticket, key);
        },
      );
    } finally {
      held?.begin();
      begin?.();
      notes.sent(pending);
    }
  }

  /**
   * `LockStore#release`: after the session's earlier request of the key that
   * waits before its step (see `LocalSession#starting`), and counted for a
   * held-back acquire of the session (see `LimitGate`).
   */
  release(session: SessionId, key: string): Promise<void> {
    const local = this.#o.table.sessions.get(session);
    const later = this.#gate.later(local);
    const call = this.#release(session, key, local, later);
    return later ? this.#gate.track(later, call) : call;
  }

  async #release(session: SessionId, key: string, local: LocalSession | undefined, later: LaterRequest | null): Promise<void> {
    const { table } = this.#o;
    const before = startOf(local, key);
    if (local && before) {
      // The session's requests of the key after this one wait for it in turn.
      const begin = startLater(local, key);
      await before;
      // Its step begins in this turn.
      begin();
    }
    await this.#o.steps.step('release', key, [session], (r) => {
      if (str(r, 'err') !== '') {
        this.#o.notes.vanished(session, key);
        throw notHolder(key);
      }
      const hold = table.sessions.get(session)?.holds.get(key);
      if (hold && later) this.#gate.freed(later);
      table.dropHold(hold);
    });
  }

  /** `LockStore#extend`: after the session's earlier request of the key that waits before its step (see `LocalSession#starting`). */
  async extend(session: SessionId, key: string, holdTimeout: number | null): Promise<number | null> {
    const { table, timeouts } = this.#o;
    checkDuration('holdTimeout', holdTimeout);
    const local = table.sessions.get(session);
    const before = startOf(local, key);
    if (local && before) {
      // The session's requests of the key after this one wait for it in turn.
      const begin = startLater(local, key);
      await before;
      // Its step begins in this turn.
      begin();
    }
    const liveness = live(this.#o.ctx);
    // The id the step runs under.
    const node = liveness.id;
    return this.#o.steps.step('extend', key, [session, holdArg(this.#o.ctx, holdTimeout)], (r, _at, sent) => {
      if (str(r, 'err') !== '') {
        this.#o.notes.vanished(session, key);
        throw notHolder(key);
      }
      // The node gave its holds up meanwhile, each reported lost: Redis extended a hold its cleanup drops.
      if (!liveness.vouching || liveness.id !== node) throw notHolder(key);
      const expiresAt = expiresAtOf(str(r, 'x'));
      const due = dueOfStep(expiresAt, sent);
      const local = table.sessions.get(session);
      const hold = local?.holds.get(key);
      if (hold) {
        hold.expiresAt = expiresAt;
        timeouts.armHold(hold, due);
      } else if (local) {
        table.addHold(local, session, { key, token: Number(str(r, 't')), expiresAt }, due);
      }
      return expiresAt;
    });
  }

  async wait(session: SessionId, input: WaitInput): Promise<'free' | 'pending'> {
    const { table, timeouts, notes } = this.#o;
    checkDuration('timeout', input.timeout);
    const liveness = live(this.#o.ctx);
    // Its record would be under an id the node gave up (or is about to drop): its end would never be heard.
    if (!liveness.serving) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const local = table.session(session);
    const before = startOf(local, input.key);
    // The session's requests of the key after this one wait for it in turn.
    const begin = before ? startLater(local, input.key) : null;
    const pending = createPending(input.ticket, session, input.key, 'wait', this.#o.ctx.clock.monotonic());
    table.addPending(local, pending);
    if (input.timeout !== null) timeouts.armTimeout(pending, input.timeout);
    try {
      if (before) {
        // After the session's earlier request of the key that waits before its step (see `LocalSession#starting`).
        await before;
        if (table.sessions.get(session) !== local || table.tickets.get(input.ticket) !== pending || !liveness.serving) {
          table.removePending(pending);
          throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
        }
      }
      // The id the step runs under.
      const node = liveness.id;
      this.#o.reconciler.recordedUnder(pending, node);
      // Its step begins in this turn.
      begin?.();
      return await this.#o.steps.step(
        'wait',
        input.key,
        [session, String(input.ticket)],
        (r) => {
          if (this.#givenUp(local, pending, node)) throw new LockError(ErrorCode.StoreUnavailable, GIVEN_UP);
          if (str(r, 'free') !== '') {
            // Nobody holds the key in Redis: a hold of the session this node still records there ended unheard.
            this.#o.notes.vanished(session, input.key);
            table.removePending(pending);
            return 'free' as const;
          }
          return 'pending' as const;
        },
        () => {
          table.removePending(pending);
          local.dirty.add(input.key);
          // Redis may have recorded the wait all the same: the reconciliation takes its record out.
          if (table.sessions.get(session) === local) this.#o.reconciler.uncertain(local, input.ticket, input.key, 'wait');
        },
      );
    } finally {
      begin?.();
      notes.sent(pending);
    }
  }

  /** `LockStore#cancel`: see `LockCancels#cancel`. */
  cancel(session: SessionId, ticket: Ticket): Promise<boolean> {
    return this.#cancels.cancel(session, ticket);
  }

  async revoke(key: string): Promise<number> {
    return this.#o.steps.step('revoke', key, [], (r) => num(r, 'n'));
  }

  /**
   * True when the node gave `pending` up while its script was out: it
   * stopped vouching (and answered the request `store_unavailable` through
   * the listener's `failed`), does not vouch now, or runs under another id
   * than the step did (whose records its cleanup drops). The reply must not answer the request
   * then, least of all with a grant: the cleanup would release that hold
   * without a `lost`. What Redis did for it is taken out as after a failed
   * call. False for a closed session (its close drops the key).
   */
  #givenUp(local: LocalSession, pending: LocalPending, node: string): boolean {
    const { table, ctx, reconciler } = this.#o;
    if (table.sessions.get(pending.session) !== local) return false;
    const liveness = live(ctx);
    if (table.tickets.get(pending.ticket) === pending && liveness.vouching && liveness.id === node) return false;
    table.removePending(pending);
    local.dirty.add(pending.key);
    reconciler.uncertain(local, pending.ticket, pending.key, pending.kind);
    reconciler.reconcileSoon();
    return true;
  }
}

/** The answer to a request whose reply came after its node gave it up. */
const GIVEN_UP = 'lost contact with the lock store (Redis); the request was dropped';

function checkDuration(field: string, value: number | null): void {
  if (value === null) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_DURATION_MS) {
    throw badRequest(`${field}: must be null or a number of ms from 0 to ${MAX_DURATION_MS}`);
  }
}

function durationArg(value: number | null): string {
  return value === null ? '' : String(Math.ceil(value));
}

/** A hold's length as the scripts add it to `now` (whole ms, with the clock's resolution: see `holdDuration`). */
function holdArg(ctx: StoreContext, holdTimeout: number | null): string {
  return holdTimeout === null ? '' : String(holdDuration(ctx.clock, holdTimeout));
}

function acquireError(r: Json, key: string, limits: StoreLimits): LockError {
  const err = str(r, 'err');
  if (err === 'mode') {
    return badRequest(`mode: this session holds ${JSON.stringify(key)} as ${str(r, 'm')}; upgrades are not supported`);
  }
  if (err === 'queued') return badRequest(`key: this session already waits in the queue of ${JSON.stringify(key)}`);
  if (err === 'too_many_locks') {
    return new LockError(ErrorCode.TooManyLocks, `key: this session already holds or waits for ${limits.maxLocksPerSession} locks`);
  }
  if (err === 'too_many_waiters') {
    return new LockError(ErrorCode.TooManyWaiters, `key: ${limits.maxWaitersPerKey} requests already wait for ${JSON.stringify(key)}`);
  }
  return new LockError(ErrorCode.Internal, `unexpected reply from the acquire script: ${err}`);
}
