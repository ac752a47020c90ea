import { MAX_LIST_LIMIT } from '@lockwire/protocol';
import {
  parseRequestArguments,
  validateRequest,
  type LockGrantedCallback,
  type LockInfo,
  type LockManagerSnapshot,
  type LockOptions,
  type WebLocksHost,
} from './web-lock.js';
import { WebLockQueue, type Waiter } from './web-lock-queue.js';

export { Lock } from './web-lock.js';
export type { LockGrantedCallback, LockInfo, LockManagerSnapshot, LockOptions, WebLocksHost } from './web-lock.js';

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
  readonly #queue: WebLockQueue;

  /** Created by `LockClient`. */
  constructor(host: WebLocksHost) {
    this.#host = host;
    this.#queue = new WebLockQueue(host);
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
    const [options, callback] = parseRequestArguments<T>(rest);
    const key = String(name);
    validateRequest(key, options);
    options.signal?.throwIfAborted();
    const holder = await this.#queue.obtain(key, options);
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
    await this.#queue.release(key, holder);
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
      const state = this.#queue.names.get(name);
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
    for (const [name, state] of this.#queue.names) {
      if (!seen.has(name)) pending.push(...waiting(name, state.queue));
    }
    return { held, pending };
  }
}
