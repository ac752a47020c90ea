import { retrySoon, type StoreContext } from './store-context.js';
import type { TableReader } from './table-reader.js';
import type { WatchHub } from './watch-hub.js';

/**
 * Brings this node's watchers back in step after it may have missed steps.
 * Pub/sub keeps nothing for a subscriber that is away: the broadcasts of
 * steps made while the node's pub/sub connection was broken, or while its
 * path was silent, never come, and a broadcast the sequencer gave up waiting
 * for leaves a key's watchers one step behind. The holds and requests of the
 * node's own sessions are settled by the reconciler; this does the same for
 * what its watchers were shown (`WatchHub#catchUp`).
 *
 * Requests arriving while a catch-up runs are merged into the next one. A
 * catch-up whose read fails (Redis unreachable) is tried again every 100 ms
 * while a watch covers what it was for. With no watch open nothing runs.
 */
export class WatchRepair {
  readonly #ctx: StoreContext;
  readonly #hub: WatchHub;
  readonly #reader: TableReader;
  /** Everything is to be read again (after a resubscribe or a silent path). */
  #all = false;
  /** Keys to read again (a predecessor the sequencer gave up on). */
  readonly #keys = new Set<string>();
  #running: Promise<void> | null = null;

  constructor(ctx: StoreContext, hub: WatchHub, reader: TableReader) {
    this.#ctx = ctx;
    this.#hub = hub;
    this.#reader = reader;
  }

  /** The node may have missed any step: every watched key is read again. */
  all(): void {
    if (!this.#hub.active || this.#ctx.closing) return;
    this.#all = true;
    this.#kick();
  }

  /** The node may have missed steps of `key`: it is read again if a watch here covers it. */
  key(key: string): void {
    if (!this.#hub.covers(key) || this.#ctx.closing) return;
    this.#keys.add(key);
    this.#kick();
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = this.#run().finally(() => {
      this.#running = null;
      if (this.#all || this.#keys.size > 0) this.#kick();
    });
  }

  async #run(): Promise<void> {
    const all = this.#all;
    const keys = all ? null : [...this.#keys];
    this.#all = false;
    this.#keys.clear();
    try {
      await this.#hub.catchUp(keys, (scope) => this.#reader.catchUpRead(scope), () => this.#ctx.clock.now());
    } catch (error) {
      this.#ctx.logger.warn({ err: String(error) }, 'could not read the watched keys again; retrying');
      retrySoon(this.#ctx, () => {
        if (keys) for (const key of keys) this.key(key);
        else this.all();
      });
    }
  }
}
