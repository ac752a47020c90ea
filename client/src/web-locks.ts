import { MAX_LIST_LIMIT, type LockMode } from '@lockwire/protocol';
import {
  parseRequestArguments,
  validateRequest,
  type LockGrantedCallback,
  type LockInfo,
  type LockManagerSnapshot,
  type LockOptions,
} from './web-lock.js';
import type { HoldReleases } from './hold-release.js';
import { WebLockQueue, type Waiter, type WebLockQueueHost } from './web-lock-queue.js';

export { Lock } from './web-lock.js';
export type { LockGrantedCallback, LockInfo, LockManagerSnapshot, LockOptions, WebLocksHost } from './web-lock.js';

/**
 * `client.locks`: the Web Locks API (`navigator.locks`) across tabs, devices
 * and users. Names are server keys; `clientId` is the session id.
 *
 * Within one client, requests for a name queue locally in request order and
 * share the session's one server hold (shared requests share a shared hold
 * while nobody waits in the server queue); the server orders clients. A name's next local request joins the server
 * queue only once this client's holders of it are done.
 */
export class LockManager {
  readonly #host: WebLockQueueHost;
  readonly #queue: WebLockQueue;

  /** Created by `LockClient`; `releases` records the holds it releases in the background. */
  constructor(host: WebLockQueueHost, releases: HoldReleases) {
    this.#host = host;
    this.#queue = new WebLockQueue(host, releases);
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
   *
   * A drop the client reconnects from fails no waiting request: one waiting
   * here, and one whose acquire the server had queued (or whose grant the
   * drop lost before the callback ran), waits for the reconnect and is then
   * sent again, at the back of the server queue (it loses its place there);
   * an `ifAvailable` one whose answer the drop lost is asked again, still
   * try-once. Only a `steal` in flight, and an `ifAvailable` or `steal`
   * request made while the client reconnects, reject with `connection_lost`;
   * a held request rejects so when its lock goes with the connection. A
   * waiting request rejects with `connection_closed` when the client closes
   * for good, and with `connection_lost` on a drop the client does not
   * reconnect from.
   */
  request<T>(name: string, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  request<T>(name: string, options: LockOptions, callback: LockGrantedCallback<T>): Promise<Awaited<T>>;
  async request<T>(name: string, ...rest: unknown[]): Promise<Awaited<T>> {
    // The name is converted first, as WebIDL converts a DOMString (a Symbol throws a TypeError).
    const key = `${name}`;
    const [options, callback] = parseRequestArguments<T>(rest);
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
    // A steal of this client made before the callback settled may still take the lock (see `release`).
    const robbed = await this.#queue.release(key, holder);
    if (robbed) throw robbed.reason;
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }

  /**
   * A snapshot of the server's held and pending locks, this client's own
   * entries as its requests see them (each shared request and each queued
   * request counted). Covers at most 10,000 locked keys.
   *
   * `held` is in grant order: by fencing token, which rises with every grant
   * across all keys of a store (a shared hold this client shares lists each
   * of its requests at the hold's place). `pending` is in request order as
   * far as the server's millisecond `since` tells (requests of one
   * millisecond in key order, then queue order); this client's requests not
   * yet in the server queue (waiting behind its own holders) come last, in
   * the order they were made.
   *
   * This client's own holders and requests are listed also for names the
   * server's `list` leaves out (credentials without `watch` on them, or past
   * the 10,000 keys): holders at their hold's place by fencing token,
   * requests with those not yet in the server queue, since the client
   * cannot see where they stand in it.
   */
  async query(): Promise<LockManagerSnapshot> {
    const { locks } = await this.#host.list({ prefix: '', limit: MAX_LIST_LIMIT });
    const self = this.#host.session;
    const held: Ranked[] = [];
    const pending: Ranked[] = [];
    const seen = new Set<string>();
    const info = (name: string, mode: LockMode, clientId: string): LockInfo => ({ name, mode, clientId });
    // Not in the server queue yet: after every request that is, in the order made.
    const local = (name: string, waiter: Waiter): Ranked => ({
      lock: info(name, waiter.mode, self),
      order: [Infinity, waiter.made],
    });
    for (const status of locks) {
      const name = status.key;
      const state = this.#queue.names.get(name);
      seen.add(name);
      // The server may have granted an acquire whose reply this client has not handled yet: it is held.
      let granted: Waiter | undefined;
      for (const { session, mode, token, since } of status.holders) {
        const at = (lock: LockInfo) => held.push({ lock, order: [token, since, held.length] });
        if (session !== self || !state) at(info(name, mode, session));
        else if (state.held.size > 0) {
          for (const holder of state.held) at(info(name, holder.lock.mode, self));
        } else {
          granted = state.queue.find((waiter) => waiter.inFlight);
          at(info(name, granted?.mode ?? mode, self));
        }
      }
      // The one request of this client the server has in its queue is the one whose acquire is in flight.
      const asking = state?.queue.find((waiter) => waiter.inFlight && waiter !== granted);
      let listed: Waiter | undefined;
      for (const { session, mode, since } of status.queue) {
        const at = (lock: LockInfo) => pending.push({ lock, order: [since, pending.length] });
        if (session !== self || !state) at(info(name, mode, session));
        else if (asking) at(info(name, (listed = asking).mode, self));
      }
      for (const waiter of state?.queue ?? []) {
        if (waiter !== granted && waiter !== listed) pending.push(local(name, waiter));
      }
    }
    // Names the server did not list: its credentials may not watch them (list leaves them out), or the list was
    // cut at its limit. This client's own holders and requests of them are still known here.
    for (const [name, state] of this.#queue.names) {
      if (seen.has(name)) continue;
      for (const holder of state.held) {
        held.push({ lock: info(name, holder.lock.mode, self), order: [holder.lock.token, 0, held.length] });
      }
      for (const waiter of state.queue) pending.push(local(name, waiter));
    }
    return { held: inOrder(held), pending: inOrder(pending) };
  }
}

/** A `query()` entry and what it is sorted by, compared element by element. */
interface Ranked {
  readonly lock: LockInfo;
  readonly order: readonly number[];
}

function inOrder(entries: Ranked[]): LockInfo[] {
  const compare = (a: Ranked, b: Ranked) => {
    for (let i = 0; i < a.order.length; i += 1) {
      const difference = (a.order[i] ?? 0) - (b.order[i] ?? 0);
      if (difference !== 0 && !Number.isNaN(difference)) return difference;
    }
    return 0;
  };
  return entries.sort(compare).map((entry) => entry.lock);
}
