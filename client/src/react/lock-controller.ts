import { LeaseLostReason, LockError } from '../errors.js';
import type { Lease } from '../lease.js';
import type { LockClient } from '../lock-client.js';
import type { AcquireOptions } from '../options.js';
import type { Watch } from '../watch.js';

/**
 * The state of one `useLock()`:
 * - `idle`: not holding and not asking (before `acquire()`, after `release()`,
 *   after the lease was released otherwise - `lease.release()`,
 *   `client.releaseLock(key)`, the end of a `withLock` whose hold it joined -
 *   or with `timedOut: true` when `acquireTimeout` ran out);
 * - `waiting`: the request is queued; `position` is the place in line
 *   (1 = next), `null` until the server said it had to wait;
 * - `held`: granted; `token` is the fencing token;
 * - `lost`: the lock was taken away (`expired`, `stolen`, `revoked`,
 *   `connection_lost`) without `release()`;
 * - `error`: the acquire failed (`error` is usually a `LockError`).
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
    let stopTracking: (() => void) | undefined;
    try {
      const grant = await this.client.acquireGrant(this.key, {
        ...options,
        signal,
        onQueued: (position) => {
          if (generation !== this.#generation) return;
          this.#set({ status: 'waiting', position });
          if (trackPosition) stopTracking = this.#trackPosition(generation);
        },
      });
      if (generation !== this.#generation) {
        // Released while the grant was on its way: hand it back (asked again while refused), unless it is a hold
        // the client had before, which stays its holder's.
        if (grant?.fresh) await this.client.releaseUntilGone(grant.lease);
        return;
      }
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
    } catch (error) {
      if (signal.aborted || generation !== this.#generation) return;
      this.#set({ status: 'error', error });
    } finally {
      stopTracking?.();
    }
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
