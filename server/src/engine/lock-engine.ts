import type { ListResult, LockStatus } from '@lockwire/protocol';
import type { Instant } from '../clock.js';
import { badRequest, notHolder } from '../errors.js';
import type { AcquireInput, AcquireOutcome, SessionEnd, SessionId, StoreLimits, Ticket, WaitInput } from '../store.js';
import { checkDuration, checkTicketFree, tooManyLocks, tooManyWaiters } from './checks.js';
import { FirstKeys } from './first-keys.js';
import type { Effect } from './effects.js';
import { compatible, statusOf, type Hold, type Wait, type Waiter } from './key-entry.js';
import { KeyTable } from './key-table.js';
import type { TokenSource } from './token-source.js';

export interface LockEngineOptions {
  limits: StoreLimits;
  tokens: TokenSource;
  /** The `resolution` of the wall clock `Instant.wall` is read from (see `Clock`); default 0. */
  clockResolution?: number;
}

/**
 * The lock table as a pure, synchronous state machine. It knows nothing of
 * sockets, JSON or timers: every operation is handed `now` (an `Instant`)
 * and returns the effects it caused, in order, for the caller to deliver.
 * Deadlines (hold, acquire and wait timeouts) live in one heap, in
 * monotonic ms; the caller asks for `nextDeadline()` and calls `tick(now)`
 * when its monotonic clock reaches it.
 *
 * Failures throw `LockError` before anything changes.
 *
 * Effect order within a step: when holds end, each hold's `lost` (if taken
 * away) and its event come first, then the waits that hold was the last one
 * for, then the grants the freed key allows. Waits are settled before grants
 * so that a waiter hears "free" no later than a watcher hears the next
 * `acquired`: the key was free in between, even if only for that instant.
 */
export class LockEngine {
  readonly #table: KeyTable;
  readonly #limits: StoreLimits;
  /** The last waiter's arrival number (`WaiterInfo.seq`). */
  #seq = 0;

  constructor(options: LockEngineOptions) {
    this.#limits = options.limits;
    this.#table = new KeyTable({ tokens: options.tokens, clockResolution: options.clockResolution });
  }

  /**
   * Grants, queues or refuses an acquire. A re-acquire by the current holder
   * in the same mode returns its grant unchanged. Throws `bad_request` (mode
   * switch, second queued acquire for the key, steal with `shared` or with
   * `acquireTimeout: 0`), `too_many_locks` or `too_many_waiters`.
   */
  acquire(session: SessionId, input: AcquireInput, now: Instant): { outcome: AcquireOutcome; effects: Effect[] } {
    const { ticket, key, mode, acquireTimeout, steal } = input;
    checkDuration('acquireTimeout', acquireTimeout);
    checkDuration('holdTimeout', input.holdTimeout);
    if (steal && mode !== 'exclusive') throw badRequest('steal: only an exclusive acquire can steal');
    if (steal && acquireTimeout === 0) throw badRequest('steal: cannot be combined with acquireTimeout 0');
    const record = this.#table.sessions.get(session);
    const held = record?.held?.get(key);
    if (held) {
      if (held.mode !== mode) {
        throw badRequest(`mode: this session holds ${JSON.stringify(key)} as ${held.mode}; upgrades are not supported`);
      }
      const outcome = { status: 'granted', key, token: held.token, expiresAt: held.expiresAt } as const;
      return { outcome, effects: [] };
    }
    if (record?.queuedKeys?.has(key)) {
      throw badRequest(`key: this session already waits in the queue of ${JSON.stringify(key)}`);
    }
    checkTicketFree(record, ticket);
    const existing = this.#table.keys.get(key);
    const grantable = steal || !existing || (existing.waiting === 0 && compatible(existing, mode));
    if (!grantable && acquireTimeout === 0) return { outcome: { status: 'not_granted' }, effects: [] };
    const locks = (record?.held?.size ?? 0) + (record?.queued?.size ?? 0);
    if (locks >= this.#limits.maxLocksPerSession) {
      throw tooManyLocks(this.#limits.maxLocksPerSession);
    }
    if (!grantable && existing && existing.waiting >= this.#limits.maxWaitersPerKey) {
      throw tooManyWaiters(key, this.#limits.maxWaitersPerKey);
    }

    const entry = existing ?? this.#table.createEntry(key);
    const effects: Effect[] = [];
    if (!grantable) {
      const waiter: Waiter = {
        ticket,
        key,
        session,
        mode,
        since: now.wall,
        seq: ++this.#seq,
        meta: input.meta,
        holdTimeout: input.holdTimeout,
        deadline: null,
        prev: null,
        next: null,
      };
      this.#table.enqueue(entry, waiter, acquireTimeout, now, effects);
      return { outcome: { status: 'queued', position: entry.waiting }, effects };
    }
    // A steal takes the key from every holder and is granted ahead of the
    // queue, which stays as it was: the stealer holds exclusively, so nothing
    // behind it could be granted now anyway.
    if (steal) for (const victim of [...entry.holds()]) this.#table.endHold(entry, victim, 'stolen', now, effects);
    const hold = this.#table.grant(entry, { session, mode, meta: input.meta, holdTimeout: input.holdTimeout }, now, effects);
    return { outcome: { status: 'granted', key, token: hold.token, expiresAt: hold.expiresAt }, effects };
  }

  /** Ends this session's hold on `key` and grants the queue's head(s). Throws `not_holder`. */
  release(session: SessionId, key: string, now: Instant): Effect[] {
    const hold = this.#table.sessions.get(session)?.held?.get(key);
    const entry = this.#table.keys.get(key);
    if (!hold || !entry) throw notHolder(key);
    const effects: Effect[] = [];
    this.#table.endHold(entry, hold, 'released', now, effects);
    this.#table.drain(entry, now, effects);
    return effects;
  }

  /**
   * Moves the hold's expiry to `holdTimeout` from `now` (`null`: never):
   * its deadline counts from the monotonic reading, whatever the wall clock
   * did since the grant. Returns the new `expiresAt` (wall clock). Throws
   * `not_holder`.
   */
  extend(session: SessionId, key: string, holdTimeout: number | null, now: Instant): number | null {
    checkDuration('holdTimeout', holdTimeout);
    const hold = this.#table.sessions.get(session)?.held?.get(key);
    if (!hold) throw notHolder(key);
    this.#table.schedule(hold, holdTimeout, now);
    return hold.expiresAt;
  }

  /**
   * `free` when nobody holds the key; else `pending` until every hold that
   * exists now has ended (`waitDone` free) or `timeout` passes (`waitDone`
   * not free). Never acquires.
   */
  wait(session: SessionId, input: WaitInput, now: Instant): 'free' | 'pending' {
    checkDuration('timeout', input.timeout);
    const record = this.#table.sessions.get(session);
    checkTicketFree(record, input.ticket);
    const entry = this.#table.keys.get(input.key);
    if (!entry || entry.holderCount === 0) return 'free';
    const wait: Wait = {
      ticket: input.ticket,
      key: input.key,
      session,
      holds: new Set(entry.holds()),
      deadline: null,
    };
    this.#table.addWait(wait, input.timeout, now);
    return 'pending';
  }

  /** Removes this session's pending acquire or wait; false when nothing with that ticket is pending. */
  cancel(session: SessionId, ticket: Ticket, now: Instant): { cancelled: boolean; effects: Effect[] } {
    const record = this.#table.sessions.get(session);
    const effects: Effect[] = [];
    const waiter = record?.queued?.get(ticket);
    if (waiter) {
      this.#table.dequeue(waiter, now, effects);
      return { cancelled: true, effects };
    }
    const wait = record?.waits?.get(ticket);
    if (wait) {
      this.#table.removeWait(wait);
      return { cancelled: true, effects };
    }
    return { cancelled: false, effects };
  }

  /** Takes the key from every holder (`lost` revoked) and grants the queue; returns how many holds ended. */
  revoke(key: string, now: Instant): { revoked: number; effects: Effect[] } {
    const entry = this.#table.keys.get(key);
    const effects: Effect[] = [];
    if (!entry) return { revoked: 0, effects };
    const holds = [...entry.holds()];
    for (const hold of holds) this.#table.endHold(entry, hold, 'revoked', now, effects);
    this.#table.drain(entry, now, effects);
    return { revoked: holds.length, effects };
  }

  /**
   * Ends a session: its queued acquires leave their queues (`dequeued`) and
   * its waits are dropped, then its holds end as `end` says (`released`, or
   * `revoked` with a `lost` for each), each key's queue granted in the same
   * step. Nothing else of the session is settled. Costs O(what the session
   * had).
   */
  closeSession(session: SessionId, now: Instant, end: SessionEnd = 'released'): Effect[] {
    const record = this.#table.sessions.get(session);
    const effects: Effect[] = [];
    if (!record) return effects;
    for (const waiter of [...(record.queued?.values() ?? [])]) this.#table.dequeue(waiter, now, effects);
    for (const wait of [...(record.waits?.values() ?? [])]) this.#table.removeWait(wait);
    for (const hold of [...(record.held?.values() ?? [])]) {
      const entry = this.#table.keys.get(hold.key);
      if (!entry) continue;
      this.#table.endHold(entry, hold, end, now, effects);
      this.#table.drain(entry, now, effects);
    }
    this.#table.sessions.delete(session);
    return effects;
  }

  /** The earliest pending deadline (monotonic ms, as `Instant.monotonic`), or null when none. */
  nextDeadline(): number | null {
    return this.#table.deadlines.peek()?.at ?? null;
  }

  /**
   * Processes every deadline due at `now` (`deadline <= now.monotonic`), in
   * deadline order. Deadlines created during this run (a grant with `holdTimeout: 0`)
   * wait for the next run, so their grant is delivered first.
   */
  tick(now: Instant): Effect[] {
    const effects: Effect[] = [];
    const before = this.#table.deadlines.nextSeq;
    for (let top = this.#table.deadlines.peek(); top; top = this.#table.deadlines.peek()) {
      if (top.at > now.monotonic || top.seq >= before) break;
      const due = this.#table.deadlines.pop();
      if (due === undefined) break;
      if (due.kind === 'hold') this.#expire(due.hold, now, effects);
      else if (due.kind === 'acquire') this.#timeOutAcquire(due.waiter, now, effects);
      else this.#timeOutWait(due.wait, effects);
    }
    return effects;
  }

  /** The `status` of a key; never creates an entry. `viewer` null omits `heldByYou`. */
  status(key: string, viewer: SessionId | null): LockStatus {
    return statusOf(key, this.#table.keys.get(key), viewer);
  }

  /** Locked keys starting with `prefix`, in UTF-16 code-unit order, at most `limit`. */
  list(prefix: string, limit: number, viewer: SessionId | null): ListResult {
    const first = new FirstKeys(limit);
    for (const [key, entry] of this.#table.keys) {
      if (entry.holderCount > 0 && key.startsWith(prefix)) first.offer(key);
    }
    const locks = first.sorted().map((key) => statusOf(key, this.#table.keys.get(key), viewer));
    return { locks, truncated: first.total > limit };
  }

  /** Sizes of the engine's tables, for tests and metrics. */
  inspect(): { keys: number; sessions: number; pendingDeadlines: number } {
    return { keys: this.#table.keys.size, sessions: this.#table.sessions.size, pendingDeadlines: this.#table.deadlines.size };
  }

  #expire(hold: Hold, now: Instant, effects: Effect[]): void {
    hold.deadline = null;
    const entry = this.#table.keys.get(hold.key);
    if (!entry || entry.holder(hold.session) !== hold) return;
    this.#table.endHold(entry, hold, 'expired', now, effects);
    this.#table.drain(entry, now, effects);
  }

  #timeOutAcquire(waiter: Waiter, now: Instant, effects: Effect[]): void {
    waiter.deadline = null;
    effects.push({ type: 'acquireTimedOut', session: waiter.session, ticket: waiter.ticket });
    this.#table.dequeue(waiter, now, effects);
  }

  #timeOutWait(wait: Wait, effects: Effect[]): void {
    wait.deadline = null;
    this.#table.removeWait(wait);
    effects.push({ type: 'waitDone', session: wait.session, ticket: wait.ticket, free: false });
  }
}
