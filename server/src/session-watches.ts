import { DEFAULT_LIST_LIMIT, type RequestOf } from '@lockwire/protocol';
import { LockError, toWireError } from './errors.js';
import { watchSnapshot, watchStoreLimit } from './permissions.js';
import type { SessionHost } from './session-host.js';
import type { SessionGuard } from './session-guard.js';
import type { PendingRequest, SessionRequests } from './session-requests.js';
import type { SessionSender } from './session-sender.js';
import type { LockEvent, SessionId, WatchHandle } from './store.js';

interface Watch {
  readonly prefix: string;
  /** The number of watches the session started before this one. */
  readonly number: number;
  handle: WatchHandle | null;
  stopped: boolean;
  /**
   * The watch of the same prefix this one replaces, still running until
   * this one's snapshot is out; stopping this watch stops it too.
   */
  previous: Watch | null;
  /** False until the snapshot reply went out: events it must see are held back until then. */
  live: boolean;
  /** The watch of the prefix sent before this one, until its reply is out: this one's reply follows it. */
  after: Watch | null;
  /** True once its reply (snapshot or error) went out, or never will (the session died). */
  answered: boolean;
  /** The reply of the watch sent next of the prefix, waiting for this one's. */
  nextReply: (() => void) | null;
}

/** An event held back because a watch that must see it after its snapshot is not live yet. */
interface HeldEvent {
  readonly event: LockEvent;
  /** The watches whose store streams delivered it: it is after their snapshots. */
  readonly receivedBy: Set<Watch>;
  /**
   * The number of watches the session had started when the event came. A
   * watch started later reads its snapshot after the event's step, so the
   * snapshot shows it: the event does not wait for that watch's reply.
   */
  readonly watchesBefore: number;
}

/** A `ping` waiting for the events held when it asked. */
interface HeldWaiter {
  readonly held: readonly HeldEvent[];
  /** How many of `held`, from the front, went out. */
  out: number;
  readonly done: () => void;
}

/**
 * Marks an event this session is done with: sent, or dropped because the
 * session no longer watches its key.
 */
const GONE = true;

/** What a session's watches are given by their session. */
export interface SessionWatchesOptions {
  readonly session: SessionId;
  readonly host: Pick<SessionHost, 'store' | 'encodeEvent' | 'logger'>;
  /** Filters the snapshots and events to what the session may see. */
  readonly guard: SessionGuard;
  readonly requests: SessionRequests;
  readonly sender: SessionSender;
  /** Whether the session is still alive: events that arrive after it died are dropped. */
  readonly alive: () => boolean;
}

/**
 * The watches of one session, by prefix: `watch` (a snapshot reply, then
 * the events after it), `unwatch`, and the delivery of the store's events,
 * each sent once per session and never before the snapshot of a watch
 * that must see it.
 */
export class SessionWatches {
  private readonly watches = new Map<string, Watch>();
  /** The last watch sent of each prefix, until its reply is out: a later one's reply follows it. */
  private readonly unanswered = new Map<string, Watch>();
  /**
   * Events this session has seen, by identity: a store hands the same event
   * object to every matching watch, and the session sends it once however
   * many of its prefixes match.
   */
  private readonly seenEvents = new WeakMap<LockEvent, HeldEvent | typeof GONE>();
  /** Events waiting, in order, for watches still taking their snapshots. */
  private heldEvents: HeldEvent[] = [];
  /** Watches started so far, which numbers them. */
  private started = 0;
  private heldWaiters: HeldWaiter[] = [];

  constructor(private readonly options: SessionWatchesOptions) {}

  /** The watches by prefix, for the limit on watches per session. */
  get byPrefix(): ReadonlyMap<string, unknown> {
    return this.watches;
  }

  /**
   * Runs a `watch`: the snapshot is the reply, and the prefix's events follow
   * it. Replies to watches of one prefix go out in the order they were sent.
   */
  watch(message: RequestOf<'watch'>): void {
    const { host, guard, requests, session } = this.options;
    const prefix = message.prefix ?? '';
    const limit = message.limit ?? DEFAULT_LIST_LIMIT;
    // Watching a prefix again is the same watch with a fresh snapshot: the
    // new stream starts the way a first one does (so its snapshot is
    // gap-free), and the old stream stops once the snapshot is out. Events
    // both streams deliver are sent once.
    const previous = this.watches.get(prefix) ?? null;
    const watch: Watch = {
      prefix, number: this.started++, handle: null, stopped: false, previous, live: false,
      after: this.unanswered.get(prefix) ?? null, answered: false, nextReply: null,
    };
    this.watches.set(prefix, watch);
    this.unanswered.set(prefix, watch);
    requests.run(message, async (request) => {
      try {
        const storeLimit = watchStoreLimit(guard.permissions, prefix, limit);
        watch.handle = await host.store.watch(prefix, storeLimit, session, (event) => this.deliver(watch, event));
      } catch (error) {
        this.dropFailed(watch);
        this.flushHeldEvents(null);
        this.inTurn(watch, () => this.replyFailed(watch, request, error));
        return null;
      }
      if (watch.stopped) watch.handle.stop();
      this.inTurn(watch, () => this.replySnapshot(watch, request, limit));
      return null;
    });
  }

  /**
   * Runs `reply` once the watch of the prefix sent before `watch` has its
   * reply out, so replies to watches of one prefix go out in request order.
   * A client applies them in the order they arrive, each snapshot as the
   * state from then on: an older snapshot after a newer one would leave it
   * on stale state. So a later watch whose store call answers first waits,
   * its stream's events held, while the streams it replaces go on: each
   * reply is followed by the events after its own snapshot, and the last
   * reply by its stream's. The earlier watch does not answer with the later
   * snapshot instead (which would spare the wait): that snapshot is cut at
   * the later request's `limit`, not the one the earlier watch asked for,
   * and the client hands each reply to the watch that asked for it. The
   * wait is the store calls of the earlier watches, each bounded.
   */
  private inTurn(watch: Watch, reply: () => void): void {
    const earlier = watch.after;
    watch.after = null;
    if (earlier && !earlier.answered) earlier.nextReply = reply;
    else reply();
  }

  /** Answers a watch whose store call answered, and lets it go live unless stopped. */
  private replySnapshot(watch: Watch, request: PendingRequest, limit: number): void {
    const { guard, requests, sender } = this.options;
    const handle = watch.handle;
    // What it replaces now: a watch between them that failed went out of the chain.
    if (watch.previous) stopWatch(watch.previous);
    watch.previous = null;
    if (handle && requests.isCurrent(request)) {
      // Held events this watch's stream did not deliver are in its snapshot:
      // they go before the reply, the ones it delivered after it.
      this.flushHeldEvents(watch);
      requests.finish(request);
      sender.reply(request.id, watchSnapshot(guard.permissions, handle.snapshot, limit));
      // An `unwatch` that came meanwhile stopped it: answered, it streams nothing.
      watch.live = !watch.stopped;
      this.flushHeldEvents(null);
    }
    this.answered(watch);
  }

  /** Answers a watch whose store call failed with its error. */
  private replyFailed(watch: Watch, request: PendingRequest, error: unknown): void {
    const { host, requests, sender, session } = this.options;
    if (requests.isCurrent(request)) {
      requests.finish(request);
      if (!(error instanceof LockError)) host.logger.error({ err: error, session, id: request.id }, 'request failed');
      sender.replyError(request.id, toWireError(error), 'watch');
    }
    this.answered(watch);
  }

  /** The watch's reply is out: the next watch of its prefix may answer. */
  private answered(watch: Watch): void {
    watch.answered = true;
    if (this.unanswered.get(watch.prefix) === watch) this.unanswered.delete(watch.prefix);
    const next = watch.nextReply;
    watch.nextReply = null;
    next?.();
  }

  /**
   * Runs an `unwatch`: the prefix's stream stops (a prefix not watched is no
   * error), with the one a watch of it again, still taking its snapshot,
   * would have stopped: no event of the prefix follows the reply.
   */
  unwatch(message: RequestOf<'unwatch'>): void {
    this.options.requests.run(message, async () => {
      const prefix = message.prefix ?? '';
      const watch = this.watches.get(prefix);
      if (watch) stopWatch(watch);
      this.watches.delete(prefix);
      this.flushHeldEvents(null);
      return {};
    });
  }

  /**
   * Takes a watch whose store call failed out of its prefix: the watch it
   * would have replaced goes on in its place, as the current one or as what
   * a later watch of the prefix replaces (an `unwatch` meanwhile stopped it).
   */
  private dropFailed(watch: Watch): void {
    const { previous } = watch;
    watch.stopped = true;
    watch.previous = null;
    const current = this.watches.get(watch.prefix);
    if (current === watch) {
      if (previous && !previous.stopped) this.watches.set(watch.prefix, previous);
      else this.watches.delete(watch.prefix);
      return;
    }
    for (let later: Watch | null = current ?? null; later; later = later.previous) {
      if (later.previous !== watch) continue;
      later.previous = previous;
      return;
    }
    if (previous) stopWatch(previous);
  }

  /** Stops every watch and drops the events held back: the session died. */
  stopAll(): void {
    for (const watch of this.watches.values()) stopWatch(watch);
    this.watches.clear();
    this.unanswered.clear();
    this.heldEvents = [];
    for (const waiter of this.heldWaiters.splice(0)) waiter.done();
  }

  /**
   * Resolves once every event held back now has gone out, or was dropped
   * as the session watches its key no more: a `ping` answers after the
   * events the session is owed. Null when none is held. An event
   * waits only for the replies of watches started before it came (each one
   * store call, after those of the watches of its prefix sent before it), so
   * this is as bounded as they are; it also resolves when the session's
   * watches stop.
   */
  heldSent(): Promise<void> | null {
    if (this.heldEvents.length === 0) return null;
    const held = [...this.heldEvents];
    return new Promise<void>((done) => this.heldWaiters.push({ held, out: 0, done }));
  }

  /**
   * Sends an event once per session. It is held back while a watch of a
   * matching prefix is still taking its snapshot, so that watch's client
   * hears it after the snapshot reply (or before, when the snapshot shows
   * it), and while other events are held, behind them.
   */
  private deliver(watch: Watch, event: LockEvent): void {
    if (!this.options.alive() || watch.stopped || !this.options.guard.maySee(event)) return;
    if (this.alone(watch)) {
      // The session's one stream, live, with nothing held: no other stream of the session has or
      // will deliver this event (a watch started later hears only events dispatched after it
      // joined, and then the session has two). Recording it would cost every watcher of every
      // event an entry in this session's weak map, the most of a delivery after the socket write.
      this.options.sender.sendEvent(this.options.host.encodeEvent(event));
      return;
    }
    const seen = this.seenEvents.get(event);
    if (seen === GONE) return;
    if (seen) {
      seen.receivedBy.add(watch);
      return;
    }
    if (this.heldEvents.length === 0 && !this.awaitsSnapshot(event, this.started, null)) {
      this.seenEvents.set(event, GONE);
      this.options.sender.sendEvent(this.options.host.encodeEvent(event));
      return;
    }
    const held: HeldEvent = { event, receivedBy: new Set([watch]), watchesBefore: this.started };
    this.seenEvents.set(event, held);
    this.heldEvents.push(held);
  }

  /**
   * True when `watch` is the session's only watch, live, replacing none, and
   * no event is held back: an event its stream delivers goes straight out.
   */
  private alone(watch: Watch): boolean {
    return watch.live && watch.previous === null && this.heldEvents.length === 0 && this.watches.size === 1 && this.watches.get(watch.prefix) === watch;
  }

  /**
   * True when a watch matching the event's key (other than `except`) has not
   * sent its snapshot yet and must see the event after it: one started
   * before the event came (among the first `watchesBefore`), or one whose
   * stream delivered it (`receivedBy`).
   */
  private awaitsSnapshot(event: LockEvent, watchesBefore: number, receivedBy: ReadonlySet<Watch> | null, except: Watch | null = null): boolean {
    for (const latest of this.watches.values()) {
      if (!event.key.startsWith(latest.prefix)) continue;
      // A watch of the prefix again replaced in turn, its snapshot still being taken, counts too.
      for (let watch: Watch | null = latest; watch; watch = watch.previous) {
        if (watch === except || watch.live || watch.stopped) continue;
        if (watch.number < watchesBefore || receivedBy?.has(watch)) return true;
      }
    }
    return false;
  }

  /**
   * Sends the held events nothing holds back any more, in order, and keeps
   * the rest: one a watch other than `before` must see after its snapshot,
   * one `before`'s stream delivered (a watch about to send its snapshot:
   * that event belongs after it), and every later one of the same key.
   *
   * A store's snapshot need not be one instant (the Redis store reads key by
   * key), so an event that snapshot shows can follow one of another key it
   * does not: the former goes out before the reply, the latter after it.
   * Events of one key keep their order; events of two keys may pass one
   * another, as the protocol promises no order across keys.
   *
   * One nothing holds back whose key no watch of the session covers any more
   * is dropped, not sent: an `unwatch` stopped the watches that got it, and
   * the ones it waited for failed or were unwatched too. Sent, it could
   * follow that `unwatch`'s reply, which promises no event of the prefix
   * after it. Nothing is lost: a watch of its key started later reads its
   * snapshot after the event, so the snapshot shows it.
   */
  private flushHeldEvents(before: Watch | null): void {
    const kept: HeldEvent[] = [];
    const keptKeys = new Set<string>();
    for (const held of this.heldEvents) {
      const { key } = held.event;
      const waits = (before && held.receivedBy.has(before)) || this.awaitsSnapshot(held.event, held.watchesBefore, held.receivedBy, before);
      if (keptKeys.has(key) || waits) {
        kept.push(held);
        keptKeys.add(key);
        continue;
      }
      this.seenEvents.set(held.event, GONE);
      if (this.watched(key)) this.options.sender.sendEvent(this.options.host.encodeEvent(held.event));
    }
    this.heldEvents = kept;
    if (this.heldWaiters.length > 0) this.wakeHeldWaiters();
  }

  /** True when a watch of the session, live or taking its snapshot, covers `key`. */
  private watched(key: string): boolean {
    for (const latest of this.watches.values()) {
      if (!key.startsWith(latest.prefix)) continue;
      for (let watch: Watch | null = latest; watch; watch = watch.previous) if (!watch.stopped) return true;
    }
    return false;
  }

  /** Resolves the `heldSent` waits whose events have all gone out. */
  private wakeHeldWaiters(): void {
    this.heldWaiters = this.heldWaiters.filter((waiter) => {
      let next = waiter.held[waiter.out];
      while (next && this.seenEvents.get(next.event) === GONE) next = waiter.held[++waiter.out];
      if (next) return true;
      waiter.done();
      return false;
    });
  }
}

/** Stops a watch and the watches it replaces that are still running. */
function stopWatch(watch: Watch): void {
  for (let stopping: Watch | null = watch; stopping; stopping = stopping.previous) {
    stopping.stopped = true;
    stopping.handle?.stop();
  }
}
