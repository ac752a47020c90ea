/**
 * What the local queue of `client.locks` keeps per name: the granted
 * requests (holders), the waiting ones (waiters), the server hold they share,
 * and the small steps on them that need no server call.
 */
import type { ListResult, LockMode, LockStatus, WaiterInfo } from '@lockwire/protocol';
import { ClientErrorCode, LeaseLostReason, LockError } from './errors.js';
import type { Lease } from './lease.js';
import type { LockEvent, Watch } from './watch.js';
import { Lock, type WebLocksHost } from './web-lock.js';

/** A granted request of this client. */
export interface Holder {
  readonly lock: Lock;
  /** Rejects when the lock is taken away before the callback settled. */
  readonly lost: Promise<never>;
  /** Set once lost, so a lock lost before its callback ran never calls it. */
  loss: { reason: unknown } | undefined;
  lose(reason: unknown): void;
}

/** A request of this client waiting for its turn. */
export interface Waiter {
  readonly name: string;
  readonly mode: LockMode;
  /** Aborts this waiter's server acquire: the user's signal, or a steal that sends it back to the queue. */
  controller: AbortController;
  inFlight: boolean;
  /** The server put this waiter's acquire in its queue (it was not grantable at once). */
  serverQueued: boolean;
  requeue: boolean;
  /**
   * Its acquire, or the grant of it, was lost with a drop the client reconnects from (the server dropped the
   * request from its queue, or the hold with the session): it is sent again once the client is open again, an
   * `ifAvailable` one too, and until then it counts as undecided, as one in flight does.
   */
  resend: boolean;
  /** Set when the caller's signal aborted: the request is given up, also if a steal had cancelled its acquire first. */
  abandoned: { reason: unknown } | undefined;
  /** Not grantable when made (a holder here conflicts) or queued by the server: it holds no later request back. */
  blocked: boolean;
  /**
   * A shared request that found another client's request in the server queue when it could have shared
   * this client's shared hold: it does not share it, but waits until this client's holders are done and the
   * hold is released, and then joins the server queue behind that request. Meanwhile the client watches the
   * name (see `QueueFollow`), and the request shares the hold once the requests that were ahead of it left
   * the server queue (see `ahead`).
   */
  behindServerQueue: boolean;
  /**
   * For a shared request: the requests of other clients in the server queue of the name that were made before
   * it, as the first `status` asked after it was made listed them, less those a later `status` no longer
   * listed. It may share this client's shared hold only once this is empty (`undefined` until that first
   * answer). See `SharedHoldSharing`.
   */
  ahead: QueueEntry[] | undefined;
  /**
   * A `status` was asked after this request was made (its answer may yet be out, or refused): a shared request
   * not asked for yet makes the head waiting behind the server queue ask at once (see `placeNewcomers`).
   */
  asked: boolean;
  /**
   * The `status` asked when this shared request was made, while a request of this client made before it was
   * still in the server queue or on its way there, is out: its answer, not a later one, tells which requests
   * are ahead of it (see `SharedHoldSharing.place`).
   */
  placing: boolean;
  /**
   * The server acquire of this client that the `status` asked when this shared request was made (see
   * `placing`) listed with no request of another client behind it: this request was made right behind that
   * one in the server's order, so it may take over its place in the server queue when the request that made
   * it is aborted (see `ServerAcquire`).
   */
  follows: ServerAcquire | undefined;
  /**
   * While `behindServerQueue` and the server queue cannot be watched: the wait before the last re-check of
   * the server queue (`status`), in ms (0 before the first).
   */
  recheckDelay: number;
  /** This client's count of requests made when this one was made: its place in request order. */
  readonly made: number;
  /**
   * An `ifAvailable` request: it waits here only while the requests of this client made before it, or its
   * own server call, are undecided, and answers `null` once it is known not to be grantable at once.
   */
  readonly ifAvailable: boolean;
  /** Set when granted (`null`: an `ifAvailable` request not granted); handed to the caller once every earlier request is decided. */
  holder: Holder | null | undefined;
  /** Resolves the caller's wait with the holder, or `null` for an `ifAvailable` request not granted. */
  deliver(holder: Holder | null): void;
  fail(error: unknown): void;
}

/**
 * This client's one acquire of a name in flight (on its way to the server
 * queue, or in it), and the request it is for: an aborted shared request may
 * hand it to the next shared request of this client, which then keeps the
 * place in the server queue that the aborted one had.
 */
export interface ServerAcquire {
  waiter: Waiter;
}

/** This client's view of one name. The server sees one session: at most one hold and one request at a time. */
export interface NameState {
  readonly held: Set<Holder>;
  readonly queue: Waiter[];
  lease: Lease | null;
  /** A server call for this name is running (acquire, release or steal); nothing else may start. */
  busy: boolean;
  /** A `status` call asks whether a request may share the name's shared hold; nothing else may start. */
  checking: boolean;
  /**
   * While `busy`: the client lets go of a hold of the name in the background until it is gone, which may take
   * seconds: the name's own hold, whose release the server refused and the client sends again (see
   * `releaseHold`), or another hold of the key (see `HoldReleases.pending`). Requests of the name made meanwhile
   * are not grantable at once (`blocked`; `ifAvailable` ones answer `null`), and the name holds no request of
   * another name back.
   */
  lettingGo: boolean;
  /** The acquire of the name in flight, if any. */
  acquire: ServerAcquire | undefined;
  /** The places in request order (`Waiter.made`) of this client's steals of the name not yet done, in order. */
  readonly steals: number[];
  /**
   * While a steal of this client runs its server calls: resolves when it is done. A holder ending meanwhile
   * still holds the lock until then (the server may refuse the steal, and the holders then keep the lock).
   */
  stealing: Promise<void> | undefined;
  idle: (() => void)[];
  /** The next re-check (`status`) of the server queue for the head waiting behind it, when it is not watched. */
  recheck: ReturnType<typeof setTimeout> | undefined;
  /** How this client learns that the server queue of the name emptied while the head waits behind it. */
  follow: QueueFollow | undefined;
}

/**
 * One request in a server queue, as `status` lists it (`WaiterInfo`): a
 * session has at most one request queued per key, and its `seq` tells a
 * request from one the same session makes after leaving the queue, also in
 * the same millisecond (a server that sends no `seq`: its `since`).
 */
export type QueueEntry = Pick<WaiterInfo, 'session' | 'mode' | 'since' | 'seq'>;

/**
 * The client's watch of one name while a request of it waits behind the
 * server queue (`Waiter.behindServerQueue`): the server pushes each change of
 * the name's queue, so the request learns at once that a request ahead of it
 * may have left (and asks `status` to be sure). When the watch is refused
 * (e.g. `maxWatchesPerSession`) or ends, the request re-checks with `status`
 * now and then instead (`polling`).
 */
export interface QueueFollow {
  /** The watch once its reply came (closed when the follow ends); `undefined` while asked, refused or ended. */
  watch: WatchHandle | undefined;
  /** The watch was refused or ended by itself: the head re-checks with `status` now and then instead. */
  polling: boolean;
  /**
   * Sessions whose queued request an event showed leaving (`dequeued`, `acquired`) while a `status` of the
   * name was out: its answer may predate that, so a request still behind one of them asks again.
   */
  leftWhileAsked: Set<string>;
  /** A snapshot (the watch's reply, a resync) came while a `status` was out and may be newer than its answer. */
  snapshotWhileAsked: boolean;
  /** The follow was dropped: a watch whose reply comes later is closed at once, and nothing it shows counts. */
  ended: boolean;
}

/** The part of a client watch (`client.watch()`) the Web Locks face uses. */
export type WatchHandle = Pick<Watch, 'snapshot' | 'signal' | 'close'>;

/** The local queue's server calls: the Web Locks host's, and `status` and `watch` of a name's server queue. */
export interface WebLockServerCalls extends WebLocksHost {
  status(key: string): Promise<LockStatus>;
  /** `client.watch()`: its reply's snapshot, then every event under `prefix`; rejects when refused. */
  watch(
    prefix: string,
    onEvent: (event: LockEvent) => void,
    options: { limit?: number; onResync?: (snapshot: ListResult) => void },
  ): Promise<WatchHandle>;
}

/** A name nobody here holds, waits for or calls the server about yet. */
export function newNameState(): NameState {
  return {
    held: new Set(),
    queue: [],
    lease: null,
    busy: false,
    checking: false,
    lettingGo: false,
    acquire: undefined,
    steals: [],
    stealing: undefined,
    idle: [],
    recheck: undefined,
    follow: undefined,
  };
}

/** Adds a holder of the name's server hold `lease` to `state`. */
export function holdFor(name: string, state: NameState, lease: Lease, mode: LockMode): Holder {
  let lose!: (reason: unknown) => void;
  const lost = new Promise<never>((_, reject) => {
    lose = reject;
  });
  // Raced only once the callback ran; the loss may come first.
  lost.catch(() => undefined);
  const holder: Holder = {
    lock: new Lock(name, mode, lease.token),
    lost,
    loss: undefined,
    lose: (reason) => {
      holder.loss ??= { reason };
      lose(reason);
    },
  };
  state.held.add(holder);
  return holder;
}

/** Every holder of the name loses the lock with `reason`. */
export function breakHolders(state: NameState, reason: unknown): void {
  const holders = [...state.held];
  state.held.clear();
  for (const holder of holders) holder.lose(reason);
}

/** Takes `waiter` out of the name's local queue; false if it was not there. */
export function dequeue(state: NameState, waiter: Waiter): boolean {
  const index = state.queue.indexOf(waiter);
  if (index < 0) return false;
  state.queue.splice(index, 1);
  return true;
}

/**
 * The caller aborted `waiter`, whose server acquire is in flight: if the
 * next request of this client for the name is a shared one made right
 * behind it in the server's order (see `Waiter.follows`), it takes over the
 * acquire, and so the place in the server queue the aborted request had, as
 * in a browser, where it stands right behind that request and so ahead of
 * every request made after it; `waiter` leaves the queue, and the caller
 * fails it. The acquire asks for what the new request would (shared,
 * waiting, no `ifAvailable`); otherwise, or when a steal already cancels the
 * acquire, nothing is handed on (false): the caller cancels the acquire, and
 * the next request joins the server queue at its back.
 */
export function handOver(state: NameState, waiter: Waiter): boolean {
  const acquire = state.acquire;
  const next = state.queue[1];
  if (!acquire || acquire.waiter !== waiter || state.queue[0] !== waiter || !next) return false;
  if (next.follows !== acquire || waiter.requeue || waiter.controller.signal.aborted) return false;
  const same = (w: Waiter) => w.mode === 'shared' && !w.ifAvailable;
  if (!same(waiter) || !same(next)) return false;
  dequeue(state, waiter);
  waiter.inFlight = false;
  acquire.waiter = next;
  next.inFlight = true;
  next.controller = waiter.controller;
  next.serverQueued = waiter.serverQueued;
  if (next.serverQueued) next.blocked = true;
  return true;
}

/**
 * Whether a new request of `mode` must wait for this client's own holders,
 * blocked requests, a hold let go of, or a steal made before it (which takes
 * the lock at once, also while it waits for a hold let go of).
 */
export function blockedHere(state: NameState, mode: LockMode): boolean {
  if (state.lettingGo || state.steals.length > 0) return true;
  if (state.queue.some((waiter) => waiter.blocked)) return true;
  if (state.held.size === 0) return false;
  return mode !== 'shared' || state.lease?.mode !== 'shared' || state.queue.length > 0;
}

/**
 * `ifAvailable` requests answer `null` once not grantable at once: when a
 * request of this client made before one of them waits here and is known
 * not to be grantable (exclusive, queued by the server, behind the server
 * queue or behind this client's holders), or nothing runs for the name that
 * could still grant it. So one never waits behind another client, only for
 * this client's undecided requests ahead and its own server call (one
 * whose answer a drop lost waits for the reconnect, and its server call
 * then; see `Waiter.resend`).
 */
export function refuseUnavailable(state: NameState): void {
  // A hold let go of in the background (a refused release sent again) may take seconds: nothing grants at once.
  // A head to be sent again after a drop is undecided until its acquire is answered, as one in flight.
  const running = (state.busy && !state.lettingGo) || state.checking || state.queue[0]?.resend === true;
  for (let i = 0; i < state.queue.length; ) {
    const waiter = state.queue[i];
    const resending = i === 0 && waiter?.resend === true;
    if (waiter?.ifAvailable && !waiter.inFlight && !resending && !(running && mayYetGrant(state, i))) {
      state.queue.splice(i, 1);
      waiter.holder = null;
    } else i += 1;
  }
}

/**
 * Whether the request at `index` of the name's queue may yet be granted
 * along with every request before it: this client holds the name shared
 * or not at all, and the requests are shared and not known to wait
 * behind the server queue (an exclusive request only as the head).
 */
function mayYetGrant(state: NameState, index: number): boolean {
  const waiter = state.queue[index];
  if (!waiter) return false;
  if (state.held.size > 0 && (waiter.mode !== 'shared' || state.lease?.mode !== 'shared')) return false;
  if (index > 0 && waiter.mode !== 'shared') return false;
  const ahead = state.queue.slice(0, index);
  return ahead.every((w) => w.mode === 'shared' && !w.serverQueued && !w.behindServerQueue);
}

/** Lets everything waiting on the name look again. */
export function wake(state: NameState): void {
  for (const resolve of state.idle.splice(0)) resolve();
}

/** Resolves when the name goes idle or its in-flight acquire joins the server queue. */
export function nextChange(state: NameState): Promise<void> {
  return new Promise((resolve) => state.idle.push(resolve));
}

/** The name's server call is done: lets everything waiting on the name look again. */
export function setIdle(state: NameState): void {
  state.busy = false;
  wake(state);
}

/** Cancels the name's next re-check of the server queue, if any. */
export function stopRecheck(state: NameState): void {
  clearTimeout(state.recheck);
  state.recheck = undefined;
}

/**
 * Drops the name's watch of its server queue: sends `unwatch` unless another
 * watch of this client uses the prefix (`Watch.close()`); a watch still being
 * asked is closed once its reply comes.
 */
export function stopFollow(state: NameState): void {
  const follow = state.follow;
  if (!follow) return;
  state.follow = undefined;
  follow.ended = true;
  const watch = follow.watch;
  follow.watch = undefined;
  if (watch) void watch.close();
}

/** Stolen or revoked holds reject like a stolen Web Lock; a lost connection keeps its typed error. */
export function holderLossReason(name: string, reason: unknown): unknown {
  if (reason instanceof LockError && reason.code === LeaseLostReason.ConnectionLost) return reason;
  const why = reason instanceof LockError ? reason.code : 'lost';
  return new DOMException(`lock ${JSON.stringify(name)} was ${why}`, 'AbortError');
}

/**
 * A call that failed, or a hold that was lost, because the connection dropped (`connection_lost`), not because
 * the client closed for good (`connection_closed`) or the server took the lock.
 */
export function lostWithConnection(reason: unknown): boolean {
  return reason instanceof LockError && reason.code === ClientErrorCode.ConnectionLost;
}
