import { ErrorCode, type ListResult, type LockStatus } from '@lockwire/protocol';
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
export type TableSnapshot = WatchSnapshot;

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
   * `list` plus the version each listed key was read at (for a gap-free
   * watch). It does not move the key's order on: steps the read shows may
   * still be on their way over pub/sub, and live watches need their events.
   */
  async snapshot(prefix: string, limit: number, viewer: SessionId | null): Promise<TableSnapshot> {
    const keys = await this.lockedKeys(prefix);
    const read = await Promise.all(keys.slice(0, limit).map((key) => this.readStatus(key, viewer)));
    const versions = new Map<string, number>();
    const locks: LockStatus[] = [];
    for (const { status, version } of read) {
      versions.set(status.key, version);
      if (status.locked) locks.push(status);
    }
    const readKeys = (more: string[]) => Promise.all(more.map((key) => this.#read(key, viewer)));
    return { result: { locks, truncated: keys.length > limit }, versions, readKeys };
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
    const keys = new Set(scope.keys);
    const listed = new Map<string, string[]>();
    for (const [prefix, limit] of scope.prefixes) {
      const locked = (await this.lockedKeys(prefix)).slice(0, limit);
      listed.set(prefix, locked);
      for (const key of locked) keys.add(key);
    }
    const reads = await Promise.all([...keys].map((key) => this.#read(key, null)));
    return { reads, listed };
  }
}
