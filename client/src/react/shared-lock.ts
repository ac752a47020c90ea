import type { LockClient } from '../lock-client.js';
import { LockController, type LockHookState, type LockRequest } from './lock-controller.js';

/** One key's controller on one client, and the handles that want it. */
interface SharedEntry {
  readonly controller: LockController;
  /** Handles between `acquire()` and `release()`. */
  readonly active: Set<LockHandle>;
  /** The acquire options of the handle that joined last; read when an acquire starts. */
  request: () => LockRequest;
}

/**
 * The controllers of one client, one per key. Kept per client rather than
 * per component because the server refuses a second request for a key the
 * session already waits for: every `useLock` of a key on one client must
 * go through one request.
 */
export class SharedLocks {
  readonly #entries = new Map<string, SharedEntry>();

  constructor(readonly client: LockClient) {}

  /** A handle on `key` for one component; it joins the shared request only once it acquires. */
  handle(key: string, request: () => LockRequest): LockHandle {
    return new LockHandle(this, key, request);
  }

  /** @internal */
  join(key: string, handle: LockHandle, request: () => LockRequest): LockController {
    let entry = this.#entries.get(key);
    if (!entry) {
      const created: SharedEntry = {
        controller: new LockController(this.client, key, () => created.request()),
        active: new Set(),
        request,
      };
      entry = created;
      this.#entries.set(key, entry);
    }
    entry.request = request;
    entry.active.add(handle);
    entry.controller.acquire();
    return entry.controller;
  }

  /** @internal Leaves; the last handle out cancels the request or releases the hold. */
  leave(key: string, handle: LockHandle): Promise<void> {
    const entry = this.#entries.get(key);
    if (!entry || !entry.active.delete(handle)) return Promise.resolve();
    if (entry.active.size > 0) return Promise.resolve();
    return entry.controller.release().then(() => {
      // Dropped only once settled, so a handle joining meanwhile queues behind the cancel on the same controller.
      if (entry.active.size === 0 && this.#entries.get(key) === entry) this.#entries.delete(key);
    });
  }
}

const IDLE: LockHookState = { status: 'idle', timedOut: false };

/**
 * One `useLock()`'s view of its key's shared request: `idle` until it
 * acquires, then the shared state (`waiting`, `held` with the one lease and
 * token, `lost`, `error`) until it releases. The hold ends when the last
 * handle on the key releases.
 */
export class LockHandle {
  readonly #listeners = new Set<() => void>();
  #controller: LockController | undefined;
  #unsubscribe: (() => void) | undefined;
  #left: Promise<void> = Promise.resolve();

  constructor(
    readonly shared: SharedLocks,
    readonly key: string,
    readonly request: () => LockRequest,
  ) {}

  /** `useSyncExternalStore`'s subscribe. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** `useSyncExternalStore`'s snapshot: the shared state while joined, else `idle`. */
  readonly getSnapshot = (): LockHookState => this.#controller?.getSnapshot() ?? IDLE;

  /** Joins the key's request (starting it, or again after a loss); never throws. */
  readonly acquire = (): void => {
    if (!this.#controller) {
      const controller = this.shared.join(this.key, this, this.request);
      this.#controller = controller;
      this.#unsubscribe = controller.subscribe(() => this.#notify());
    } else {
      this.shared.join(this.key, this, this.request);
    }
    this.#notify();
  };

  /**
   * Leaves the request; the state turns `idle` at once. The last handle
   * out cancels the request or releases the hold, and this resolves once
   * the hold is gone: the release accepted or the lock lost (a waiting
   * request: once it is given up, and a grant that raced its cancel
   * handed back). A release the server refuses
   * (`rate_limited`, `store_unavailable`, ...) is sent again with backoff
   * until it is accepted or the lock is lost, and this resolves only then;
   * meanwhile the key's next acquire on the client waits for it (see
   * `LockController.release`). Resolves at once when another handle still
   * wants the key (the hold stays). Never rejects.
   */
  readonly release = (): Promise<void> => {
    if (!this.#controller) return this.#left;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#controller = undefined;
    const left = this.shared.leave(this.key, this);
    this.#left = left;
    this.#notify();
    return left;
  };

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}
