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
  expiresAt: number | null;
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
 * One key's state. Holders are either one exclusive hold or any number of
 * shared ones. A pending wait always waits on at least one live hold, so an
 * entry with no holders and an empty queue has nothing left and is removed.
 */
export interface KeyEntry {
  readonly key: string;
  readonly holders: Holders;
  readonly queue: WaiterQueue;
}

/** What one session has, so closing it touches nothing else. */
export interface SessionRecord {
  readonly held: Map<string, Hold>;
  readonly queued: Map<Ticket, Waiter>;
  /** Keys with a queued acquire of this session (at most one per key). */
  readonly queuedKeys: Set<string>;
  readonly waits: Map<Ticket, Wait>;
}

export function createKeyEntry(key: string): KeyEntry {
  return { key, holders: new Holders(), queue: new WaiterQueue() };
}

export function createSessionRecord(): SessionRecord {
  return { held: new Map(), queued: new Map(), queuedKeys: new Set(), waits: new Map() };
}

export function isEmptySession(record: SessionRecord): boolean {
  return record.held.size === 0 && record.queued.size === 0 && record.waits.size === 0;
}

/** The mode the key is held in, or null when nobody holds it. */
export function heldMode(entry: KeyEntry): LockMode | null {
  for (const hold of entry.holders.values()) return hold.mode;
  return null;
}

/** True when a request in `mode` is compatible with the current holders (the queue aside). */
export function compatible(entry: KeyEntry, mode: LockMode): boolean {
  const current = heldMode(entry);
  return current === null || (mode === 'shared' && current === 'shared');
}

/**
 * A key's holders by session: one exclusive hold or any number of shared
 * ones, with the part of the `Map` API the engine uses. The one-holder case
 * (every exclusive lock, and a shared lock nobody shares) keeps the hold in a
 * field; a `Map` is made only for a second holder. An empty `Map` alone
 * costs about 180 bytes of heap, more than half of what a held lock may cost.
 */
export class Holders {
  #one: Hold | null = null;
  #many: Map<SessionId, Hold> | null = null;

  get size(): number {
    return this.#many ? this.#many.size : this.#one ? 1 : 0;
  }

  get(session: SessionId): Hold | undefined {
    if (this.#many) return this.#many.get(session);
    return this.#one?.session === session ? this.#one : undefined;
  }

  has(session: SessionId): boolean {
    return this.get(session) !== undefined;
  }

  set(session: SessionId, hold: Hold): void {
    if (this.#many) {
      this.#many.set(session, hold);
    } else if (!this.#one || this.#one.session === session) {
      this.#one = hold;
    } else {
      this.#many = new Map([
        [this.#one.session, this.#one],
        [session, hold],
      ]);
      this.#one = null;
    }
  }

  delete(session: SessionId): boolean {
    if (this.#many) {
      const deleted = this.#many.delete(session);
      // Back to the field once the last shared holder but one has left.
      if (this.#many.size <= 1) {
        this.#one = this.#many.values().next().value ?? null;
        this.#many = null;
      }
      return deleted;
    }
    if (this.#one?.session !== session) return false;
    this.#one = null;
    return true;
  }

  /** The holds in the order they were granted. */
  *values(): IterableIterator<Hold> {
    if (this.#many) yield* this.#many.values();
    else if (this.#one) yield this.#one;
  }
}

/**
 * A key's queue in grant order: a doubly-linked list through the waiters, so
 * appending, taking the head and removing any waiter are O(1).
 */
export class WaiterQueue {
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
    for (const hold of entry.holders.values()) {
      holders.push({
        session: hold.session,
        mode: hold.mode,
        token: hold.token,
        since: hold.since,
        expiresAt: hold.expiresAt,
        meta: hold.meta,
      });
    }
    for (const waiter of entry.queue) {
      queue.push({ session: waiter.session, mode: waiter.mode, since: waiter.since, meta: waiter.meta });
    }
  }
  const status: LockStatus = {
    key,
    locked: holders.length > 0,
    mode: entry ? heldMode(entry) : null,
    holders,
    queue,
  };
  if (viewer !== null) status.heldByYou = entry?.holders.has(viewer) ?? false;
  return status;
}
