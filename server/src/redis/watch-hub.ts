import type { ListResult, LockStatus } from '@lockwire/protocol';
import type { LockEvent, WatchHandle } from '../store.js';
import { WatchMirror } from './watch-mirror.js';

interface Watcher {
  readonly prefix: string;
  /** The watch's `limit`: a catch-up reads at most this many locked keys of the prefix, as the snapshot did. */
  readonly limit: number;
  readonly sink: (event: LockEvent) => void;
  /** Events heard while the snapshot is read, with their step's version; null once live. */
  buffer: Array<{ event: LockEvent; version: number }> | null;
  /**
   * Per key of the snapshot (or of a catch-up), the version it was read at:
   * an event at or below it is a step the read shows, even when it arrives
   * late. A key leaves once an event above it came (events of a key arrive
   * in order).
   */
  floors: Map<string, number>;
}

/** What a catch-up reads: these keys, and the locked keys of each prefix up to its limit, as a snapshot lists them. */
export interface CatchUpScope {
  keys: string[];
  prefixes: Map<string, number>;
}

/** One key as a catch-up read it, with the key's version at the read. */
export interface KeyRead {
  key: string;
  status: LockStatus;
  version: number;
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
 *
 * Pub/sub loses what is published while a subscriber reconnects, so the hub
 * also keeps what its watchers were shown (`WatchMirror`: fed by the
 * snapshots and by every event a watcher was handed) and, when the node may
 * have missed steps, `catchUp` reads the keys again and hands the watchers
 * the events that bring them to what the read shows. A catch-up and a
 * snapshot never run at once: both compare a read with what watchers were
 * shown, and each would move that on under the other.
 */
export class WatchHub {
  readonly #watchers = new Set<Watcher>();
  readonly #mirror = new WatchMirror();
  /** Events heard while a catch-up reads, with their step's version; null otherwise. */
  #held: Array<{ event: LockEvent; version: number }> | null = null;
  /** Set while a catch-up runs; a new watch waits for it. */
  #catchingUp: Promise<void> | null = null;
  /** Snapshots being read, and what waits for none to be. */
  #reading = 0;
  #readsDone: Array<() => void> = [];

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

  /**
   * Hands one event, from a step with event version `version`, to every
   * watcher of its key. The mirror moves on once per event a watcher was
   * handed (one map lookup); an event every watcher dropped as already shown
   * leaves it alone. With no watch open this is one empty loop.
   */
  dispatch(event: LockEvent, version: number): void {
    if (this.#held) {
      this.#held.push({ event, version });
      return;
    }
    let shown = false;
    for (const watcher of this.#watchers) {
      if (!event.key.startsWith(watcher.prefix)) continue;
      if (watcher.buffer) watcher.buffer.push({ event, version });
      else if (this.#toWatcher(watcher, event, version)) shown = true;
    }
    if (shown) this.#mirror.apply(event);
  }

  /** Streams an event unless the watcher's snapshot already shows its step; true when streamed. */
  #toWatcher(watcher: Watcher, event: LockEvent, version: number): boolean {
    const floor = watcher.floors.get(event.key);
    if (floor !== undefined) {
      if (version <= floor) return false;
      watcher.floors.delete(event.key);
    }
    watcher.sink(event);
    return true;
  }

  /**
   * Starts a watch: `snapshot` reads the table (as `list`) and the version
   * each listed key was read at; events from then on go to `sink`. `seed`
   * gets each read version of a key no other watch here covers: events of
   * that key at or below it concern no watch here.
   */
  async watch(
    prefix: string,
    limit: number,
    sink: (event: LockEvent) => void,
    snapshot: () => Promise<{ result: ListResult; versions: Map<string, number> }>,
    seed: (key: string, version: number) => void = () => {},
  ): Promise<WatchHandle> {
    while (this.#catchingUp) await this.#catchingUp;
    const watcher: Watcher = { prefix, limit, sink, buffer: [], floors: new Map() };
    this.#watchers.add(watcher);
    this.#reading += 1;
    let taken: { result: ListResult; versions: Map<string, number> };
    try {
      taken = await snapshot();
    } catch (error) {
      this.#stop(watcher);
      throw error;
    } finally {
      this.#reading -= 1;
      if (this.#reading === 0) for (const done of this.#readsDone.splice(0)) done();
    }
    const buffered = watcher.buffer ?? [];
    watcher.buffer = null;
    const listed = new Map(taken.result.locks.map((status) => [status.key, status]));
    for (const [key, version] of taken.versions) {
      // A key another watch covers shows what that watch was handed; this one's snapshot may be ahead of it.
      const alone = !this.#coveredBesides(key, watcher);
      if (alone) this.#mirror.learn(key, listed.get(key) ?? null);
      if (version <= 0) continue;
      watcher.floors.set(key, version);
      if (alone) seed(key, version);
    }
    for (const { event, version } of buffered) {
      if (this.#toWatcher(watcher, event, version) && !this.#coveredBesides(event.key, watcher)) this.#mirror.apply(event);
    }
    return {
      snapshot: taken.result,
      stop: () => this.#stop(watcher),
    };
  }

  #stop(watcher: Watcher): void {
    if (!this.#watchers.delete(watcher)) return;
    // Nothing is kept without a watch; keys only this one covered are forgotten.
    if (this.#watchers.size === 0) this.#mirror.clear();
    else this.#mirror.prune((key) => this.covers(key));
  }

  /**
   * Brings every watcher of the keys in scope to what `read` shows now:
   * `keys` (the given ones, or with `null` every key shown to a watcher and
   * the locked keys under each watched prefix) are read, and each key whose
   * state differs from what its watchers were shown gets the events
   * `WatchMirror#catchUp` makes, stamped `now()`. Events heard meanwhile
   * wait and follow; those of steps the read shows, now or arriving later,
   * are dropped as for a snapshot. Rejects when the read fails; what was
   * held is then delivered as usual.
   */
  async catchUp(keys: string[] | null, read: (scope: CatchUpScope) => Promise<KeyRead[]>, now: () => number): Promise<void> {
    while (this.#catchingUp) await this.#catchingUp;
    if (this.#watchers.size === 0) return;
    let finished: () => void = () => {};
    this.#catchingUp = new Promise<void>((resolve) => (finished = resolve));
    try {
      while (this.#reading > 0) await new Promise<void>((resolve) => this.#readsDone.push(resolve));
      const scope = this.#scope(keys);
      if (scope.keys.length === 0 && scope.prefixes.size === 0) return;
      this.#held = [];
      const reads = await read(scope);
      const at = now();
      for (const { key, status, version } of reads) this.#show(key, status, version, at);
    } finally {
      const held = this.#held ?? [];
      this.#held = null;
      this.#catchingUp = null;
      finished();
      for (const { event, version } of held) this.dispatch(event, version);
    }
  }

  #scope(keys: string[] | null): CatchUpScope {
    if (keys) return { keys: keys.filter((key) => this.covers(key)), prefixes: new Map() };
    const prefixes = new Map<string, number>();
    for (const watcher of this.#watchers) prefixes.set(watcher.prefix, Math.max(prefixes.get(watcher.prefix) ?? 0, watcher.limit));
    return { keys: [...this.#mirror.keys()].filter((key) => this.covers(key)), prefixes };
  }

  /** Hands the watchers of `key` the events that bring them to `status`, read at `version`. */
  #show(key: string, status: LockStatus, version: number, at: number): void {
    if (!this.covers(key)) return;
    const events = this.#mirror.catchUp(key, status, at);
    for (const watcher of this.#watchers) {
      if (!key.startsWith(watcher.prefix)) continue;
      // A watcher whose snapshot read the key at or after `version` already shows it.
      for (const event of events) this.#toWatcher(watcher, event, version);
      if (version > 0 && (watcher.floors.get(key) ?? 0) < version) watcher.floors.set(key, version);
    }
  }

  /** Ends every watch. */
  clear(): void {
    this.#watchers.clear();
    this.#mirror.clear();
  }
}
