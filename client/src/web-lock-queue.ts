import { ClientErrorCode, LockError } from './errors.js';
import type { HoldReleases } from './hold-release.js';
import type { ClientEvents } from './options.js';
import type { LockOptions } from './web-lock.js';
import { WebLockAcquires } from './web-lock-acquire.js';
import { HoldHandBack } from './web-lock-hand-back.js';
import { SharedHoldSharing } from './web-lock-sharing.js';
import {
  blockedHere,
  dequeue,
  handOver,
  lostWithConnection,
  newNameState,
  refuseUnavailable,
  stopFollow,
  stopRecheck,
  type Holder,
  type NameState,
  type Waiter,
  type WebLockServerCalls,
} from './web-lock-state.js';

export type { Holder, Waiter } from './web-lock-state.js';

/** The connection events the local queue follows (`client.on()`). */
type ConnectionEvents = Pick<ClientEvents, 'disconnect' | 'reconnect' | 'close'>;

/** What the local queue needs from its client: its server calls, and its connection's events. */
export interface WebLockQueueHost extends WebLockServerCalls {
  on<K extends keyof ConnectionEvents>(type: K, listener: (payload: ConnectionEvents[K]) => void): () => void;
}

/**
 * The local side of `client.locks`: per name, this client's requests queue
 * in request order and share the session's one server hold (shared requests
 * share a shared hold once no request of another client made before them
 * waits in the server queue; one waiting behind such requests watches the
 * name until they left); the server
 * orders clients. A name's next local request joins the server queue
 * only once this client's holders of it are done. Names nobody here holds or
 * waits for are dropped.
 *
 * While the client reconnects after a drop, no request goes to the server
 * (nor asks it whether it may share a hold): the requests wait here, and
 * go on once the client is open again, resumed or on a fresh session, or
 * fail with `connection_closed` when it closes for good. A request whose
 * acquire was in flight or in the server queue at the drop waits so too,
 * at its place here, and is sent again (see `Waiter.resend`); so is one
 * granted whose hold the drop took before its callback ran. Only a steal
 * in flight fails with the drop (`connection_lost`): the server may have
 * carried it out, and stealing again could take the lock from whoever got
 * it since.
 */
export class WebLockQueue {
  readonly #sharing: SharedHoldSharing;
  readonly #handBack: HoldHandBack;
  /** The server calls that get a name its hold: the head request's acquire, and steals. */
  readonly #acquires: WebLockAcquires;
  readonly #names = new Map<string, NameState>();
  /** The latest steal of each name until it is decided (granted or failed; steals of one name run in turn). */
  readonly #steals = new Map<string, Promise<void>>();
  /** Waiting requests in request order, until delivered or failed. */
  readonly #order: Waiter[] = [];
  #made = 0;
  /**
   * The connection dropped and the client reconnects: a server call made now
   * would fail at once with `connection_lost`, though the session (with
   * session grace) and the request's turn may well survive the drop.
   */
  #reconnecting = false;

  constructor(host: WebLockQueueHost, releases: HoldReleases) {
    // Emitted before the drop's pending calls reject and before any lease is lost: nothing is sent after it.
    host.on('disconnect', ({ reconnecting }) => {
      if (reconnecting) this.#reconnecting = true;
    });
    // After the resume settled the leases: the session's holds (or their loss) are known when the requests go on.
    host.on('reconnect', () => this.#connectionSettled());
    // Closed for good: the waiting requests' server calls fail with `connection_closed`.
    host.on('close', () => this.#connectionSettled());
    this.#sharing = new SharedHoldSharing({
      session: () => host.session,
      status: (key) => host.status(key),
      watch: (prefix, onEvent, options) => host.watch(prefix, onEvent, options),
      process: (name) => this.#process(name),
    });
    this.#handBack = new HoldHandBack({ releases, sharing: this.#sharing, process: (name) => this.#process(name) });
    this.#acquires = new WebLockAcquires({
      acquire: (key, options) => host.acquire(key, options),
      process: (name) => this.#process(name),
      deliver: () => this.#deliver(),
      reconnecting: () => this.#reconnecting,
    });
  }

  /** This client's names that are held, waited for or busy with a server call. */
  get names(): ReadonlyMap<string, NameState> {
    return this.#names;
  }

  /**
   * Resolves with a holder of `name` once this request's turn came and the
   * server granted it; `null` for an `ifAvailable` request that could not be
   * granted at once. Rejects with `signal.reason` when aborted while waiting,
   * or with what failed the server call (`not_acquired` when not granted).
   */
  obtain(name: string, options: LockOptions): Promise<Holder | null> {
    const mode = options.mode ?? 'exclusive';
    const state = this.#state(name);
    const ifAvailable = options.ifAvailable === true;
    if (options.steal) {
      const stolen = this.#acquires.steal(name, state, this.#made++);
      const settled = stolen.then(
        () => undefined,
        () => undefined,
      );
      this.#steals.set(name, settled);
      void settled.then(() => {
        if (this.#steals.get(name) === settled) this.#steals.delete(name);
      });
      return stolen;
    }
    // A steal made before takes the lock at once: nothing else is grantable. The answer comes after that
    // steal's, as a browser answers requests in the order they were made.
    if (ifAvailable && state.steals.length > 0) return (this.#steals.get(name) ?? Promise.resolve()).then(() => null);
    return new Promise<Holder | null>((resolve, reject) => {
      const { signal } = options;
      const onAbort = () => {
        waiter.abandoned = { reason: signal?.reason };
        // The name's state may have been dropped and made anew while the request was granted (see `#grantLostToDrop`).
        const current = this.#names.get(name) ?? state;
        // One whose acquire the next request cannot take over (see `handOver`) cancels it.
        const handed = waiter.inFlight && handOver(current, waiter);
        if (waiter.inFlight) waiter.controller.abort(signal?.reason);
        else if (handed || dequeue(current, waiter)) {
          waiter.fail(signal?.reason);
          this.#process(name);
        }
      };
      const waiter: Waiter = {
        name,
        mode,
        controller: new AbortController(),
        inFlight: false,
        serverQueued: false,
        requeue: false,
        abandoned: undefined,
        // An ifAvailable request is answered once decided: until then it holds later requests back.
        blocked: !ifAvailable && blockedHere(state, mode),
        behindServerQueue: false,
        ahead: undefined,
        asked: false,
        resend: false,
        placing: false,
        follows: undefined,
        recheckDelay: 0,
        made: this.#made++,
        ifAvailable,
        holder: undefined,
        deliver: (holder) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(holder);
        },
        fail: (error) => {
          signal?.removeEventListener('abort', onAbort);
          this.#forget(waiter);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#order.push(waiter);
      state.queue.push(waiter);
      this.#sharing.place(name, state, waiter);
      this.#process(name);
    });
  }

  /**
   * Hands granted requests to their callers in request order, as a browser
   * grants requests that are grantable at once in the order they were made.
   * A request waits for every earlier one that is still undecided: its server
   * acquire neither granted nor queued, or its name busy with a server call.
   * Requests known to be blocked do not hold later ones back.
   */
  #deliver(): void {
    for (let i = 0; i < this.#order.length; ) {
      const waiter = this.#order[i];
      if (!waiter) break;
      if (waiter.holder !== undefined) {
        if (waiter.holder?.loss && this.#grantLostToDrop(waiter, waiter.holder.loss.reason)) {
          // Failed (aborted meanwhile), or waiting again at its place in request order.
          if (this.#order[i] === waiter) i += 1;
          continue;
        }
        this.#order.splice(i, 1);
        waiter.deliver(waiter.holder);
        continue;
      }
      const state = this.#names.get(waiter.name);
      const inFlight = state?.queue.find((w) => w.inFlight);
      // A hold let go of in the background (a release sent again after a refusal) holds back only the requests of
      // its own name (they are blocked).
      const calling = state !== undefined && state.busy && !state.lettingGo;
      const busy = state !== undefined && (calling || state.checking || state.steals.length > 0);
      if (!waiter.blocked && busy && !inFlight?.serverQueued) break;
      i += 1;
    }
  }

  /**
   * A granted request whose hold the drop took before its callback ran (its
   * grant came as the connection dropped, or its callback waited for an
   * earlier request): the caller never had the lock, so the request waits
   * again, at its place in the name's queue, and is sent again once the
   * client is open again. One whose signal aborted meanwhile (ignored while
   * granted) now fails with its reason. False when the client is not
   * reconnecting or the loss was not the connection's: the request then
   * rejects with the loss.
   */
  #grantLostToDrop(waiter: Waiter, reason: unknown): boolean {
    if (!this.#reconnecting || !lostWithConnection(reason)) return false;
    if (waiter.abandoned) {
      waiter.fail(waiter.abandoned.reason);
      return true;
    }
    const state = this.#state(waiter.name);
    waiter.holder = undefined;
    waiter.resend = true;
    waiter.blocked = false;
    waiter.serverQueued = false;
    waiter.behindServerQueue = false;
    waiter.follows = undefined;
    waiter.controller = new AbortController();
    const at = state.queue.findIndex((other) => other.made > waiter.made);
    state.queue.splice(at < 0 ? state.queue.length : at, 0, waiter);
    return true;
  }

  #forget(waiter: Waiter): void {
    const index = this.#order.indexOf(waiter);
    if (index >= 0) this.#order.splice(index, 1);
  }

  /**
   * Grants what can be granted, in queue order: shared requests at the head
   * share a shared hold of this client if the server queue of the name is
   * empty; when nobody here holds the name, the head asks the server (not
   * while a steal waits). `ifAvailable` requests that cannot be granted at
   * once any more answer `null`.
   */
  #process(name: string): void {
    const state = this.#names.get(name);
    if (!state) return;
    const head = state.queue[0];
    // While reconnecting, the head keeps its place here; the reconnect (or the close) processes the name
    // again. An `ifAvailable` head is the exception: it wants an answer now, and its acquire fails at once;
    // not one whose answer the drop lost, which is asked again after the reconnect.
    const waits = this.#reconnecting && head !== undefined && (!head.ifAvailable || head.resend);
    if (head && !state.busy && !state.checking && !waits) {
      if (state.held.size === 0) {
        if (state.steals.length === 0 && !this.#handBack.awaitLetGo(name, state)) {
          this.#acquires.acquireFor(name, state, head);
        }
      } else if (!this.#reconnecting) {
        this.#sharing.placeNewcomers(state);
        if (this.#sharing.mayShare(state, head)) this.#sharing.share(name, state);
      } else if (this.#sharing.mayShare(state, head)) {
        // Sharing this client's hold needs the server's word on its queue, which cannot be had now: the
        // `ifAvailable` head fails as its status would, never answered `null` (unavailable) on a guess.
        state.queue.shift();
        head.fail(new LockError(ClientErrorCode.ConnectionLost, 'the client is not connected (reconnecting)'));
      }
    }
    refuseUnavailable(state);
    if (!this.#sharing.waitsBehindServerQueue(state)) {
      stopRecheck(state);
      // Kept while a status is out: its answer may find the next request behind the same server queue.
      if (!state.checking) stopFollow(state);
    }
    this.#dropIfUnused(name, state);
    this.#deliver();
  }

  /**
   * The client is open again after a drop, or closed for good: every name
   * with waiting requests is processed again, in the order its first waiting
   * request was made, so requests decided by the server are still handed
   * over in request order.
   */
  #connectionSettled(): void {
    if (!this.#reconnecting) return;
    this.#reconnecting = false;
    const names = new Set(this.#order.map((waiter) => waiter.name));
    for (const name of names) this.#process(name);
  }

  /** A holder's callback settled: see `HoldHandBack.release`. */
  release(name: string, holder: Holder): Promise<{ reason: unknown } | undefined> {
    const state = this.#names.get(name);
    return state ? this.#handBack.release(name, state, holder) : Promise.resolve(undefined);
  }

  // ---- bookkeeping ----

  #state(name: string): NameState {
    let state = this.#names.get(name);
    if (!state) {
      state = newNameState();
      this.#names.set(name, state);
    }
    return state;
  }

  #dropIfUnused(name: string, state: NameState): void {
    const unused = state.held.size === 0 && state.queue.length === 0 && !state.lease && !state.busy && !state.checking;
    if (unused && state.steals.length === 0 && state.idle.length === 0) this.#names.delete(name);
  }
}
