import type { ListResult, LockStatus } from '@lockwire/protocol';
import type { LockEvent, WatchHandle } from '../store.js';
import { advance, catchUpEvents, sameState, type KeyState, type Shown, StepOnce, stateOf } from './shown-state.js';

interface Watcher {
  readonly prefix: string;
  /** The watch's `limit`: a catch-up reads at most this many locked keys of the prefix, as the snapshot did. */
  readonly limit: number;
  readonly sink: (event: LockEvent) => void;
  /** Events heard while the snapshot is read, with their step's version (and a `queued` one's seq); null once live. */
  buffer: Heard[] | null;
  /**
   * Per key of the snapshot (or of a catch-up), the version it was read at:
   * an event at or below it is a step the read shows, even when it arrives
   * late. A key leaves once an event above it came (events of a key arrive
   * in order).
   */
  floors: Map<string, number>;
  /**
   * What this watch was shown, per key with a holder or a waiter: its
   * snapshot's states, moved on by every event handed to it (an event its
   * floors drop leaves it alone). Two watches of one node can have been
   * shown different states of a key (one snapshot read later than the
   * other, or truncated by its limit), so a catch-up starts from each
   * watch's own view.
   */
  readonly view: Map<string, KeyState>;
}

/** An event as heard: its step's version, and a `queued` event's arrival seq when the step carried it. */
interface Heard {
  event: LockEvent;
  version: number;
  seq: number | undefined;
}

/**
 * A watch's snapshot as read: the `list` answer, the version each key it
 * read was read at (listed, found free, or read past the limit), and how to
 * read more keys of the prefix for the same viewer, as the snapshot did.
 */
export interface WatchSnapshot {
  result: ListResult;
  versions: Map<string, number>;
  readKeys: (keys: string[]) => Promise<KeyRead[]>;
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

/** What a catch-up read: each key once, and per prefix of the scope the locked keys it listed, in `list` order. */
export interface CatchUpRead {
  reads: KeyRead[];
  listed: Map<string, string[]>;
}

/**
 * Takes keys read after a snapshot into it, as if its SCAN had found them:
 * each read's version joins `versions`, and a key found locked is placed
 * among the listed ones in key order; when that passes `limit`, the last
 * listed key leaves the answer and it says `truncated`. The answer stays
 * what `list` gives: the first locked keys of those read, in order.
 */
function readAlso(taken: WatchSnapshot, limit: number, reads: KeyRead[]): void {
  const locks = taken.result.locks;
  for (const { key, status, version } of reads) {
    taken.versions.set(key, version);
    if (!status.locked) continue;
    const at = locks.findIndex((listed) => listed.key > key);
    locks.splice(at < 0 ? locks.length : at, 0, status);
    if (locks.length > limit) {
      locks.pop();
      taken.result.truncated = true;
    }
  }
}

function setState(view: Map<string, KeyState>, key: string, state: Shown): void {
  if (state) view.set(key, state);
  else view.delete(key);
}

/**
 * This node's watchers. Events reach every node through pub/sub; a new watch
 * buffers them while its snapshot is read key by key, then drops the ones
 * whose step the snapshot already reflects (a key's version at or below the
 * version the snapshot read it at) and delivers the rest, so the stream has
 * no gap and no event twice for a key in the snapshot. Events of a step the
 * snapshot shows that arrive only after it was taken are dropped too.
 *
 * The snapshot reads only the keys its SCAN found locked, up to its limit,
 * while the buffer can hold events of any key under the prefix: one
 * released before the SCAN (its absence shows that step), or one past the
 * limit. So each key with buffered events that the snapshot did not read is
 * read too, before the buffer is let go, and takes part in the snapshot as
 * if the SCAN had found it: a key found locked takes its place in key order
 * (what then falls past the limit leaves the answer, which says
 * `truncated`), and every such key gets its floor. Events travel on the
 * pub/sub connection, which can lag the connection the snapshot read on,
 * so before that the watch waits for a barrier through the pub/sub
 * connection (`heard`): every event of a step Redis ran before it is then
 * in the buffer, and an event heard later is of a step after the SCAN,
 * which for a key the SCAN found free follows from its absence.
 *
 * A read runs ahead of pub/sub: a snapshot may show steps whose events are
 * still on their way to this node, and other watches here still need them.
 * So the version a snapshot read is passed on (`seed`, which lets the node
 * drop those events for good) only for keys no other watch here covers.
 *
 * Pub/sub loses what is published while a subscriber reconnects, so each
 * watch also keeps what it was shown (its view: immutable `KeyState`s,
 * shared by the watches that were shown the same steps) and, when the node
 * may have missed steps, `catchUp` reads the keys again and hands each
 * watch the events that bring it from its view to what the read shows. A
 * catch-up and a snapshot never run at once: a snapshot's view would miss
 * the catch-up's events, or the catch-up would miss the snapshot's keys.
 */
export class WatchHub {
  readonly #watchers = new Set<Watcher>();
  /** Events heard while a catch-up reads, with their step's version; null otherwise. */
  #held: Heard[] | null = null;
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
    return this.#otherCovering(key, null) !== null;
  }

  /** The first watch here other than `self` that covers `key`, or null. */
  #otherCovering(key: string, self: Watcher | null): Watcher | null {
    for (const watcher of this.#watchers) if (watcher !== self && key.startsWith(watcher.prefix)) return watcher;
    return null;
  }

  /**
   * Hands one event, from a step with event version `version`, to every
   * watcher of its key, moving each one's view of the key on. The new state
   * is made once per distinct state before it (`StepOnce`): watches that
   * agree cost one map update each. With no watch open this is one empty
   * loop. `seq`, a `queued` event's arrival seq, goes into the views only
   * (so a catch-up tells that request from one that queued again later).
   */
  dispatch(event: LockEvent, version: number, seq?: number): void {
    if (this.#held) {
      this.#held.push({ event, version, seq });
      return;
    }
    let step: StepOnce | null = null;
    for (const watcher of this.#watchers) {
      if (!event.key.startsWith(watcher.prefix)) continue;
      if (watcher.buffer) {
        watcher.buffer.push({ event, version, seq });
        continue;
      }
      if (!this.#passes(watcher, event.key, version)) continue;
      step ??= new StepOnce(event, seq);
      setState(watcher.view, event.key, step.from(watcher.view.get(event.key)));
      watcher.sink(event);
    }
  }

  /** False when the watcher's snapshot or catch-up already shows the step (version at or below its floor). */
  #passes(watcher: Watcher, key: string, version: number): boolean {
    const floor = watcher.floors.get(key);
    if (floor === undefined) return true;
    if (version <= floor) return false;
    watcher.floors.delete(key);
    return true;
  }

  /**
   * Starts a watch: `snapshot` reads the table (as `list`) and the version
   * each key it read was read at; once `heard` resolved (every event of a
   * step Redis ran before it was called has been dispatched here), the keys
   * that events heard meanwhile name and the snapshot did not read are read
   * with its `readKeys` and join it. Events from then on go to `sink`.
   * `seed` gets each read version of a key no other watch here covers:
   * events of that key at or below it concern no watch here. Rejects, and
   * the watch ends, when a read fails.
   */
  async watch(
    prefix: string,
    limit: number,
    sink: (event: LockEvent) => void,
    snapshot: () => Promise<WatchSnapshot>,
    seed: (key: string, version: number) => void = () => {},
    heard: () => Promise<void> = async () => {},
  ): Promise<WatchHandle> {
    while (this.#catchingUp) await this.#catchingUp;
    const watcher: Watcher = { prefix, limit, sink, buffer: [], floors: new Map(), view: new Map() };
    this.#watchers.add(watcher);
    this.#reading += 1;
    let taken: WatchSnapshot;
    try {
      taken = await snapshot();
      await heard();
      // Still buffering: what this read's keys hear meanwhile is sorted out by their floors.
      const unread = new Set<string>();
      for (const { event } of watcher.buffer ?? []) if (!taken.versions.has(event.key)) unread.add(event.key);
      if (unread.size > 0) readAlso(taken, limit, await taken.readKeys([...unread]));
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
      const other = this.#otherCovering(key, watcher);
      const state = stateOf(listed.get(key) ?? null);
      if (state) {
        // Another watch shown the same state lends its object: watches that agree share their states.
        const theirs = other?.view.get(key);
        watcher.view.set(key, theirs && sameState(theirs, state) ? theirs : state);
      }
      if (version <= 0) continue;
      watcher.floors.set(key, version);
      // A key another watch covers: that watch may still need events this snapshot already shows.
      if (!other) seed(key, version);
    }
    for (const { event, version, seq } of buffered) {
      if (!this.#passes(watcher, event.key, version)) continue;
      setState(watcher.view, event.key, advance(watcher.view.get(event.key), event, seq));
      watcher.sink(event);
    }
    return {
      snapshot: taken.result,
      stop: () => this.#stop(watcher),
    };
  }

  /** Ends a watch; its view goes with it, and nothing is kept once no watch is open. */
  #stop(watcher: Watcher): void {
    this.#watchers.delete(watcher);
  }

  /**
   * Brings every watcher of the keys in scope to what `read` shows now.
   * With `keys`, those keys are read and every watch covering one is caught
   * up on it. With `null`, every key in a watch's view and the locked keys
   * under each watched prefix (up to its largest limit) are read, and a
   * watch is caught up on the keys of its view and on those its own
   * snapshot would list now (its prefix, up to its limit). A watch whose
   * floor for a key is at or above the read version already shows it;
   * another gets the events `catchUpEvents` makes from its view, stamped
   * `now()`. Events heard meanwhile wait and follow; those of steps the
   * read shows, now or arriving later, are dropped as for a snapshot.
   * Rejects when the read fails; what was held is then delivered as usual.
   */
  async catchUp(keys: string[] | null, read: (scope: CatchUpScope) => Promise<CatchUpRead>, now: () => number): Promise<void> {
    while (this.#catchingUp) await this.#catchingUp;
    if (this.#watchers.size === 0) return;
    let finished: () => void = () => {};
    this.#catchingUp = new Promise<void>((resolve) => (finished = resolve));
    try {
      while (this.#reading > 0) await new Promise<void>((resolve) => this.#readsDone.push(resolve));
      const scope = this.#scope(keys);
      if (scope.keys.length === 0 && scope.prefixes.size === 0) return;
      this.#held = [];
      const { reads, listed } = await read(scope);
      const at = now();
      const lists = new Map<Watcher, Set<string>>();
      const listing = (watcher: Watcher) => {
        let list = lists.get(watcher);
        if (!list) lists.set(watcher, (list = new Set((listed.get(watcher.prefix) ?? []).slice(0, watcher.limit))));
        return list;
      };
      for (const keyRead of reads) this.#show(keyRead, at, keys ? null : listing);
    } finally {
      const held = this.#held ?? [];
      this.#held = null;
      this.#catchingUp = null;
      finished();
      for (const { event, version, seq } of held) this.dispatch(event, version, seq);
    }
  }

  #scope(keys: string[] | null): CatchUpScope {
    if (keys) return { keys: keys.filter((key) => this.covers(key)), prefixes: new Map() };
    const prefixes = new Map<string, number>();
    const shown = new Set<string>();
    for (const watcher of this.#watchers) {
      prefixes.set(watcher.prefix, Math.max(prefixes.get(watcher.prefix) ?? 0, watcher.limit));
      for (const key of watcher.view.keys()) shown.add(key);
    }
    return { keys: [...shown], prefixes };
  }

  /**
   * Hands each watcher of `key` the events from its view to `status`, read
   * at `version`. With `listing`, a key a watch was shown nothing of is left
   * to it unless its own snapshot would list it now: a key past its limit
   * is caught up only if it was shown something of it. The events are made
   * once per distinct view, so watches that agree get the same objects, and
   * events that read alike are one object whatever view they came from.
   */
  #show({ key, status, version }: KeyRead, at: number, listing: ((watcher: Watcher) => Set<string>) | null): void {
    const state = stateOf(status);
    const told = new Map<Shown, LockEvent[]>();
    // Views that differ can still need an event that reads the same (the same holder
    // acquired, with the same counts); one object for it lets a session with two such
    // watches send it once, as it does a live event.
    const alike = new Map<string, LockEvent>();
    const shared = (event: LockEvent) => {
      const said = JSON.stringify([event.event, event.session, event.token ?? null, event.mode, event.meta, event.holders, event.waiters]);
      const first = alike.get(said);
      if (first) return first;
      alike.set(said, event);
      return event;
    };
    for (const watcher of this.#watchers) {
      if (!key.startsWith(watcher.prefix)) continue;
      const shown = watcher.view.get(key);
      if (listing && shown === undefined && !listing(watcher).has(key)) continue;
      // A watch whose snapshot read the key at or after `version` already shows it.
      const floor = watcher.floors.get(key);
      if (floor !== undefined && version <= floor) continue;
      let events = told.get(shown);
      if (!events) told.set(shown, (events = catchUpEvents(key, shown, state, at).map(shared)));
      setState(watcher.view, key, state);
      if (version > 0) watcher.floors.set(key, version);
      for (const event of events) watcher.sink(event);
    }
  }

  /** Ends every watch. */
  clear(): void {
    this.#watchers.clear();
  }
}
