import type { HolderInfo, LockMode, LockStatus, WaiterInfo } from '@lockwire/protocol';
import type { Meta, SessionId, Ticket } from '../store.js';
import type { DeadlineSlot } from './deadline-heap.js';

/** What a deadline in the engine's heap stands for. */
export type Deadline =
  | { kind: 'hold'; hold: Hold }
  | { kind: 'acquire'; waiter: Waiter }
  | { kind: 'wait'; wait: Wait };

/** A granted lock: one session's hold on one key. */
export interface Hold {
  readonly key: string;
  readonly session: SessionId;
  readonly mode: LockMode;
  readonly token: number;
  readonly since: number;
  readonly meta: Meta | null;
  /** When the hold ends, on the wall clock as it read at the grant or last extend: reported only. */
  expiresAt: number | null;
  /** The end that counts, on the monotonic clock; null without a hold timeout. */
  deadline: DeadlineSlot<Deadline> | null;
  /**
   * Pending waits that still wait for this hold to end; `null` while there
   * are none. Most holds never see a `wait`, and an empty `Set` costs about
   * 150 bytes of heap per held lock, half the budget of a whole lock.
   */
  waits: Set<Wait> | null;
}

/** A queued acquire; a node of its key's queue. */
export interface Waiter {
  readonly ticket: Ticket;
  readonly key: string;
  readonly session: SessionId;
  readonly mode: LockMode;
  readonly since: number;
  /** Arrival number, larger for every later waiter of the engine: tells requests of one millisecond apart. */
  readonly seq: number;
  readonly meta: Meta | null;
  readonly holdTimeout: number | null;
  deadline: DeadlineSlot<Deadline> | null;
  prev: Waiter | null;
  next: Waiter | null;
}

/** A pending `wait`: done when every hold in `holds` has ended. */
export interface Wait {
  readonly ticket: Ticket;
  readonly key: string;
  readonly session: SessionId;
  readonly holds: Set<Hold>;
  deadline: DeadlineSlot<Deadline> | null;
}

/**
 * One key's state: its holders (one exclusive hold or any number of shared
 * ones) and its queue of waiters in grant order. A pending wait always waits
 * on at least one live hold, so an entry with no holders and an empty queue
 * has nothing left and is removed.
 *
 * Memory is the point of this shape: with a million held keys every byte of
 * an entry counts a million times. The entry is one object with two fields
 * besides its key (about 48 bytes), where a holders object and a queue object
 * of their own cost about 90 bytes more per key:
 * - `#holders` is the one hold itself in the common case (every exclusive
 *   lock, and a shared lock nobody shares); a `Map` by session is made only
 *   for a second holder (an empty `Map` alone costs about 180 bytes).
 * - `#queue` is made when the first waiter arrives: most held keys never
 *   have one.
 */
export class KeyEntry {
  #holders: Hold | Map<SessionId, Hold> | null = null;
  #queue: WaiterQueue | null = null;

  constructor(readonly key: string) {}

  /** How many sessions hold the key. */
  get holderCount(): number {
    const holders = this.#holders;
    if (holders === null) return 0;
    return holders instanceof Map ? holders.size : 1;
  }

  /** This session's hold on the key, if it has one. */
  holder(session: SessionId): Hold | undefined {
    const holders = this.#holders;
    if (holders instanceof Map) return holders.get(session);
    return holders?.session === session ? holders : undefined;
  }

  /** Adds (or replaces) `hold` as its session's hold on the key. */
  setHolder(hold: Hold): void {
    const holders = this.#holders;
    if (holders instanceof Map) holders.set(hold.session, hold);
    else if (holders === null || holders.session === hold.session) this.#holders = hold;
    else this.#holders = new Map([[holders.session, holders], [hold.session, hold]]);
  }

  /** Removes this session's hold; false when it had none. */
  deleteHolder(session: SessionId): boolean {
    const holders = this.#holders;
    if (holders instanceof Map) {
      const deleted = holders.delete(session);
      // Back to the field once the last shared holder but one has left.
      if (holders.size <= 1) this.#holders = holders.values().next().value ?? null;
      return deleted;
    }
    if (holders?.session !== session) return false;
    this.#holders = null;
    return true;
  }

  /** The holds in the order they were granted. */
  *holds(): IterableIterator<Hold> {
    const holders = this.#holders;
    if (holders instanceof Map) yield* holders.values();
    else if (holders) yield holders;
  }

  /** The mode the key is held in, or null when nobody holds it. */
  get mode(): LockMode | null {
    const holders = this.#holders;
    if (holders instanceof Map) {
      for (const hold of holders.values()) return hold.mode;
      return null;
    }
    return holders?.mode ?? null;
  }

  /** The first waiter in grant order, or null. */
  get head(): Waiter | null {
    return this.#queue?.head ?? null;
  }

  /** How many waiters are queued. */
  get waiting(): number {
    return this.#queue?.size ?? 0;
  }

  /** Appends a waiter at the tail of the queue. */
  enqueue(waiter: Waiter): void {
    (this.#queue ??= new WaiterQueue()).append(waiter);
  }

  /** Takes a queued waiter out of the queue, wherever it is. */
  unqueue(waiter: Waiter): void {
    this.#queue?.remove(waiter);
  }

  /** The waiters in grant order. */
  *waiters(): IterableIterator<Waiter> {
    if (this.#queue) yield* this.#queue;
  }
}

/**
 * What one session has, so closing it touches nothing else. Each collection
 * is made on first use: a session that only waits on one key would otherwise
 * carry three more empty collections (about 150 bytes each), more than the
 * waiter itself costs.
 */
export interface SessionRecord {
  held: Map<string, Hold> | null;
  queued: Map<Ticket, Waiter> | null;
  /** Keys with a queued acquire of this session (at most one per key). */
  queuedKeys: Set<string> | null;
  waits: Map<Ticket, Wait> | null;
}

export function createSessionRecord(): SessionRecord {
  return { held: null, queued: null, queuedKeys: null, waits: null };
}

export function isEmptySession(record: SessionRecord): boolean {
  return !record.held?.size && !record.queued?.size && !record.waits?.size;
}

/** True when a request in `mode` is compatible with the current holders (the queue aside). */
export function compatible(entry: KeyEntry, mode: LockMode): boolean {
  const current = entry.mode;
  return current === null || (mode === 'shared' && current === 'shared');
}

/**
 * A key's queue in grant order: a doubly-linked list through the waiters, so
 * appending, taking the head and removing any waiter are O(1).
 */
class WaiterQueue {
  head: Waiter | null = null;
  tail: Waiter | null = null;
  size = 0;

  append(waiter: Waiter): void {
    waiter.prev = this.tail;
    waiter.next = null;
    if (this.tail) this.tail.next = waiter;
    else this.head = waiter;
    this.tail = waiter;
    this.size++;
  }

  remove(waiter: Waiter): void {
    if (waiter.prev) waiter.prev.next = waiter.next;
    else this.head = waiter.next;
    if (waiter.next) waiter.next.prev = waiter.prev;
    else this.tail = waiter.prev;
    waiter.prev = null;
    waiter.next = null;
    this.size--;
  }

  *[Symbol.iterator](): IterableIterator<Waiter> {
    for (let waiter = this.head; waiter; waiter = waiter.next) yield waiter;
  }
}

/** The `status` view of a key; a missing entry is a free key. */
export function statusOf(key: string, entry: KeyEntry | undefined, viewer: SessionId | null): LockStatus {
  const holders: HolderInfo[] = [];
  const queue: WaiterInfo[] = [];
  if (entry) {
    for (const hold of entry.holds()) {
      holders.push({
        session: hold.session,
        mode: hold.mode,
        token: hold.token,
        since: hold.since,
        expiresAt: hold.expiresAt,
        meta: hold.meta,
      });
    }
    for (const waiter of entry.waiters()) {
      queue.push({ session: waiter.session, mode: waiter.mode, since: waiter.since, meta: waiter.meta, seq: waiter.seq });
    }
  }
  const status: LockStatus = {
    key,
    locked: holders.length > 0,
    mode: entry ? entry.mode : null,
    holders,
    queue,
  };
  if (viewer !== null) status.heldByYou = entry?.holder(viewer) !== undefined;
  return status;
}
