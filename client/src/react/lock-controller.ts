import { ClientErrorCode, LeaseLostReason, LockError } from '../errors.js';
import type { Lease } from '../lease.js';
import type { Grant } from '../lease-book.js';
import type { LockClient } from '../lock-client.js';
import type { AcquireOptions } from '../options.js';
import { pause } from '../reconnect.js';
import type { Watch } from '../watch.js';

/**
 * The state of one `useLock()`:
 * - `idle`: not holding and not asking (before `acquire()`, after `release()`,
 *   after the lease was released otherwise - `lease.release()`,
 *   `client.releaseLock(key)`, the end of a `withLock` whose hold it joined -
 *   or with `timedOut: true` when `acquireTimeout` ran out);
 * - `waiting`: the request is queued; `position` is the place in line
 *   (1 = next), `null` until the server said it had to wait. A request
 *   the connection drops (the server takes it out of the queue) stays
 *   `waiting`, with `position: null`, while the client reconnects, and is
 *   sent again once it is open: at the tail of the line, with what is left
 *   of `acquireTimeout` (counted from the first ask; none left: `idle` with
 *   `timedOut: true`);
 * - `held`: granted; `token` is the fencing token;
 * - `lost`: the lock was taken away (`expired`, `stolen`, `revoked`,
 *   `connection_lost`) without `release()`;
 * - `error`: the acquire failed (`error` is usually a `LockError`); also
 *   a request waiting for the reconnect when the client closes for good,
 *   with the acquire's `connection_lost`.
 */
export type LockHookState =
  | { status: 'idle'; timedOut: boolean }
  | { status: 'waiting'; position: number | null }
  | { status: 'held'; lease: Lease; token: number }
  | { status: 'lost'; reason: LeaseLostReason; error: LockError }
  | { status: 'error'; error: unknown };

/** What `useLock()` acquires with; read when each acquire starts. */
export type LockRequest = Omit<AcquireOptions, 'signal' | 'onQueued'> & {
  /** Keep `position` current as the line moves (one watch on the key while waiting). Default true. */
  trackPosition?: boolean;
};

const IDLE: LockHookState = { status: 'idle', timedOut: false };

/** How the wait for the client to be open again after a drop ended (see `LockController#reopened`). */
type Reopened = 'open' | 'closed' | 'timeout' | 'released';

/** Whether `error` is the failure of a call the connection's drop ended (not the client's close for good). */
function isDrop(error: unknown): boolean {
  return error instanceof LockError && error.code === ClientErrorCode.ConnectionLost;
}

/**
 * What is left of `acquireTimeout` for an acquire first asked at `started`
 * (`performance.now()` ms): no limit (`null`/absent) as given, else whole
 * ms, `0` or less when none is left (always so for a try-once `0`).
 */
function timeLeft(acquireTimeout: number | null | undefined, started: number): number | null | undefined {
  if (typeof acquireTimeout !== 'number') return acquireTimeout;
  return Math.ceil(acquireTimeout - (performance.now() - started));
}

/**
 * The external store behind `useLock()`: one key on one client, acquired
 * and released on demand, with immutable snapshots for
 * `useSyncExternalStore`. Framework-free, so it is tested without React.
 *
 * Each acquire starts only after the previous attempt has settled (its
 * request given up, its hold gone), because the server refuses a second
 * request for a key the session is still queued for - which a remount
 * (React's strict mode mounts twice) would otherwise cause - and answers an
 * acquire of a key the session still holds with that hold.
 *
 * An acquire that fails with `connection_lost` while the client is to
 * reconnect (a request waiting in the server's queue at a drop, which the
 * server takes out of the queue; one asked while the client reconnects) is
 * sent again within the same attempt once the client is open again (its
 * `reconnect`), with the same options and what is left of `acquireTimeout`
 * (counted from the first ask): the state stays `waiting` meanwhile, so no
 * second request of the key is ever sent beside it. It ends instead on
 * `release()` (nothing more is sent), when the client closes for good
 * (`error`, with that acquire's error) or when no time is left (`idle`,
 * `timedOut`). A hold granted before the drop is not asked for again: it
 * turns `lost`. Nor is a steal the drop cut off after it was sent: the
 * server may have carried it out, and stealing again could take the lock
 * from a client granted it since; it turns `error` (`connection_lost`).
 *
 * A key this client already holds otherwise (`acquire()`, `withLock`,
 * `acquireLock`) is answered with that hold: the controller shows it as
 * `held` but leaves it to its holder, as a `withLock` inside it does, so
 * `release()` only stops showing it. A lease it shows that is released by
 * anyone else (`lease.release()`, `client.releaseLock(key)`, that holder)
 * turns the state `idle`.
 */
export class LockController {
  #state: LockHookState = IDLE;
  readonly #listeners = new Set<() => void>();
  #generation = 0;
  #attempt: AbortController | undefined;
  #lease: Lease | undefined;
  /** Whether `#lease` is a hold this controller made (its to release), not one of the client's it joined. */
  #fresh = false;
  /** Stops following `#lease`'s release by others. */
  #unfollow: (() => void) | undefined;
  #settled: Promise<void> = Promise.resolve();

  constructor(
    readonly client: LockClient,
    readonly key: string,
    readonly request: () => LockRequest,
  ) {}

  /** `useSyncExternalStore`'s subscribe. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** `useSyncExternalStore`'s snapshot: the same object until the state changes. */
  readonly getSnapshot = (): LockHookState => this.#state;

  /** Starts acquiring unless already waiting or holding. Never throws: failures become the `error` state. */
  readonly acquire = (): void => {
    if (this.#state.status === 'waiting' || this.#state.status === 'held') return;
    const generation = ++this.#generation;
    const attempt = new AbortController();
    this.#attempt = attempt;
    this.#set({ status: 'waiting', position: null });
    const previous = this.#settled;
    this.#settled = this.#run(generation, attempt.signal, previous);
  };

  /**
   * Cancels a waiting request or releases the held lock; the state turns
   * `idle` at once. A hold the client had before (see the class) is left
   * to its holder and stays. Nobody is left to see a refused release
   * (`rate_limited`, `store_unavailable`, ...), so it is sent again with
   * backoff until the server accepts it or the lock is lost (see
   * `LockClient.releaseUntilGone`): the lock never stays held for the rest
   * of the session. Resolves once the hold is gone (a cancel: once the
   * request is given up); the next `acquire()` waits for that too, and so
   * does any other acquire of the key on the client (`acquire`, `withLock`,
   * `acquireLock`, a Web Lock request), since an acquire sent while the
   * session still holds the key would be answered with that very hold.
   * Never rejects. Idempotent.
   */
  readonly release = (): Promise<void> => {
    this.#generation++;
    this.#attempt?.abort();
    this.#attempt = undefined;
    const lease = this.#drop();
    if (this.#state !== IDLE) this.#set(IDLE);
    // Through the client, so that any acquire of the key on it (not only this controller's) waits for the release.
    const released = lease ? this.client.releaseUntilGone(lease) : undefined;
    // An acquire the abort gave up on before the server answered it may still be granted: the client hands that
    // grant back in the background, and the hold is gone only once it did (the abort recorded it just now).
    const handedBack = this.client.lettingGo(this.key);
    this.#settled = Promise.all([this.#settled, released, handedBack]).then(() => undefined);
    return this.#settled;
  };

  async #run(generation: number, signal: AbortSignal, previous: Promise<void>): Promise<void> {
    await previous;
    if (signal.aborted) return;
    const { trackPosition = true, ...options } = this.request();
    const started = performance.now();
    const left = () => timeLeft(options.acquireTimeout, started);
    let acquireTimeout = options.acquireTimeout;
    // Asked again after each drop that failed the request, until it is answered, released or given up.
    for (;;) {
      // A steal sent on an open connection may have been carried out when the drop lost its reply: not asked
      // again, as stealing again could take the lock from a client granted it since.
      const sentSteal = options.steal === true && this.client.state === 'open';
      try {
        const grant = await this.#ask(generation, signal, { ...options, acquireTimeout }, trackPosition);
        if (generation === this.#generation) this.#show(grant);
        // Released while the grant was on its way: hand it back (asked again while refused), unless it is a hold
        // the client had before, which stays its holder's.
        else if (grant?.fresh) await this.client.releaseUntilGone(grant.lease);
        return;
      } catch (error) {
        if (signal.aborted || generation !== this.#generation) return;
        const again = await this.#afterFailure(error, generation, signal, left, sentSteal);
        if (!again) return;
        acquireTimeout = again.acquireTimeout;
      }
    }
  }

  /**
   * The current attempt's acquire failed with `error`. A drop while the
   * client reconnects: waits, `waiting` with no place in line (the server
   * took the request out of its queue), until the client is open again, and
   * returns the `acquireTimeout` to ask again with (what is left). Otherwise
   * shows how the attempt ended and returns `undefined`: `error` (also when
   * the client closes for good meanwhile, and for a steal the drop cut off
   * after it was sent, `sentSteal`), `idle` with `timedOut` when no time is
   * left, nothing more once released.
   */
  async #afterFailure(
    error: unknown,
    generation: number,
    signal: AbortSignal,
    left: () => number | null | undefined,
    sentSteal: boolean,
  ): Promise<{ acquireTimeout: number | null | undefined } | undefined> {
    if (!isDrop(error) || sentSteal || this.client.state === 'closed') {
      this.#set({ status: 'error', error });
      return undefined;
    }
    const timeout = left();
    if (typeof timeout === 'number' && timeout <= 0) {
      this.#set({ status: 'idle', timedOut: true });
      return undefined;
    }
    if (this.#state.status !== 'waiting' || this.#state.position !== null) this.#set({ status: 'waiting', position: null });
    const reopened = await this.#reopened(signal, timeout);
    if (reopened === 'released' || generation !== this.#generation) return undefined;
    if (reopened === 'closed') {
      this.#set({ status: 'error', error });
      return undefined;
    }
    const acquireTimeout = left();
    if (reopened === 'timeout' || (typeof acquireTimeout === 'number' && acquireTimeout <= 0)) {
      this.#set({ status: 'idle', timedOut: true });
      return undefined;
    }
    return { acquireTimeout };
  }

  /**
   * Waits for the client to be open again after a drop: `open` at its
   * `reconnect` (at once when it is open already), `closed` when it closes
   * for good, `released` when `signal` aborts, `timeout` after `timeout` ms
   * (none for `null`/absent). The timer is the client's `pause`, ended with
   * the wait.
   */
  #reopened(signal: AbortSignal, timeout: number | null | undefined): Promise<Reopened> {
    if (signal.aborted) return Promise.resolve('released');
    if (this.client.state === 'closed') return Promise.resolve('closed');
    if (this.client.state === 'open') return Promise.resolve('open');
    return new Promise<Reopened>((resolve) => {
      const done = new AbortController();
      const end = (how: Reopened) => {
        if (done.signal.aborted) return;
        done.abort();
        stopReconnect();
        stopClose();
        signal.removeEventListener('abort', released);
        resolve(how);
      };
      const stopReconnect = this.client.on('reconnect', () => end('open'));
      const stopClose = this.client.on('close', () => end('closed'));
      const released = () => end('released');
      signal.addEventListener('abort', released, { once: true });
      if (typeof timeout === 'number') void pause(timeout, done.signal).then(() => end('timeout'));
    });
  }

  /** Sends the acquire once; `onQueued` shows the place in line, and follows it while `trackPosition`. */
  async #ask(generation: number, signal: AbortSignal, options: AcquireOptions, trackPosition: boolean): Promise<Grant | null> {
    let stopTracking: (() => void) | undefined;
    try {
      return await this.client.acquireGrant(this.key, {
        ...options,
        signal,
        onQueued: (position) => {
          if (generation !== this.#generation) return;
          this.#set({ status: 'waiting', position });
          if (trackPosition) stopTracking = this.#trackPosition(generation);
        },
      });
    } finally {
      // Each ask follows its own place in line: after a drop the watch of the old one is closed.
      stopTracking?.();
    }
  }

  /** The current attempt's acquire was answered: shows its hold, or `idle` when it timed out. */
  #show(grant: Grant | null): void {
    if (!grant) {
      this.#set({ status: 'idle', timedOut: true });
      return;
    }
    const { lease, fresh } = grant;
    this.#lease = lease;
    this.#fresh = fresh;
    // Lost before it got here (its `lost` came in the same read as the grant): the signal fires no more.
    if (lease.signal.aborted) {
      this.#lose(lease);
      return;
    }
    // Released before it got here (a joined hold whose holder let go of it): nothing to show.
    if (!lease.held) {
      this.#released(lease);
      return;
    }
    this.#set({ status: 'held', lease, token: lease.token });
    const lose = () => this.#lose(lease);
    lease.signal.addEventListener('abort', lose, { once: true });
    const stopReleased = lease.onReleased(() => this.#released(lease));
    this.#unfollow = () => {
      lease.signal.removeEventListener('abort', lose);
      stopReleased();
    };
  }

  /**
   * Stops showing the lease; returns it when it is this controller's to
   * release (one it made), `undefined` for none or a hold it joined.
   */
  #drop(): Lease | undefined {
    const lease = this.#lease;
    const fresh = this.#fresh;
    this.#unfollow?.();
    this.#unfollow = undefined;
    this.#lease = undefined;
    this.#fresh = false;
    return fresh ? lease : undefined;
  }

  /** Someone else released the shown `lease` (its own `release()`, `releaseLock(key)`): the state turns `idle`. */
  #released(lease: Lease): void {
    if (this.#lease !== lease) return;
    this.#drop();
    this.#set(IDLE);
  }

  /** The server took the held `lease` away: the state turns `lost` with its reason. */
  #lose(lease: Lease): void {
    if (this.#lease !== lease) return;
    this.#drop();
    const reason: unknown = lease.signal.reason;
    const error = reason instanceof LockError ? reason : new LockError(LeaseLostReason.ConnectionLost, String(reason));
    this.#set({ status: 'lost', reason: error.code as LeaseLostReason, error });
  }

  /**
   * Follows the line while waiting: grants and departures on the key move
   * it, so each asks the server for the queue again. Stale answers (and
   * failures, e.g. no watch permission) leave the last known position.
   */
  #trackPosition(generation: number): () => void {
    let stopped = false;
    let watch: Watch | undefined;
    let asked = 0;
    const refresh = async () => {
      const ask = ++asked;
      const status = await this.client.status(this.key);
      if (stopped || ask !== asked || generation !== this.#generation || this.#state.status !== 'waiting') return;
      const index = status.queue.findIndex((waiter) => waiter.session === this.client.session);
      if (index >= 0 && index + 1 !== this.#state.position) this.#set({ status: 'waiting', position: index + 1 });
    };
    this.client
      .watch(
        this.key,
        (event) => {
          if (event.key === this.key && (event.event === 'acquired' || event.event === 'dequeued')) {
            refresh().catch(() => undefined);
          }
        },
        // The exact key sorts first among the keys it prefixes, so one entry is enough.
        { limit: 1 },
      )
      .then(
        (started) => {
          if (stopped) {
            void started.close().catch(() => undefined);
            return;
          }
          watch = started;
          // The line may have moved between the `queued` message and the watch.
          refresh().catch(() => undefined);
        },
        () => undefined,
      );
    return () => {
      stopped = true;
      void watch?.close().catch(() => undefined);
    };
  }

  #set(state: LockHookState): void {
    this.#state = state;
    for (const listener of [...this.#listeners]) listener();
  }
}
