import { ErrorCode, type LockStatus } from '@lockwire/protocol';
import { LockError } from '../errors.js';
import type { SessionId } from '../store.js';
import { decodeKey, encodeKey } from './key-codec.js';
import { arr, parseJson, parseStatus } from './records.js';
import { scripts } from './scripts.js';
import { live, type StoreContext } from './store-context.js';
import type { CatchUpRead, CatchUpScope, KeyRead, WatchSnapshot } from './watch-hub.js';

/**
 * A `list`, the version each key it read was read at, and how to read more
 * keys for the same viewer (a watch reads the keys its buffered events name
 * that the list did not read).
 */
export interface TableSnapshot extends WatchSnapshot {
  /**
   * Every key the list read, with what the read found, in read order: the
   * listed keys, and those found free or locked past the limit (a `list`
   * checks the viewer's holds among them, see `ReadFence#listed`).
   */
  reads: KeyRead[];
}

/**
 * Reads the shared table for `status`, `list` and the snapshot of a `watch`.
 * Reads change nothing and move no key's order on.
 */
export class TableReader {
  readonly #ctx: StoreContext;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
  }

  /** One key's status as `viewer` sees it, and the key's version at the read. */
  async readStatus(key: string, viewer: SessionId | null): Promise<{ status: LockStatus; version: number }> {
    const ctx = this.#ctx;
    const link = ctx.link;
    if (!link) throw new LockError(ErrorCode.StoreUnavailable, 'the Redis store is not started');
    try {
      const reply = await link.evalScript(scripts.status, ctx.names.lockKeys(encodeKey(key)), ['', '', '0', '', ctx.namespace]);
      return parseStatus(key, parseJson(reply), viewer);
    } catch (error) {
      throw new LockError(ErrorCode.StoreUnavailable, `${live(ctx).reason}: ${String(error)}`);
    }
  }

  /**
   * `list` plus the version each key it read was read at (for a gap-free
   * watch). The keys the SCAN found are read in key order, in rounds, until
   * `limit` are found locked and one more, which makes it `truncated`, or
   * none is left: a key released between the SCAN and its read is left out
   * and the next takes its place. Unless keys were released meanwhile this
   * is one round of `min(found, limit + 1)` status reads. It does not move
   * the key's order on: steps the read shows may still be on their way over
   * pub/sub, and live watches need their events.
   */
  async snapshot(prefix: string, limit: number, viewer: SessionId | null): Promise<TableSnapshot> {
    const read = (key: string) => this.#read(key, viewer);
    // One locked key past the limit tells `truncated`; a key the SCAN found may be free by its read.
    const { reads, locked } = await firstLocked(await this.lockedKeys(prefix), limit + 1, read);
    const versions = new Map(reads.map((r) => [r.key, r.version]));
    const locks: LockStatus[] = locked.slice(0, limit).map((r) => r.status);
    const readKeys = (more: string[]) => Promise.all(more.map(read));
    return { result: { locks, truncated: locked.length > limit }, versions, readKeys, reads };
  }

  async #read(key: string, viewer: SessionId | null): Promise<KeyRead> {
    const { status, version } = await this.readStatus(key, viewer);
    return { key, status, version };
  }

  /** The keys starting with `prefix` that have a holder (a SCAN of every shard), in `list` order. */
  async lockedKeys(prefix: string): Promise<string[]> {
    const ctx = this.#ctx;
    const link = ctx.link;
    if (!link) throw new LockError(ErrorCode.StoreUnavailable, 'the Redis store is not started');
    const found = new Set<string>();
    try {
      for (const shard of await link.shards()) {
        let cursor = '0';
        do {
          const reply = arr(await shard.command(['SCAN', cursor, 'MATCH', ctx.names.holderPattern(prefix), 'COUNT', '1000']));
          cursor = String(reply[0] ?? '0');
          for (const name of arr(reply[1])) {
            const encoded = ctx.names.encodedOfHolders(String(name));
            if (encoded !== null) found.add(decodeKey(encoded));
          }
        } while (cursor !== '0');
      }
    } catch (error) {
      throw new LockError(ErrorCode.StoreUnavailable, `${live(ctx).reason}: ${String(error)}`);
    }
    return [...found].sort();
  }

  /**
   * What a watch catch-up reads: `keys`, and the locked keys of each prefix
   * up to its limit (as a snapshot of that prefix would list them, and
   * reported per prefix), each once, with no viewer, and each with its
   * version at the read.
   */
  async catchUpRead(scope: CatchUpScope): Promise<CatchUpRead> {
    // One read per key, shared by the keys asked for and every prefix that finds it.
    const reads = new Map<string, Promise<KeyRead>>();
    const read = (key: string) => {
      let pending = reads.get(key);
      if (!pending) reads.set(key, (pending = this.#read(key, null)));
      return pending;
    };
    const prefixes = [...scope.prefixes];
    const listing = prefixes.map(async ([prefix, limit]) => (await firstLocked(await this.lockedKeys(prefix), limit, read)).locked);
    // The keys asked for are read alongside the SCANs.
    const [found] = await Promise.all([Promise.all(listing), Promise.all(scope.keys.map(read))]);
    const listed = new Map(prefixes.map(([prefix], i) => [prefix, (found[i] ?? []).map((r) => r.key)]));
    return { reads: await Promise.all(reads.values()), listed };
  }
}

/**
 * Reads `keys` (in `list` order) in rounds until `wanted` of them are found
 * locked or none is left: a key found by the SCAN may have been released by
 * its read, and the next one takes its place. Each round reads as many keys
 * at once as are still wanted, so when none was released this is one round
 * of `min(keys, wanted)` reads. Returns every read, and the locked ones in
 * order.
 */
async function firstLocked(keys: string[], wanted: number, read: (key: string) => Promise<KeyRead>): Promise<{ reads: KeyRead[]; locked: KeyRead[] }> {
  const reads: KeyRead[] = [];
  const locked: KeyRead[] = [];
  let next = 0;
  while (locked.length < wanted && next < keys.length) {
    const round = keys.slice(next, next + wanted - locked.length);
    next += round.length;
    for (const r of await Promise.all(round.map(read))) {
      reads.push(r);
      if (r.status.locked) locked.push(r);
    }
  }
  return { reads, locked };
}
