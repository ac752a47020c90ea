/**
 * When a Web Locks shared request of a client may share that client's
 * shared hold of a name: only while the server queue of the name is empty,
 * which the client learns by asking (`status`), and, while a request waits
 * behind that queue, from a watch of the name (the server pushes).
 */
import type { ListResult, LockStatus } from '@lockwire/protocol';
import type { LockEvent } from './watch.js';
import {
  holdFor,
  stopRecheck,
  wake,
  type NameState,
  type QueueFollow,
  type Waiter,
  type WatchHandle,
} from './web-lock-state.js';

/** The first wait before a request behind an unwatched server queue asks again, in ms; doubled per answer. */
const FIRST_RECHECK_MS = 50;
/** The longest wait between two such asks, in ms. */
const MAX_RECHECK_MS = 2000;

/** What the sharing decision needs from the local queue: `status`, `watch`, and a look at the name once decided. */
export interface SharingHost {
  status(key: string): Promise<LockStatus>;
  /** `client.watch()` (see `WebLockQueueHost.watch`). */
  watch(
    prefix: string,
    onEvent: (event: LockEvent) => void,
    options: { limit?: number; onResync?: (snapshot: ListResult) => void },
  ): Promise<WatchHandle>;
  /** Grants what can be granted for the name now. */
  process(name: string): void;
}

/**
 * Decides whether the shared requests at the head of a name's local queue
 * share the client's shared hold, and lets a request that waits behind the
 * server queue share it once that queue is empty: the client watches the
 * name meanwhile, or, when the watch is refused, asks again now and then.
 */
export class SharedHoldSharing {
  readonly #host: SharingHost;

  constructor(host: SharingHost) {
    this.#host = host;
  }

  /**
   * Whether `waiter` could share the name's hold, as far as this client
   * knows. A request made after a steal of this client that is not done yet
   * waits for it; one made before is granted (and then robbed by the steal).
   */
  mayShare(state: NameState, waiter: Waiter): boolean {
    const beforeSteals = waiter.made < (state.steals[0] ?? Infinity);
    return waiter.mode === 'shared' && state.lease?.mode === 'shared' && !waiter.behindServerQueue && beforeSteals;
  }

  /** Whether the head waits behind the server queue while this client holds the name shared. */
  waitsBehindServerQueue(state: NameState): boolean {
    return state.queue[0]?.behindServerQueue === true && state.held.size > 0 && state.lease?.mode === 'shared';
  }

  /**
   * Shares the name's shared hold with the shared requests at the head of the
   * local queue if the server queue is empty, in request order (`ifAvailable`
   * requests among them); otherwise an `ifAvailable` head gets `null` and an
   * ordinary head waits behind the server queue (see
   * `Waiter.behindServerQueue`) until the name's watch shows it empty. A
   * status the server refuses counts as a queue that is not empty: the
   * request never overtakes anyone on a guess (an `ifAvailable` head fails
   * with the refusal), and asks again later.
   *
   * A steal of this client made meanwhile does not stop the grant of the
   * requests made before it: in a browser they were grantable at once and
   * hold the lock when the steal comes, so the steal robs them.
   */
  share(name: string, state: NameState): void {
    const lease = state.lease;
    state.checking = true;
    const follow = state.follow;
    const emptiedBefore = follow?.emptied ?? 0;
    const decide = (empty: boolean, refusal?: { error: unknown }) => {
      // A lost hold meanwhile leaves the decision to the next look at the queue; the release of a hold whose
      // holders ended waits for this decision (see `WebLockQueue.release`).
      if (lease && state.lease === lease) {
        for (let head = state.queue[0]; head && this.mayShare(state, head); head = state.queue[0]) {
          if (empty) {
            state.queue.shift();
            head.holder = holdFor(name, state, lease, head.mode);
          } else if (head.ifAvailable) {
            state.queue.shift();
            if (refusal) head.fail(refusal.error);
            else head.holder = null;
          } else {
            head.behindServerQueue = true;
            head.blocked = true;
            // The watch showed the queue empty while this status was out: that may have been after the server
            // answered it (a reply and the events after it may be handled in one read), or before this request
            // was made. The answer may be stale and the emptying too early to count: ask again at once.
            const stale = follow !== undefined && follow === state.follow && follow.emptied > emptiedBefore;
            if (stale) this.recheckNow(name, state);
            else if (refusal) this.#recheckLater(name, state, head);
            else this.#follow(name, state, head);
            break;
          }
        }
      }
      this.checked(name, state);
    };
    this.serverQueueEmpty(name).then(
      (empty) => decide(empty),
      (error: unknown) => decide(false, { error }),
    );
  }

  /** The check of the server queue is done: what waited for it may look again. */
  checked(name: string, state: NameState): void {
    state.checking = false;
    wake(state);
    this.#host.process(name);
  }

  /**
   * Asks the server whether anyone waits for `name`. This client's hold says
   * nothing about the server queue, and the Web Locks grant rule needs it: a
   * shared request is grantable only if no exclusive request was made before
   * it, also by another client, so readers cannot starve a queued writer.
   * The session holds the name, so the queue holds only other sessions; with
   * a shared hold, a non-empty queue starts with an exclusive request.
   */
  async serverQueueEmpty(name: string): Promise<boolean> {
    const status = await this.#host.status(name);
    return status.queue.length === 0;
  }

  /**
   * The head waiting behind the server queue asks the server again (one
   * `status`) as soon as nothing else runs for the name.
   */
  recheckNow(name: string, state: NameState): void {
    stopRecheck(state);
    const head = state.queue[0];
    if (head && this.waitsBehindServerQueue(state)) head.behindServerQueue = false;
    this.#host.process(name);
  }

  /**
   * A holder of the name ended while the head waits behind the server queue.
   * A watched queue tells its changes by itself; an unwatched one is asked
   * again now, a moment this client is at the name anyway.
   */
  holderEnded(name: string, state: NameState): void {
    if (state.recheck !== undefined || state.follow?.polling) this.recheckNow(name, state);
  }

  /**
   * Keeps the name watched while `head` waits behind the server queue: the
   * queued request ahead may leave it (aborted, timed out, disconnected), and
   * the waiting shared request is then grantable at once, as in a browser;
   * without being told, it would wait for this client's holders to end,
   * forever when one of them waits for it (a nested read). The watch's
   * prefix is the name itself, with a snapshot of one key: the name sorts
   * first among the keys it starts. Events of other keys under it are
   * ignored. The local queue drops the watch once no request waits behind
   * the server queue (see `stopFollow`).
   *
   * A refused watch (`maxWatchesPerSession` reached, `rate_limited`, the
   * connection down) or one that ends by itself (a re-watch after a
   * reconnect refused) falls back to asking `status` after a while, doubling
   * from 50 ms to 2 s, so the request never hangs.
   */
  #follow(name: string, state: NameState, head: Waiter): void {
    const current = state.follow;
    if (current) {
      // An open watch tells the next emptying; one still asked tells it by its snapshot.
      if (current.polling) this.#recheckLater(name, state, head);
      return;
    }
    const follow: QueueFollow = {
      openedFor: head,
      watch: undefined,
      polling: false,
      seen: 0,
      emptied: 0,
      ended: false,
    };
    state.follow = follow;
    const onEvent = (event: LockEvent) => {
      if (follow.ended || event.key !== name) return;
      follow.seen += 1;
      if (event.waiters === 0) this.#emptied(name, state, follow);
    };
    // After a reconnect (a resumed session keeps its hold): events of the time offline are lost, the
    // re-watch's snapshot is the state to go on from.
    const onResync = (snapshot: ListResult) => {
      if (follow.ended) return;
      follow.seen += 1;
      if (queueEmptyIn(snapshot, name)) this.#emptied(name, state, follow);
    };
    this.#host.watch(name, onEvent, { limit: 1, onResync }).then(
      (watch) => {
        if (follow.ended) {
          void watch.close();
          return;
        }
        follow.watch = watch;
        watch.signal.addEventListener('abort', () => this.#poll(name, state, follow), { once: true });
        // Taken after the head it was opened for was found behind the queue, so it counts for that head alone;
        // events seen already are newer than it.
        if (follow.seen === 0 && state.queue[0] === follow.openedFor && queueEmptyIn(watch.snapshot, name)) {
          this.#emptied(name, state, follow);
        }
      },
      () => this.#poll(name, state, follow),
    );
  }

  /**
   * The watch showed the server queue of the name empty: the head waiting
   * behind it shares the hold now. Only that head, which was found behind
   * the queue before this moment; the requests made after it ask `status`
   * for themselves (one made after a new writer queued must not overtake it).
   */
  #emptied(name: string, state: NameState, follow: QueueFollow): void {
    follow.emptied += 1;
    const head = state.queue[0];
    const lease = state.lease;
    if (state.follow !== follow || !head || !lease || state.busy || state.checking) return;
    if (!this.waitsBehindServerQueue(state) || head.made >= (state.steals[0] ?? Infinity)) return;
    stopRecheck(state);
    state.queue.shift();
    head.behindServerQueue = false;
    head.holder = holdFor(name, state, lease, head.mode);
    this.#host.process(name);
  }

  /** The watch was refused or ended by itself: the head waiting behind the queue asks `status` again later. */
  #poll(name: string, state: NameState, follow: QueueFollow): void {
    if (follow.ended || follow.polling) return;
    follow.polling = true;
    follow.watch = undefined;
    const head = state.queue[0];
    if (head && this.waitsBehindServerQueue(state)) this.#recheckLater(name, state, head);
  }

  /**
   * Asks the server again after a while (doubling from 50 ms to 2 s) whether
   * its queue of the name is still not empty: when it cannot be watched, or
   * when its last answer may be stale. The local queue cancels the timer
   * once no request waits behind the server queue with the hold there
   * (granted, aborted, the hold released, lost or stolen, the client closed).
   */
  #recheckLater(name: string, state: NameState, head: Waiter): void {
    if (state.recheck) return;
    head.recheckDelay = Math.min(MAX_RECHECK_MS, head.recheckDelay * 2 || FIRST_RECHECK_MS);
    state.recheck = setTimeout(() => {
      state.recheck = undefined;
      this.recheckNow(name, state);
    }, head.recheckDelay);
  }
}

/** Whether a watch snapshot of `name` (its prefix) shows nobody waiting for it; an unlocked key has no queue. */
function queueEmptyIn(snapshot: ListResult, name: string): boolean {
  const status = snapshot.locks.find((lock) => lock.key === name);
  return (status?.queue.length ?? 0) === 0;
}
