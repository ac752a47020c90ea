/**
 * When a Web Locks shared request of a client may share that client's
 * shared hold of a name: only once no request of another client made before
 * it waits in the server queue of the name. The client learns which ones
 * were ahead by asking (`status`), and, while a request waits behind them,
 * that one of them may have left from a watch of the name (the server
 * pushes); the grant is decided on a `status` answer alone.
 */
import type { ListResult, WaiterInfo } from '@lockwire/protocol';
import type { LockEvent } from './watch.js';
import {
  holdFor,
  stopRecheck,
  wake,
  type NameState,
  type QueueEntry,
  type QueueFollow,
  type Waiter,
  type WebLockServerCalls,
} from './web-lock-state.js';

/** The first wait before a request behind an unwatched server queue asks again, in ms; doubled per answer. */
const FIRST_RECHECK_MS = 50;
/** The longest wait between two such asks, in ms. */
const MAX_RECHECK_MS = 2000;

/** What the sharing decision needs from the local queue: `status`, `watch`, and a look at the name once decided. */
export interface SharingHost extends Pick<WebLockServerCalls, 'status' | 'watch'> {
  /** This client's session id: its own entry in a server queue is no other client's request. */
  session(): string;
  /** Grants what can be granted for the name now. */
  process(name: string): void;
}

/**
 * Decides whether the shared requests at the head of a name's local queue
 * share the client's shared hold, and lets a request that waits behind
 * requests of other clients in the server queue share it once they left:
 * the client watches the name meanwhile, or, when the watch is refused,
 * asks again now and then.
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
   * A shared request made while the head waits behind the server queue has
   * not learnt which requests of other clients are ahead of it: the head asks
   * `status` again now, whose answer tells both (a request queued later may
   * not keep it waiting), also when a re-check by timer is due later. One
   * whose `status` was asked and refused waits for that re-check instead.
   */
  placeNewcomers(state: NameState): void {
    const head = state.queue[0];
    if (!head || !this.waitsBehindServerQueue(state)) return;
    if (state.queue.some((waiter) => waiter.mode === 'shared' && !waiter.ifAvailable && !waiter.asked)) {
      stopRecheck(state);
      head.behindServerQueue = false;
    }
  }

  /**
   * A shared request made while an earlier shared request of this client for
   * the name is in the server queue or on its way there (its acquire in
   * flight), with only shared requests of this client before it, asks
   * `status` at once: the other clients' requests that answer lists are the
   * ones made before it (`Waiter.ahead`), also those queued behind the earlier
   * request. Once that request is granted, the new one shares its hold if
   * they left, as in a browser, where the server would grant both reads
   * together; a writer queued meanwhile is not counted ahead of it. Until the
   * answer, a check of the hold leaves this request's `ahead` alone; a
   * refused answer leaves it to the next check (whose queue is all ahead).
   */
  place(name: string, state: NameState, waiter: Waiter): void {
    const head = state.queue[0];
    if (waiter.mode !== 'shared' || waiter.ifAvailable || !head?.inFlight || head === waiter) return;
    if (!state.queue.every((w) => w.mode === 'shared')) return;
    waiter.asked = true;
    waiter.placing = true;
    const acquire = state.acquire;
    const placed = (queue: readonly QueueEntry[] | undefined) => {
      waiter.placing = false;
      if (!state.queue.includes(waiter)) return;
      const session = this.#host.session();
      if (queue) waiter.ahead = queue.filter((entry) => entry.session !== session).map(entryOf);
      // This client's acquire was sent before the status, so it is the session's entry the answer lists (if
      // any): with none of another client behind it, nobody was queued between it and this request.
      if (queue?.at(-1)?.session === session && acquire === state.acquire) waiter.follows = acquire;
      // The head may have waited behind the server queue for this answer: it asks again and decides on it.
      if (state.queue[0] === waiter && this.waitsBehindServerQueue(state)) this.recheckNow(name, state);
    };
    this.#host.status(name).then(
      (status) => placed(status.queue),
      () => placed(undefined),
    );
  }

  /**
   * Asks `status` and shares the name's shared hold with the shared requests
   * at the head of the local queue that no request of another client made
   * before them waits for any more, in request order (`ifAvailable` requests
   * among them). The answer records, for each shared request made before it
   * was asked, which queued requests are still ahead (`Waiter.ahead`: on its
   * first answer, the whole queue). A head still behind some gets `null` if
   * `ifAvailable`, or waits behind the server queue (see
   * `Waiter.behindServerQueue`) until an event or snapshot shows one of them
   * may have left, and asks again. A status the server refuses tells nothing:
   * the request never overtakes anyone on a guess (an `ifAvailable` head
   * fails with the refusal), and asks again later.
   *
   * A steal of this client made meanwhile does not stop the grant of the
   * requests made before it: in a browser they were grantable at once and
   * hold the lock when the steal comes, so the steal robs them.
   */
  share(name: string, state: NameState): void {
    const lease = state.lease;
    state.checking = true;
    // The answer counts for the requests made before it was asked; those made later ask for themselves.
    const asked = new Set(state.queue);
    for (const waiter of asked) waiter.asked = true;
    const follow = state.follow;
    if (follow) {
      follow.leftWhileAsked.clear();
      follow.snapshotWhileAsked = false;
    }
    const decide = (queue: readonly QueueEntry[] | undefined, refusal?: { error: unknown }) => {
      // A lost hold meanwhile leaves the decision to the next look at the queue; the release of a hold whose
      // holders ended waits for this decision (see `WebLockQueue.release`).
      if (lease && state.lease === lease) {
        if (queue) {
          for (const waiter of state.queue) {
            if (asked.has(waiter) && waiter.mode === 'shared' && !waiter.placing) waiter.ahead = stillAhead(waiter.ahead ?? queue, queue);
          }
        }
        for (let head = state.queue[0]; head && asked.has(head) && this.mayShare(state, head); head = state.queue[0]) {
          if (queue && head.ahead?.length === 0) {
            state.queue.shift();
            head.holder = holdFor(name, state, lease, head.mode);
          } else if (head.ifAvailable) {
            state.queue.shift();
            if (refusal) head.fail(refusal.error);
            else head.holder = null;
          } else {
            head.behindServerQueue = true;
            head.blocked = true;
            // An event showed a request ahead leaving, or a snapshot came, while this status was out: the answer
            // may predate it (on a store of several nodes, events may come later than a direct read). Ask again.
            const left = (entry: QueueEntry) => follow?.leftWhileAsked.has(entry.session) === true;
            const stale =
              follow !== undefined &&
              follow === state.follow &&
              (follow.snapshotWhileAsked || (head.ahead ?? []).some(left));
            if (stale && !refusal) this.recheckNow(name, state);
            else if (refusal) this.#recheckLater(name, state, head);
            else this.#follow(name, state, head);
            break;
          }
        }
      }
      this.checked(name, state);
    };
    this.#host.status(name).then(
      (status) => decide(status.queue),
      (error: unknown) => decide(undefined, { error }),
    );
  }

  /** The check of the server queue is done: what waited for it may look again. */
  checked(name: string, state: NameState): void {
    state.checking = false;
    wake(state);
    this.#host.process(name);
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
   * Keeps the name watched while `head` waits behind the server queue: a
   * queued request ahead of it may leave (aborted, timed out, disconnected,
   * or granted), and the waiting shared request may then be grantable at
   * once, as in a browser; without being told, it would wait for this
   * client's holders to end, forever when one of them waits for it (a nested
   * read). The watch's prefix is the name itself, with a snapshot of one key:
   * the name sorts first among the keys it starts. Events of other keys under
   * it are ignored. The local queue drops the watch once no request waits
   * behind the server queue (see `stopFollow`).
   *
   * The watch only says when to look: an event of a request ahead of a
   * waiting one leaving (`dequeued`, `acquired`, also at its session's end),
   * or a snapshot (the watch's reply, a resync after a reconnect) missing one
   * of them, makes the head ask `status` once, and that answer decides. On a
   * store of several nodes an event may be older than a `status` answer, so
   * an event alone never grants.
   *
   * A refused watch (`maxWatchesPerSession` reached, `rate_limited`, the
   * connection down) or one that ends by itself (a re-watch after a
   * reconnect refused) falls back to asking `status` after a while, doubling
   * from 50 ms to 2 s, so the request never hangs.
   */
  #follow(name: string, state: NameState, head: Waiter): void {
    const current = state.follow;
    if (current) {
      // An open watch tells the next leaving; one still asked tells it by its snapshot.
      if (current.polling) this.#recheckLater(name, state, head);
      return;
    }
    const follow: QueueFollow = {
      watch: undefined,
      polling: false,
      leftWhileAsked: new Set(),
      snapshotWhileAsked: false,
      ended: false,
    };
    state.follow = follow;
    const onEvent = (event: LockEvent) => {
      if (follow.ended || event.key !== name) return;
      if (event.event !== 'dequeued' && event.event !== 'acquired') return;
      if (state.checking) follow.leftWhileAsked.add(event.session);
      else if (state.queue.some((waiter) => waiter.ahead?.some((entry) => entry.session === event.session))) {
        this.#stir(name, state, follow);
      }
    };
    const onSnapshot = (snapshot: ListResult) => {
      if (follow.ended) return;
      if (state.checking) follow.snapshotWhileAsked = true;
      else if (someLeft(state, queueIn(snapshot, name))) this.#stir(name, state, follow);
    };
    // After a reconnect (a resumed session keeps its hold): events of the time offline are lost, the
    // re-watch's snapshot is the state to go on from.
    this.#host.watch(name, onEvent, { limit: 1, onResync: onSnapshot }).then(
      (watch) => {
        if (follow.ended) {
          void watch.close();
          return;
        }
        follow.watch = watch;
        watch.signal.addEventListener('abort', () => this.#poll(name, state, follow), { once: true });
        // A request ahead may have left between the status answer and the watch's start: no event tells that.
        onSnapshot(watch.snapshot);
      },
      () => this.#poll(name, state, follow),
    );
  }

  /**
   * The watch showed that a request of another client ahead of a waiting one
   * may have left: the head waiting behind the server queue asks `status`
   * once, and shares the hold only if that answer lists none of the requests
   * ahead of it.
   */
  #stir(name: string, state: NameState, follow: QueueFollow): void {
    if (state.follow !== follow || !this.waitsBehindServerQueue(state)) return;
    this.recheckNow(name, state);
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

/** The server queue of `name` in a watch snapshot of it (its prefix); an unlocked key has no queue. */
function queueIn(snapshot: ListResult, name: string): readonly WaiterInfo[] {
  return snapshot.locks.find((lock) => lock.key === name)?.queue ?? [];
}

/** Whether `queue` misses a request that is ahead of a request waiting in the name's local queue. */
function someLeft(state: NameState, queue: readonly QueueEntry[]): boolean {
  return state.queue.some(
    (waiter) => waiter.ahead !== undefined && stillAhead(waiter.ahead, queue).length < waiter.ahead.length,
  );
}

/**
 * The requests of `ahead` that `queue` (a later answer, in grant order)
 * still holds. The server appends to its queue, so those still there come
 * first, in the same order; the first entry that is none of them was queued
 * later, and so was every entry after it, also one of a session that left
 * and queued again (its `seq` differs, or it stands behind a newer one).
 */
function stillAhead(ahead: readonly QueueEntry[], queue: readonly QueueEntry[]): QueueEntry[] {
  const still: QueueEntry[] = [];
  let from = 0;
  for (const entry of queue) {
    const at = ahead.findIndex((known, i) => i >= from && sameEntry(known, entry));
    if (at < 0) break;
    still.push(entryOf(entry));
    from = at + 1;
  }
  return still;
}

/** The part of a `status` queue entry that tells which request it is. */
function entryOf(entry: QueueEntry): QueueEntry {
  const known: QueueEntry = { session: entry.session, mode: entry.mode, since: entry.since };
  if (entry.seq !== undefined) known.seq = entry.seq;
  return known;
}

/**
 * Whether two entries are the same request: by its arrival `seq` where the
 * server sends one (a session that leaves and queues again within a
 * millisecond is a new request); else by mode and `since`.
 */
function sameEntry(a: QueueEntry, b: QueueEntry): boolean {
  if (a.session !== b.session || a.mode !== b.mode) return false;
  if (a.seq !== undefined && b.seq !== undefined) return a.seq === b.seq;
  return a.since === b.since;
}
