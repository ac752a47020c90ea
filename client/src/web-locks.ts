import { MAX_LIST_LIMIT, type ListResult, type LockMode } from '@lockwire/protocol';
import { LeaseLostReason, LockError } from './errors.js';
import type { Lease } from './lease.js';
import type { AcquireOptions } from './options.js';

/** A granted lock, passed to a `locks.request()` callback (`null` there when `ifAvailable` found it taken). */
export class Lock {
  /**
   * @param name the requested name (the server key).
   * @param mode `exclusive` or `shared`.
   * @param token the server's fencing token for this hold (shared requests of one client share it).
   */
  constructor(
    readonly name: string,
    readonly mode: LockMode,
    readonly token: number,
  ) {}
}

/** The callback of `locks.request()`: the lock is held until its result settles. */
export type LockGrantedCallback<T> = (lock: Lock | null) => T | PromiseLike<T>;

/** Options of `locks.request()`, as in the Web Locks API. */
export interface LockOptions {
  /** `exclusive` (default) or `shared`. */
  mode?: LockMode;
  /** Grant only if possible at once; otherwise the callback gets `null`. */
  ifAvailable?: boolean;
  /** Take the lock from its holders (their `request()` rejects with an `AbortError`); exclusive only. */
  steal?: boolean;
  /** Gives up while waiting: `request()` rejects with `signal.reason`. Ignored once granted. */
  signal?: AbortSignal;
}

/** One held or pending request, as `query()` reports it. */
export interface LockInfo {
  name: string;
  mode: LockMode;
  /** The session id of the client that holds or waits. */
  clientId: string;
}

/** What `query()` resolves with. */
export interface LockManagerSnapshot {
  held: LockInfo[];
  pending: LockInfo[];
}

/** What the Web Locks face needs from its client. */
export interface WebLocksHost {
  readonly session: string;
  acquire(key: string, options: AcquireOptions): Promise<Lease | null>;
  list(options: { prefix?: string; limit?: number }): Promise<ListResult>;
}

/** A granted request of this client. */
interface Holder {
  readonly lock: Lock;
  /** Rejects when the lock is taken away before the callback settled. */
  readonly lost: Promise<never>;
  /** Set once lost, so a lock lost before its callback ran never calls it. */
  loss: { reason: unknown } | undefined;
  lose(reason: unknown): void;
}

/** A request of this client waiting for its turn. */
interface Waiter {
  readonly name: string;
  readonly mode: LockMode;
  /** Aborts this waiter's server acquire: the user's signal, or a steal that sends it back to the queue. */
  controller: AbortController;
  inFlight: boolean;
  /** The server put this waiter's acquire in its queue (it was not grantable at once). */
  serverQueued: boolean;
  requeue: boolean;
  /** Not grantable when made (a holder here conflicts) or queued by the server: it holds no later request back. */
  blocked: boolean;
  /** Set when granted; handed to the caller once every earlier request is decided. */
  holder: Holder | undefined;
  /** Resolves the caller's wait with the holder. */
  deliver(holder: Holder): void;
  fail(error: unknown): void;
}

/** This client's view of one name. The server sees one session: at most one hold and one request at a time. */
interface NameState {
  readonly held: Set<Holder>;
  readonly queue: Waiter[];
  lease: Lease | null;
  /** A server call for this name is running (acquire, release or steal); nothing else may start. */
  busy: boolean;
  stealers: number;
  idle: (() => void)[];
}

const RESERVED_PREFIX = '-';

/**
 * `client.locks`: the Web Locks API (`navigator.locks`) across tabs, devices
 * and users. Names are server keys; `clientId` is the session id.
 *
 * Within one client, requests for a name queue locally in request order and
 * share the session's one server hold (shared requests share a shared hold);
 * the server orders clients. A name's next local request joins the server
 * queue only once this client's holders of it are done.
 */
export class LockManager {
  readonly #host: WebLocksHost;
  readonly #names = new Map<string, NameState>();
  /** Waiting requests in request order, until delivered or failed. */
  readonly #order: Waiter[] = [];

  /** Created by `LockClient`. */
  constructor(host: WebLocksHost) {
    this.#host = host;
  }

  /**
   * Requests `name` and calls `callback` with the granted {@link Lock} (or
   * `null` for an unavailable `ifAvailable` request); the lock is held until
   * the callback's result settles, and the returned promise settles with it.
   *
   * Rejects with `TypeError` for a missing callback, a bad mode or signal;
   * `NotSupportedError` for names starting with `-`, `steal` with
   * `ifAvailable` or `shared`, and `signal` with `steal` or `ifAvailable`;
   * `signal.reason` when aborted while waiting; an `AbortError` when the lock
   * is stolen or revoked while held; a `LockError` (`connection_lost`, server
   * codes) when the connection fails the request.
   */
  request<T>(name: string, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  request<T>(name: string, options: LockOptions, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  async request<T>(name: string, ...rest: unknown[]): Promise<Awaited<T>> {
    const [options, callback] = parseArguments<T>(rest);
    const key = String(name);
    validate(key, options);
    options.signal?.throwIfAborted();
    const holder = await this.#obtain(key, options);
    if (!holder) return await callback(null);
    if (holder.loss) throw holder.loss.reason;
    let result: Promise<Awaited<T>>;
    try {
      result = Promise.resolve(callback(holder.lock)) as Promise<Awaited<T>>;
    } catch (error) {
      result = Promise.reject(error);
    }
    const settled = result.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    const outcome = await Promise.race([settled, holder.lost]);
    await this.#release(key, holder);
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }

  /**
   * A snapshot of the server's held and pending locks, this client's own
   * entries as its requests see them (each shared request and each queued
   * request counted). Covers at most 10,000 locked keys.
   */
  async query(): Promise<LockManagerSnapshot> {
    const { locks } = await this.#host.list({ prefix: '', limit: MAX_LIST_LIMIT });
    const self = this.#host.session;
    const held: LockInfo[] = [];
    const pending: LockInfo[] = [];
    const seen = new Set<string>();
    const waiting = (name: string, waiters: Waiter[]) => waiters.map(({ mode }) => ({ name, mode, clientId: self }));
    for (const status of locks) {
      const name = status.key;
      const state = this.#names.get(name);
      seen.add(name);
      // The server may have granted an acquire whose reply this client has not handled yet: it is held.
      let granted: Waiter | undefined;
      for (const { session, mode } of status.holders) {
        if (session !== self || !state) held.push({ name, mode, clientId: session });
        else if (state.held.size > 0) {
          for (const holder of state.held) held.push({ name, mode: holder.lock.mode, clientId: self });
        } else {
          granted = state.queue.find((waiter) => waiter.inFlight);
          held.push({ name, mode: granted?.mode ?? mode, clientId: self });
        }
      }
      const own = waiting(name, state?.queue.filter((waiter) => waiter !== granted) ?? []);
      let ownListed = false;
      for (const { session, mode } of status.queue) {
        if (session !== self || !state) pending.push({ name, mode, clientId: session });
        else if (!ownListed) {
          ownListed = true;
          pending.push(...own);
        }
      }
      if (!ownListed) pending.push(...own);
    }
    for (const [name, state] of this.#names) {
      if (!seen.has(name)) pending.push(...waiting(name, state.queue));
    }
    return { held, pending };
  }

  // ---- granting ----

  #obtain(name: string, options: LockOptions): Promise<Holder | null> {
    const mode = options.mode ?? 'exclusive';
    const state = this.#state(name);
    if (options.steal) return this.#steal(name, state);
    if (options.ifAvailable) return this.#tryNow(name, state, mode);
    return new Promise<Holder>((resolve, reject) => {
      const { signal } = options;
      const onAbort = () => {
        if (waiter.inFlight) waiter.controller.abort(signal?.reason);
        else if (this.#dequeue(state, waiter)) {
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
        blocked: this.#blockedHere(state, mode),
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
      if (waiter.holder) {
        this.#order.splice(i, 1);
        waiter.deliver(waiter.holder);
        continue;
      }
      const state = this.#names.get(waiter.name);
      const inFlight = state?.queue.find((w) => w.inFlight);
      const busy = state !== undefined && (state.busy || state.stealers > 0);
      if (!waiter.blocked && busy && !inFlight?.serverQueued) break;
      i += 1;
    }
  }

  /** Whether a new request of `mode` must wait for this client's own holders or blocked requests. */
  #blockedHere(state: NameState, mode: LockMode): boolean {
    if (state.queue.some((waiter) => waiter.blocked)) return true;
    if (state.held.size === 0) return false;
    return mode !== 'shared' || state.lease?.mode !== 'shared' || state.queue.length > 0;
  }

  #forget(waiter: Waiter): void {
    const index = this.#order.indexOf(waiter);
    if (index >= 0) this.#order.splice(index, 1);
  }

  /** Grants what can be granted, in queue order; asks the server for the head when nobody here holds the name. */
  #process(name: string): void {
    const state = this.#names.get(name);
    if (!state) return;
    while (!state.busy && state.stealers === 0) {
      const head = state.queue[0];
      if (!head) break;
      if (state.held.size > 0) {
        if (head.mode !== 'shared' || state.lease?.mode !== 'shared') break;
        state.queue.shift();
        head.holder = this.#hold(name, state, state.lease, head.mode);
        continue;
      }
      this.#acquireFor(name, state, head);
      break;
    }
    this.#dropIfUnused(name, state);
    this.#deliver();
  }

  #acquireFor(name: string, state: NameState, head: Waiter): void {
    state.busy = true;
    head.inFlight = true;
    head.serverQueued = false;
    const onQueued = () => {
      head.serverQueued = true;
      head.blocked = true;
      // A steal waiting for this acquire's fate may now cancel it; later requests need not wait for it.
      this.#wake(state);
      this.#deliver();
    };
    this.#host.acquire(name, { mode: head.mode, signal: head.controller.signal, onQueued }).then(
      (lease) => {
        head.inFlight = false;
        this.#dequeue(state, head);
        this.#setIdle(state);
        if (lease) head.holder = this.#adopt(name, state, lease, head.mode);
        else head.fail(new LockError('not_acquired', `lock ${JSON.stringify(name)} was not granted`));
        this.#process(name);
      },
      (error: unknown) => {
        head.inFlight = false;
        head.serverQueued = false;
        if (head.requeue) {
          // A steal cancelled this acquire; the request keeps its place and asks again later.
          head.requeue = false;
          head.controller = new AbortController();
        } else {
          this.#dequeue(state, head);
          head.fail(error);
        }
        this.#setIdle(state);
        this.#process(name);
      },
    );
  }

  /** `ifAvailable`: grants only if nothing here waits or conflicts and the server grants at once. */
  async #tryNow(name: string, state: NameState, mode: LockMode): Promise<Holder | null> {
    while (state.busy || state.stealers > 0) {
      if (state.queue.length > 0) return null;
      await this.#nextChange(state);
    }
    if (state.queue.length > 0) return null;
    if (state.held.size > 0) {
      return mode === 'shared' && state.lease?.mode === 'shared' ? this.#hold(name, state, state.lease, mode) : null;
    }
    state.busy = true;
    let lease: Lease | null;
    try {
      lease = await this.#host.acquire(name, { mode, acquireTimeout: 0 });
    } finally {
      this.#setIdle(state);
    }
    const holder = lease ? this.#adopt(name, state, lease, mode) : null;
    this.#process(name);
    return holder;
  }

  /** `steal`: every holder here loses the lock, then the server hold is taken from everyone else. */
  async #steal(name: string, state: NameState): Promise<Holder> {
    state.stealers += 1;
    try {
      while (state.busy) {
        // A request the server could grant at once is granted first (and then robbed, as in a browser,
        // where it would already hold the lock); one waiting in the server queue is taken back out of it
        // and keeps its place here.
        const inFlight = state.queue.find((waiter) => waiter.inFlight);
        if (inFlight?.serverQueued && !inFlight.requeue) {
          inFlight.requeue = true;
          inFlight.controller.abort(new DOMException('a steal took precedence', 'AbortError'));
        }
        await this.#nextChange(state);
      }
      state.busy = true;
      try {
        this.#breakHolders(state, new DOMException(`lock ${JSON.stringify(name)} was stolen`, 'AbortError'));
        let lease = state.lease;
        // The session's own exclusive hold passes to the stealer; a shared one cannot be upgraded.
        if (lease && (lease.mode !== 'exclusive' || !lease.held)) {
          state.lease = null;
          await lease.release().catch(() => undefined);
          lease = null;
        }
        lease ??= await this.#host.acquire(name, { steal: true });
        if (!lease) throw new LockError('not_acquired', `steal of ${JSON.stringify(name)} was not granted`);
        return state.lease === lease ? this.#hold(name, state, lease, 'exclusive') : this.#adopt(name, state, lease, 'exclusive');
      } finally {
        this.#setIdle(state);
      }
    } finally {
      state.stealers -= 1;
      this.#process(name);
    }
  }

  /** Records a new server hold for the name and its first holder; a loss of the hold breaks every holder. */
  #adopt(name: string, state: NameState, lease: Lease, mode: LockMode): Holder {
    state.lease = lease;
    lease.signal.addEventListener(
      'abort',
      () => {
        if (state.lease !== lease) return;
        state.lease = null;
        this.#breakHolders(state, holderLossReason(name, lease.signal.reason));
        this.#process(name);
      },
      { once: true },
    );
    return this.#hold(name, state, lease, mode);
  }

  #hold(name: string, state: NameState, lease: Lease, mode: LockMode): Holder {
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

  /** A holder's callback settled: the last holder of the name releases the server hold. */
  async #release(name: string, holder: Holder): Promise<void> {
    const state = this.#names.get(name);
    if (!state?.held.delete(holder) || state.held.size > 0) return;
    const lease = state.lease;
    state.lease = null;
    if (!lease) {
      this.#process(name);
      return;
    }
    state.busy = true;
    try {
      await lease.release();
    } catch {
      // The hold is gone either way (the only failures are a lost connection or a lost lock).
    } finally {
      this.#setIdle(state);
      this.#process(name);
    }
  }

  #breakHolders(state: NameState, reason: unknown): void {
    const holders = [...state.held];
    state.held.clear();
    for (const holder of holders) holder.lose(reason);
  }

  // ---- bookkeeping ----

  #state(name: string): NameState {
    let state = this.#names.get(name);
    if (!state) {
      state = { held: new Set(), queue: [], lease: null, busy: false, stealers: 0, idle: [] };
      this.#names.set(name, state);
    }
    return state;
  }

  #dequeue(state: NameState, waiter: Waiter): boolean {
    const index = state.queue.indexOf(waiter);
    if (index < 0) return false;
    state.queue.splice(index, 1);
    return true;
  }

  /** Resolves when the name goes idle or its in-flight acquire joins the server queue. */
  #nextChange(state: NameState): Promise<void> {
    return new Promise((resolve) => state.idle.push(resolve));
  }

  #setIdle(state: NameState): void {
    state.busy = false;
    this.#wake(state);
  }

  /** Lets everything waiting on the name look again. */
  #wake(state: NameState): void {
    for (const resolve of state.idle.splice(0)) resolve();
  }

  #dropIfUnused(name: string, state: NameState): void {
    const unused = state.held.size === 0 && state.queue.length === 0 && !state.lease && !state.busy;
    if (unused && state.stealers === 0 && state.idle.length === 0) this.#names.delete(name);
  }
}

/** Stolen or revoked holds reject like a stolen Web Lock; a lost connection keeps its typed error. */
function holderLossReason(name: string, reason: unknown): unknown {
  if (reason instanceof LockError && reason.code === LeaseLostReason.ConnectionLost) return reason;
  const why = reason instanceof LockError ? reason.code : 'lost';
  return new DOMException(`lock ${JSON.stringify(name)} was ${why}`, 'AbortError');
}

function parseArguments<T>(rest: unknown[]): [LockOptions, LockGrantedCallback<T>] {
  const [first, second] = rest;
  const callback = rest.length >= 2 ? second : first;
  const options = rest.length >= 2 ? first : undefined;
  if (typeof callback !== 'function') throw new TypeError('locks.request() needs a callback function');
  if (options !== undefined && options !== null && typeof options !== 'object') {
    throw new TypeError('locks.request() options must be an object');
  }
  const given = (options ?? {}) as Record<string, unknown>;
  const { mode, signal } = given;
  if (mode !== undefined && mode !== 'exclusive' && mode !== 'shared') {
    throw new TypeError(`mode must be "exclusive" or "shared", got ${String(mode)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError('signal must be an AbortSignal');
  }
  const parsed: LockOptions = { mode, ifAvailable: Boolean(given.ifAvailable), steal: Boolean(given.steal), signal };
  return [parsed, callback as LockGrantedCallback<T>];
}

function validate(name: string, options: LockOptions): void {
  const notSupported = (message: string) => new DOMException(message, 'NotSupportedError');
  if (name.startsWith(RESERVED_PREFIX)) throw notSupported('lock names starting with "-" are reserved');
  if (options.steal && options.ifAvailable) throw notSupported('steal and ifAvailable cannot be combined');
  if (options.steal && options.mode === 'shared') throw notSupported('steal works only with exclusive locks');
  if (options.signal && (options.steal || options.ifAvailable)) {
    throw notSupported('signal cannot be combined with steal or ifAvailable');
  }
}
