import type { ListResult } from '@lockwire/protocol';
import type { LockEvent, WatchHandle } from '../store.js';

interface Watcher {
  readonly prefix: string;
  readonly sink: (event: LockEvent) => void;
  /** Events heard while the snapshot is read, with their step's version; null once live. */
  buffer: Array<{ event: LockEvent; version: number }> | null;
  /**
   * Per key of the snapshot, the version it was read at: an event at or
   * below it is a step the snapshot shows, even when it arrives late. A key
   * leaves once an event above it came (events of a key arrive in order).
   */
  floors: Map<string, number>;
}

/**
 * This node's watchers. Events reach every node through pub/sub; a new watch
 * buffers them while its snapshot is read key by key, then drops the ones
 * whose step the snapshot already reflects (a key's version at or below the
 * version the snapshot read it at) and delivers the rest, so the stream has
 * no gap and no event twice for a key in the snapshot. Events of a step the
 * snapshot shows that arrive only after it was taken are dropped too.
 *
 * A read runs ahead of pub/sub: a snapshot may show steps whose events are
 * still on their way to this node, and other watches here still need them.
 * So the version a snapshot read is passed on (`seed`, which lets the node
 * drop those events for good) only for keys no other watch here covers.
 */
export class WatchHub {
  readonly #watchers = new Set<Watcher>();

  /** True when some watch is open here (events are worth delivering). */
  get active(): boolean {
    return this.#watchers.size > 0;
  }

  /** True when some watch here covers `key`. */
  covers(key: string): boolean {
    return this.#coveredBesides(key, null);
  }

  /** True when a watch here other than `self` covers `key`. */
  #coveredBesides(key: string, self: Watcher | null): boolean {
    for (const watcher of this.#watchers) if (watcher !== self && key.startsWith(watcher.prefix)) return true;
    return false;
  }

  /** Hands one event, from a step with event version `version`, to every watcher of its key. */
  dispatch(event: LockEvent, version: number): void {
    for (const watcher of this.#watchers) {
      if (!event.key.startsWith(watcher.prefix)) continue;
      if (watcher.buffer) watcher.buffer.push({ event, version });
      else this.#toWatcher(watcher, event, version);
    }
  }

  /** Streams an event unless the watcher's snapshot already shows its step. */
  #toWatcher(watcher: Watcher, event: LockEvent, version: number): void {
    const floor = watcher.floors.get(event.key);
    if (floor !== undefined) {
      if (version <= floor) return;
      watcher.floors.delete(event.key);
    }
    watcher.sink(event);
  }

  /**
   * Starts a watch: `snapshot` reads the table (as `list`) and the version
   * each listed key was read at; events from then on go to `sink`. `seed`
   * gets each read version of a key no other watch here covers: events of
   * that key at or below it concern no watch here.
   */
  async watch(
    prefix: string,
    sink: (event: LockEvent) => void,
    snapshot: () => Promise<{ result: ListResult; versions: Map<string, number> }>,
    seed: (key: string, version: number) => void = () => {},
  ): Promise<WatchHandle> {
    const watcher: Watcher = { prefix, sink, buffer: [], floors: new Map() };
    this.#watchers.add(watcher);
    let taken: { result: ListResult; versions: Map<string, number> };
    try {
      taken = await snapshot();
    } catch (error) {
      this.#watchers.delete(watcher);
      throw error;
    }
    const buffered = watcher.buffer ?? [];
    watcher.buffer = null;
    for (const [key, version] of taken.versions) {
      if (version <= 0) continue;
      watcher.floors.set(key, version);
      if (!this.#coveredBesides(key, watcher)) seed(key, version);
    }
    for (const { event, version } of buffered) this.#toWatcher(watcher, event, version);
    return {
      snapshot: taken.result,
      stop: () => {
        this.#watchers.delete(watcher);
      },
    };
  }

  /** Ends every watch. */
  clear(): void {
    this.#watchers.clear();
  }
}
