import type { HolderInfo, LockEvent, LockStatus, WaiterInfo } from '@lockwire/client';

/** A holder as the dashboard knows it: `expiresAt` is `undefined` until a `status` told it (events do not carry it). */
export interface KnownHolder extends Omit<HolderInfo, 'expiresAt'> {
  expiresAt: number | null | undefined;
}

/** One locked key: its holders and its queue in grant order. */
export interface KeyRow {
  readonly key: string;
  holders: KnownHolder[];
  queue: WaiterInfo[];
  /** Bumped on every change, so a renderer can skip rows it already drew. */
  version: number;
}

/** What applying an event did. */
export interface Applied {
  /** The event's counts disagree with the local picture: fetch the key's `status`. */
  resync: boolean;
  /** A holder's expiry is unknown: fetch the key's `status` when it is on screen. */
  expiryUnknown: boolean;
}

/**
 * The dashboard's picture of the lock table, kept from a watch snapshot and
 * the events after it. Keys are kept sorted (UTF-16 code-unit order, as the
 * server lists them), so a prefix filter is one contiguous range found by
 * binary search, and a virtualised table can read any row by index.
 */
export class LockTable {
  readonly #rows = new Map<string, KeyRow>();
  #sorted: string[] = [];
  #heldKeys = 0;
  #holders = 0;
  #waiters = 0;

  /** Keys with at least one holder. */
  get heldKeys(): number {
    return this.#heldKeys;
  }

  /** Holders over all keys (a shared lock counts each holder). */
  get holders(): number {
    return this.#holders;
  }

  /** Queued requests over all keys. */
  get waiters(): number {
    return this.#waiters;
  }

  /** Keys in the table (held or with a queue). */
  get size(): number {
    return this.#sorted.length;
  }

  /** Replaces everything with a snapshot (`watch`/`list` result). */
  reset(locks: readonly LockStatus[]): void {
    this.#rows.clear();
    this.#heldKeys = 0;
    this.#holders = 0;
    this.#waiters = 0;
    for (const status of locks) {
      const row: KeyRow = { key: status.key, holders: [...status.holders], queue: [...status.queue], version: 0 };
      this.#rows.set(status.key, row);
      this.#count(row, 1);
    }
    // The server lists in key order already; sorting again costs little and guards the binary searches.
    this.#sorted = [...this.#rows.keys()].sort(compareKeys);
  }

  /** The row of `key`, if it is held or queued for. */
  get(key: string): KeyRow | undefined {
    return this.#rows.get(key);
  }

  /** The row at `index` of the sorted keys. */
  at(index: number): KeyRow | undefined {
    const key = this.#sorted[index];
    return key === undefined ? undefined : this.#rows.get(key);
  }

  /** The index range `[start, end)` of the keys starting with `prefix`. */
  range(prefix: string): [number, number] {
    const keys = this.#sorted;
    const start = lowerBound(keys, prefix);
    if (prefix === '') return [start, keys.length];
    let low = start;
    let high = keys.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((keys[middle] ?? '').startsWith(prefix)) low = middle + 1;
      else high = middle;
    }
    return [start, low];
  }

  /** Distinct sessions holding or queued for any key. O(rows): call it at a human pace. */
  distinctSessions(): number {
    const sessions = new Set<string>();
    for (const row of this.#rows.values()) {
      for (const holder of row.holders) sessions.add(holder.session);
      for (const waiter of row.queue) sessions.add(waiter.session);
    }
    return sessions.size;
  }

  /** Applies one watch event; see {@link Applied}. */
  apply(event: LockEvent): Applied {
    const existing = this.#rows.get(event.key);
    const row = existing ?? { key: event.key, holders: [], queue: [], version: 0 };
    this.#count(row, -1);
    switch (event.event) {
      case 'acquired': {
        // A grant from the queue takes the waiter out of it (no `dequeued` precedes a grant).
        removeFirst(row.queue, (waiter) => waiter.session === event.session);
        removeFirst(row.holders, (holder) => holder.session === event.session);
        row.holders.push({
          session: event.session,
          mode: event.mode,
          token: event.token ?? 0,
          since: event.at,
          expiresAt: undefined,
          meta: event.meta,
        });
        break;
      }
      case 'released':
      case 'expired':
      case 'stolen':
      case 'revoked':
        removeFirst(
          row.holders,
          (holder) => holder.session === event.session && (event.token === undefined || holder.token === event.token),
        );
        break;
      case 'queued':
        row.queue.push({ session: event.session, mode: event.mode, since: event.at, meta: event.meta });
        break;
      case 'dequeued':
        removeFirst(row.queue, (waiter) => waiter.session === event.session);
        break;
    }
    row.version++;
    const resync = row.holders.length !== event.holders || row.queue.length !== event.waiters;
    this.#store(row, existing !== undefined);
    return { resync, expiryUnknown: event.event === 'acquired' };
  }

  /** Replaces one key's row with a fresh `status` (a free key leaves the table). */
  replace(status: LockStatus): void {
    const existing = this.#rows.get(status.key);
    const row = existing ?? { key: status.key, holders: [], queue: [], version: 0 };
    this.#count(row, -1);
    row.holders = [...status.holders];
    row.queue = [...status.queue];
    row.version++;
    this.#store(row, existing !== undefined);
  }

  /** Puts a changed row back: counted, inserted in order if new, dropped if now empty. */
  #store(row: KeyRow, known: boolean): void {
    const empty = row.holders.length === 0 && row.queue.length === 0;
    if (empty) {
      if (known) {
        this.#rows.delete(row.key);
        const index = lowerBound(this.#sorted, row.key);
        if (this.#sorted[index] === row.key) this.#sorted.splice(index, 1);
      }
      return;
    }
    this.#count(row, 1);
    if (!known) {
      this.#rows.set(row.key, row);
      this.#sorted.splice(lowerBound(this.#sorted, row.key), 0, row.key);
    }
  }

  #count(row: KeyRow, sign: 1 | -1): void {
    if (row.holders.length > 0) this.#heldKeys += sign;
    this.#holders += sign * row.holders.length;
    this.#waiters += sign * row.queue.length;
  }
}

/** JavaScript's default string order: UTF-16 code units, as the server sorts keys. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The first index whose key is not less than `key`. */
function lowerBound(keys: readonly string[], key: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((keys[middle] ?? '') < key) low = middle + 1;
    else high = middle;
  }
  return low;
}

function removeFirst<T>(items: T[], match: (item: T) => boolean): void {
  const index = items.findIndex(match);
  if (index >= 0) items.splice(index, 1);
}
