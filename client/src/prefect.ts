import type { LockStatus } from '@lockwire/protocol';
import type { AcquireOptions } from './options.js';
import type { Lease } from './lease.js';

/** Options of `acquireLock()`; durations in milliseconds (Prefect's are seconds). */
export interface AcquireLockOptions {
  /** How long to wait for the lock; `null`/absent waits until granted, `0` tries once. */
  acquireTimeout?: number | null;
  /** The lock expires this long after it is granted; `null`/absent holds until released. */
  holdTimeout?: number | null;
  /** Gives up waiting: rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** Options of `waitForLock()`. */
export interface WaitForLockOptions {
  /** How long to wait, in milliseconds; `null`/absent waits as long as it takes. */
  timeout?: number | null;
  /** Gives up waiting: sends `cancel` and rejects with `signal.reason` at once. */
  signal?: AbortSignal;
}

/**
 * The face of Prefect's `LockManager` (`prefect.locking.protocol`), in
 * JavaScript names and milliseconds. The holder is always this connection,
 * so there is no holder argument to get wrong: two holders are two clients.
 */
export abstract class PrefectFace {
  abstract acquire(key: string, options?: AcquireOptions): Promise<Lease | null>;
  abstract wait(key: string, options?: WaitForLockOptions): Promise<boolean>;
  abstract status(key: string): Promise<LockStatus>;

  /**
   * Acquires `key` for this connection: `true` when granted (also when this
   * connection already holds it), `false` when `acquireTimeout` ran out or
   * the grant arrived already lost (taken away before its answer came).
   * The lease stays with the client; `releaseLock(key)` ends it.
   */
  async acquireLock(key: string, options: AcquireLockOptions = {}): Promise<boolean> {
    const lease = await this.acquire(key, {
      acquireTimeout: options.acquireTimeout,
      holdTimeout: options.holdTimeout,
      signal: options.signal,
    });
    return lease !== null && lease.held;
  }

  /**
   * Releases `key`.
   *
   * @throws LockError `not_holder` when this connection does not hold it (as
   * Prefect raises `ValueError`); nothing changes then.
   */
  abstract releaseLock(key: string): Promise<void>;

  /**
   * Waits until the holds on `key` that exist now have ended (released,
   * expired, stolen or their holder gone): `true`, at once for a free key;
   * `false` when `timeout` ran out first. Never acquires.
   */
  waitForLock(key: string, options: WaitForLockOptions = {}): Promise<boolean> {
    return this.wait(key, options);
  }

  /** True when anyone holds `key`. */
  async isLocked(key: string): Promise<boolean> {
    return (await this.status(key)).locked;
  }

  /** True when this connection holds `key`. */
  async isLockHolder(key: string): Promise<boolean> {
    return (await this.status(key)).heldByYou === true;
  }
}
