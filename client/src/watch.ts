import { DEFAULT_LIST_LIMIT, type EventMessage, type ListResult, type LockStatus } from '@lockwire/protocol';
import { invokeSafely } from './emitter.js';

/** A state change under a watched prefix, as the server pushed it. */
export type LockEvent = Omit<EventMessage, 'type'>;

/** One `watch()` call's interest in a prefix. */
export interface WatchSubscription {
  readonly prefix: string;
  readonly limit: number | undefined;
  readonly onEvent: (event: LockEvent) => void;
  readonly onResync: ((snapshot: ListResult) => void) | undefined;
  /** False until the watch reply (and its snapshot) was handled; earlier events predate the snapshot. */
  live: boolean;
  /** The latest snapshot: the first one, then each resync's. */
  snapshot: ListResult;
  readonly controller: AbortController;
}

/**
 * Every watch of one client, by prefix. The server keeps one watch per
 * prefix per session, so the registry says when the first subscription of a
 * prefix starts and when the last one ends.
 */
export class WatchRegistry {
  readonly #byPrefix = new Map<string, Set<WatchSubscription>>();
  /** Set once the client starts to close for good: no event or resync reaches any watch after that. */
  #silenced = false;

  /** Adds a subscription; true when it is the first for its prefix. */
  add(subscription: WatchSubscription): boolean {
    let set = this.#byPrefix.get(subscription.prefix);
    const first = !set;
    if (!set) {
      set = new Set();
      this.#byPrefix.set(subscription.prefix, set);
    }
    set.add(subscription);
    return first;
  }

  /** Removes a subscription; true when it was the last of its prefix. */
  remove(subscription: WatchSubscription): boolean {
    const set = this.#byPrefix.get(subscription.prefix);
    if (!set?.delete(subscription)) return false;
    subscription.live = false;
    if (set.size > 0) return false;
    this.#byPrefix.delete(subscription.prefix);
    return true;
  }

  /**
   * Hands one event to every watch whose prefix the key starts with. The
   * server sends each event once per session, however many of the session's
   * prefixes it matches, so overlapping watches (`doc:` and `doc:4`) share
   * that one frame.
   */
  dispatch(message: EventMessage): void {
    const { type: _type, ...event } = message;
    for (const [prefix, set] of [...this.#byPrefix]) {
      if (!event.key.startsWith(prefix)) continue;
      // A watch whose reply (and snapshot) is still on its way already counts this event in its snapshot.
      // An earlier callback may have closed a watch, or the client, while this event is being handed out:
      // a watch no longer registered, or a client closing, gets no more of it.
      for (const subscription of [...set]) {
        if (this.#silenced || !subscription.live || !this.#registered(subscription)) continue;
        invokeSafely(subscription.onEvent, event);
      }
    }
  }

  /**
   * The client starts to close for good: from now on no watch gets an event
   * or a resync, also before `endAll` (once the socket closed) aborts their
   * signals.
   */
  silenceAll(): void {
    this.#silenced = true;
    this.suspend();
  }

  /** The connection dropped: events stop until each prefix is watched again. */
  suspend(): void {
    for (const set of this.#byPrefix.values()) for (const subscription of set) subscription.live = false;
  }

  /**
   * Each watched prefix with the largest `limit` any of its watches asked
   * for (`undefined`: all use the default). The one re-watch of a prefix
   * serves all its watches; {@link resync} cuts its snapshot to each one's.
   */
  prefixes(): Map<string, number | undefined> {
    const result = new Map<string, number | undefined>();
    for (const [prefix, set] of this.#byPrefix) {
      const limits = [...set].map((subscription) => subscription.limit);
      // A watch without a limit gets the server's default, which another watch's larger limit must not cut.
      const all = limits.every((limit) => limit === undefined);
      result.set(prefix, all ? undefined : Math.max(...limits.map((limit) => limit ?? DEFAULT_LIST_LIMIT)));
    }
    return result;
  }

  /**
   * The prefix is watched again after a reconnect: its watches take the
   * fresh snapshot and hear events again. Runs while the reply is handled,
   * before any later event. The snapshot answered the largest limit of the
   * prefix's watches: each watch gets its first keys (in key order, as the
   * server sent them) up to its own limit, `truncated` when any were left
   * out here or by the server.
   */
  resync(prefix: string, snapshot: ListResult): void {
    for (const subscription of [...(this.#byPrefix.get(prefix) ?? [])]) {
      // An earlier `onResync` may have closed this watch, or the client.
      if (this.#silenced || !this.#registered(subscription)) continue;
      const own = withinLimit(snapshot, subscription.limit ?? DEFAULT_LIST_LIMIT);
      subscription.snapshot = own;
      subscription.live = true;
      if (subscription.onResync) invokeSafely(subscription.onResync, own);
    }
  }

  /** Watching the prefix again failed: its watches end with `reason`. */
  fail(prefix: string, reason: unknown): void {
    const set = this.#byPrefix.get(prefix);
    this.#byPrefix.delete(prefix);
    for (const subscription of set ?? []) subscription.live = false;
    for (const subscription of set ?? []) subscription.controller.abort(reason);
  }

  /** Ends every subscription (the connection closed): each watch's signal aborts with `reason`. */
  endAll(reason: unknown): void {
    const all = [...this.#byPrefix.values()].flatMap((set) => [...set]);
    this.#byPrefix.clear();
    this.#silenced = true;
    for (const subscription of all) subscription.live = false;
    for (const subscription of all) subscription.controller.abort(reason);
  }

  /** True while `subscription` is one of the registry's (not closed, failed or ended). */
  #registered(subscription: WatchSubscription): boolean {
    return this.#byPrefix.get(subscription.prefix)?.has(subscription) === true;
  }
}

/** The first `limit` locks of `snapshot`, truncated when it was or when locks were left out. */
function withinLimit(snapshot: ListResult, limit: number): ListResult {
  if (snapshot.locks.length <= limit) return snapshot;
  return { locks: snapshot.locks.slice(0, limit), truncated: true };
}

/**
 * A stream of lock events under a prefix, from `client.watch()`.
 * `snapshot` is the state of the locked keys taken in the same step that
 * started the stream, so no event falls between the two.
 */
export class Watch {
  readonly prefix: string;
  readonly #subscription: WatchSubscription;
  readonly #controller: AbortController;
  readonly #stop: () => Promise<void>;
  #closing: Promise<void> | undefined;

  /** Watches are created by `LockClient.watch()`. */
  constructor(subscription: WatchSubscription, stop: () => Promise<void>) {
    this.prefix = subscription.prefix;
    this.#subscription = subscription;
    this.#controller = subscription.controller;
    this.#stop = stop;
  }

  /**
   * Locked keys under the prefix, in key order: when the watch started, then
   * as of the latest resync after a reconnect.
   */
  get snapshot(): { locks: LockStatus[]; truncated: boolean } {
    return this.#subscription.snapshot;
  }

  /**
   * Aborts when the watch ends: `close()`, the client closing for good, or a
   * failed re-watch after a reconnect (reason: the error). A dropped
   * connection that reconnects does not end it.
   */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Stops delivering events at once; sends `unwatch` when no other watch of
   * this client uses the prefix. Resolves once that unwatch was answered,
   * also when the server refused it (`rate_limited`, `store_unavailable`,
   * ...): the client then sends it again with backoff until it is accepted,
   * the prefix is watched again, or the connection ends. Never rejects.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#stop();
    return this.#closing;
  }

  /** Closes the watch (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
