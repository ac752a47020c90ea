import type { LockMode } from '@lockwire/protocol';
import { leaseLostError, type CloseInfo, type LeaseLostReason } from './errors.js';

/** What a lease asks of the client that granted it. */
export interface LeaseOwner {
  /** Sends `release` for the lease's key. */
  releaseLease(lease: Lease): Promise<void>;
  /** Sends `extend`; records and resolves with the new `expiresAt`. */
  extendLease(lease: Lease, holdTimeout: number | null): Promise<number | null>;
}

/** The client's handle on a lease's private state; never given to users. */
export interface LeaseControl {
  /** Marks the lease lost and aborts its signal with the reason. No-op unless held. */
  lose(reason: LeaseLostReason, close?: CloseInfo): void;
  /**
   * Marks the lease released (it was released through the client, not the
   * lease) and tells its `onReleased` listeners. No-op unless held.
   */
  markReleased(): void;
  /** Records a new expiry after a successful `extend`. */
  setExpiresAt(expiresAt: number | null): void;
}

/** The grant a lease is made from. */
export interface LeaseInit {
  key: string;
  mode: LockMode;
  token: number;
  expiresAt: number | null;
}

/** Whether a lease is still held, was released by its holder, or was lost. */
export type LeaseState = 'held' | 'released' | 'lost';

/**
 * A lock this connection holds: the result of `client.acquire()`.
 *
 * - `token` is the fencing token: pass it to the resource you protect, which
 *   should refuse writes carrying a token lower than one it has seen.
 * - `signal` aborts when the lock is lost without `release()`: its reason is a
 *   `LockError` with code `expired`, `stolen`, `revoked` or `connection_lost`.
 *   A release the server accepted does not abort it; a loss that reaches the
 *   client before the release was answered does. A grant whose lock was
 *   reported lost before its reply came is a lease lost from the start.
 * - `release()` is idempotent, and a no-op once the lease is lost;
 *   `await using` releases on scope exit.
 */
export class Lease {
  readonly key: string;
  readonly mode: LockMode;
  readonly token: number;
  #expiresAt: number | null;
  #state: LeaseState = 'held';
  #releasing: Promise<void> | undefined;
  readonly #controller = new AbortController();
  /** Told once when the lease turns `released`, whoever released it (see `onReleased`). */
  readonly #releasedListeners = new Set<() => void>();
  readonly #owner: LeaseOwner;

  /** Leases are created by `LockClient`, which receives the lease's control through `adopt`. */
  constructor(init: LeaseInit, owner: LeaseOwner, adopt: (control: LeaseControl) => void) {
    this.key = init.key;
    this.mode = init.mode;
    this.token = init.token;
    this.#expiresAt = init.expiresAt;
    this.#owner = owner;
    adopt({
      lose: (reason, close) => {
        if (this.#state !== 'held') return;
        this.#state = 'lost';
        // A lost lease is never released: nobody is told of it any more.
        this.#releasedListeners.clear();
        this.#controller.abort(leaseLostError(this.key, reason, close));
      },
      markReleased: () => this.#markReleased(),
      setExpiresAt: (expiresAt) => {
        this.#expiresAt = expiresAt;
      },
    });
  }

  /** When the hold expires (server epoch ms), or `null` without a hold timeout. */
  get expiresAt(): number | null {
    return this.#expiresAt;
  }

  /** `held` until `release()` or a loss. */
  get state(): LeaseState {
    return this.#state;
  }

  /** True while the lease is held. */
  get held(): boolean {
    return this.#state === 'held';
  }

  /** Aborts when the lock is lost; `reason` is a `LockError` naming why. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Releases the lock. Calling it again, or after the lease was lost, does
   * nothing (a concurrent second call waits for the first). A lease whose
   * connection closed resolves: the server released the lock already. The
   * lease stays `held` until the server answered.
   *
   * @throws LockError for server errors other than `not_holder` (which only
   * means the loss had not reached this client yet): the server refused
   * (`rate_limited`, `store_unavailable`, ...) and still holds the lock, so
   * the lease stays held and in `client.leases`, and calling `release()`
   * again sends a new release.
   */
  release(): Promise<void> {
    if (this.#releasing) return this.#releasing;
    if (this.#state !== 'held') return Promise.resolve();
    const releasing = this.#owner.releaseLease(this).then(
      () => this.#markReleased(),
      (error: unknown) => {
        // The server refused (`rate_limited`, `store_unavailable`, ...) and still holds the lock:
        // the lease stays held, and the next call sends a new release.
        if (this.#releasing === releasing) this.#releasing = undefined;
        throw error;
      },
    );
    this.#releasing = releasing;
    return releasing;
  }

  /** The hold ended by a release (of the lease, or of its key through the client): `released`, and told so. */
  #markReleased(): void {
    if (this.#state !== 'held') return;
    this.#state = 'released';
    const listeners = [...this.#releasedListeners];
    this.#releasedListeners.clear();
    for (const listener of listeners) listener();
  }

  /**
   * Sets the hold to expire `holdTimeout` ms from now (`null`: never);
   * resolves with the new `expiresAt`, which the lease then reports.
   *
   * @throws LockError `bad_request` for a `holdTimeout` the protocol does
   * not take (`NaN`, `Infinity`, negative, above 2147483647), sending
   * nothing; `not_holder` if the lease is no longer held.
   */
  extend(holdTimeout: number | null): Promise<number | null> {
    return this.#owner.extendLease(this, holdTimeout);
  }

  /**
   * @internal Used by the React hooks (`useLock`), which show a lease
   * somebody else may release (`lease.release()`, `client.releaseLock(key)`,
   * the `withLock` or `acquire()` whose hold the hook joined). Calls
   * `listener` once when the lease turns `released`, by whatever path; never
   * for a loss (the `signal` tells that) nor for a lease no longer held.
   * `listener` runs as the release takes effect, so it must not throw.
   * Returns a function that stops listening.
   */
  onReleased(listener: () => void): () => void {
    if (this.#state !== 'held') return () => undefined;
    // Wrapped, so that the same function listening twice is told twice and each stop ends its own listening.
    const once = () => listener();
    this.#releasedListeners.add(once);
    return () => void this.#releasedListeners.delete(once);
  }

  /** Releases the lock (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
