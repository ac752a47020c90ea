import type { LostReason } from '@lockwire/protocol';
import { holdDuration, type Clock, type Instant } from '../clock.js';
import type { SessionId } from '../store.js';
import { DeadlineHeap } from './deadline-heap.js';
import { holdEvent, waiterEvent, type Effect } from './effects.js';
import {
  compatible,
  createSessionRecord,
  isEmptySession,
  type Deadline,
  type Hold,
  KeyEntry,
  type SessionRecord,
  type Wait,
  type Waiter,
} from './key-entry.js';
import type { TokenSource } from './token-source.js';

/** How a hold ended: released by its holder (or its session's end), or taken away. */
type HoldEnd = 'released' | LostReason;

/** What a `KeyTable` is made with (by `LockEngine`, from its own options). */
export interface KeyTableOptions {
  /** Where the fencing tokens of grants come from: one counter for the whole store. */
  tokens: TokenSource;
  /** The `resolution` of the wall clock `Instant.wall` is read from (see `Clock`); default 0. */
  clockResolution?: number;
}

/**
 * The lock engine's tables and the moves its operations are made of. Keys
 * and sessions are indexed both ways (key -> entry, session -> held, queued
 * and waits), and every move updates both in the same function; deadlines
 * live in one heap, in monotonic ms. Each move appends the effects it
 * caused to the `effects` it is handed; none checks limits or throws (see
 * `LockEngine`, which decides what to do and in what order).
 */
export class KeyTable {
  /** Every key that has holders or waiters, by key. */
  readonly keys = new Map<string, KeyEntry>();
  /** Every session that holds, queues or waits for something. */
  readonly sessions = new Map<SessionId, SessionRecord>();
  /** The hold, acquire and wait timeouts, in monotonic ms. */
  readonly deadlines = new DeadlineHeap<Deadline>();
  readonly #tokens: TokenSource;
  readonly #clock: Pick<Clock, 'resolution'>;

  constructor(options: KeyTableOptions) {
    this.#tokens = options.tokens;
    this.#clock = { resolution: options.clockResolution ?? 0 };
  }

  /** Grants `request` on `entry` now: records the hold both ways, schedules its expiry, and adds its `acquired` event. */
  grant(
    entry: KeyEntry,
    request: Pick<Hold, 'session' | 'mode' | 'meta'> & { holdTimeout: number | null },
    now: Instant,
    effects: Effect[],
  ): Hold {
    const hold: Hold = {
      key: entry.key,
      session: request.session,
      mode: request.mode,
      token: this.#tokens.next(now.wall),
      since: now.wall,
      meta: request.meta,
      expiresAt: null,
      deadline: null,
      waits: null,
    };
    this.schedule(hold, request.holdTimeout, now);
    entry.setHolder(hold);
    const record = this.record(hold.session);
    (record.held ??= new Map()).set(hold.key, hold);
    effects.push(holdEvent(entry, 'acquired', hold, now.wall));
    return hold;
  }

  /** Sets the hold's expiry to `holdTimeout` from `now` (`null`: never), replacing any deadline it had. */
  schedule(hold: Hold, holdTimeout: number | null, now: Instant): void {
    if (hold.deadline) this.deadlines.cancel(hold.deadline);
    hold.deadline = null;
    hold.expiresAt = null;
    if (holdTimeout === null) return;
    // One duration for both readings: `expiresAt`, a whole epoch millisecond
    // on every store, reports the deadline, which alone decides (see
    // `holdDuration`: never before `holdTimeout` has passed since the grant).
    const duration = holdDuration(this.#clock, holdTimeout);
    hold.expiresAt = now.wall + duration;
    hold.deadline = this.deadlines.push(now.monotonic + duration, { kind: 'hold', hold });
  }

  /** Ends a hold; the caller then drains the queue (after all holds of its step ended). */
  endHold(entry: KeyEntry, hold: Hold, how: HoldEnd, now: Instant, effects: Effect[]): void {
    entry.deleteHolder(hold.session);
    if (hold.deadline) this.deadlines.cancel(hold.deadline);
    hold.deadline = null;
    const record = this.sessions.get(hold.session);
    if (record) {
      record.held?.delete(hold.key);
      this.#dropIfEmpty(hold.session, record);
    }
    if (how !== 'released') {
      effects.push({ type: 'lost', session: hold.session, lost: { key: hold.key, token: hold.token, reason: how } });
    }
    effects.push(holdEvent(entry, how, hold, now.wall));
    for (const wait of hold.waits ?? []) {
      wait.holds.delete(hold);
      if (wait.holds.size > 0) continue;
      this.removeWait(wait);
      effects.push({ type: 'waitDone', session: wait.session, ticket: wait.ticket, free: true });
    }
    hold.waits = null;
  }

  /**
   * Puts `waiter` at the end of `entry`'s queue: schedules its acquire
   * timeout (`null`: none), records it both ways, and adds its `queued` event.
   */
  enqueue(entry: KeyEntry, waiter: Waiter, acquireTimeout: number | null, now: Instant, effects: Effect[]): void {
    if (acquireTimeout !== null) {
      waiter.deadline = this.deadlines.push(now.monotonic + acquireTimeout, { kind: 'acquire', waiter });
    }
    entry.enqueue(waiter);
    const record = this.record(waiter.session);
    (record.queued ??= new Map()).set(waiter.ticket, waiter);
    (record.queuedKeys ??= new Set()).add(waiter.key);
    effects.push(waiterEvent(entry, 'queued', waiter, now.wall));
  }

  /** Takes a waiter out of its queue (`dequeued`), then grants whatever that unblocked. */
  dequeue(waiter: Waiter, now: Instant, effects: Effect[]): void {
    const entry = this.keys.get(waiter.key);
    if (!entry) return;
    this.#unlinkWaiter(entry, waiter);
    effects.push(waiterEvent(entry, 'dequeued', waiter, now.wall));
    this.drain(entry, now, effects);
  }

  #unlinkWaiter(entry: KeyEntry, waiter: Waiter): void {
    entry.unqueue(waiter);
    if (waiter.deadline) this.deadlines.cancel(waiter.deadline);
    waiter.deadline = null;
    const record = this.sessions.get(waiter.session);
    if (!record) return;
    record.queued?.delete(waiter.ticket);
    record.queuedKeys?.delete(waiter.key);
    this.#dropIfEmpty(waiter.session, record);
  }

  /** Records a wait on the holds it waits on and in its session, and schedules its timeout (`null`: none). */
  addWait(wait: Wait, timeout: number | null, now: Instant): void {
    for (const hold of wait.holds) (hold.waits ??= new Set()).add(wait);
    if (timeout !== null) wait.deadline = this.deadlines.push(now.monotonic + timeout, { kind: 'wait', wait });
    const record = this.record(wait.session);
    (record.waits ??= new Map()).set(wait.ticket, wait);
  }

  /** Drops a wait from the holds it waits on, from the deadlines and from its session; settles nothing. */
  removeWait(wait: Wait): void {
    for (const hold of wait.holds) hold.waits?.delete(wait);
    wait.holds.clear();
    if (wait.deadline) this.deadlines.cancel(wait.deadline);
    wait.deadline = null;
    const record = this.sessions.get(wait.session);
    if (!record) return;
    record.waits?.delete(wait.ticket);
    this.#dropIfEmpty(wait.session, record);
  }

  /**
   * Grants the queue's head while it is compatible with the holders: one
   * exclusive request, or a run of shared ones up to the first exclusive.
   * Removes the entry when nothing is left of it.
   */
  drain(entry: KeyEntry, now: Instant, effects: Effect[]): void {
    for (let head = entry.head; head && compatible(entry, head.mode); head = entry.head) {
      this.#unlinkWaiter(entry, head);
      const hold = this.grant(entry, head, now, effects);
      // The `granted` settlement goes before its `acquired` event, right
      // after the step's losses, so the new holder hears of it first.
      effects.splice(effects.length - 1, 0, {
        type: 'granted',
        session: head.session,
        ticket: head.ticket,
        grant: { key: hold.key, token: hold.token, expiresAt: hold.expiresAt },
      });
    }
    if (entry.holderCount === 0 && entry.waiting === 0) this.keys.delete(entry.key);
  }

  /** A new, empty entry for `key`, in the table. */
  createEntry(key: string): KeyEntry {
    const entry = new KeyEntry(key);
    this.keys.set(key, entry);
    return entry;
  }

  /** The record of `session`, created empty when it has none. */
  record(session: SessionId): SessionRecord {
    let record = this.sessions.get(session);
    if (!record) {
      record = createSessionRecord();
      this.sessions.set(session, record);
    }
    return record;
  }

  #dropIfEmpty(session: SessionId, record: SessionRecord): void {
    if (isEmptySession(record)) this.sessions.delete(session);
  }
}
