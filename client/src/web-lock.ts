import type { Limits, ListResult, LockMode } from '@lockwire/protocol';
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
  /**
   * Grant only if possible at once; otherwise the callback gets `null`. One
   * whose answer a drop lost is asked again once the client reconnected;
   * one made while the client reconnects rejects with `connection_lost`.
   */
  ifAvailable?: boolean;
  /**
   * Take the lock from its holders (their `request()` rejects with an
   * `AbortError`), this client's own included; exclusive only. The steal is
   * a new grant with a new, larger fencing token: over a hold of this
   * client, the client hands the hold back, then acquires with `steal`.
   * A steal the server refuses rejects with the refusal. Over an exclusive
   * hold of this client the server is asked first: a refusal of that first
   * request (`forbidden`, `rate_limited`, `store_unavailable`) leaves the
   * hold and its holders as they were, and so does a refused hand-back
   * (exclusive or shared). A refusal of the final steal acquire (rare over
   * an exclusive hold: `rate_limited`, `store_unavailable`; over a shared
   * one, which cannot be asked first, also `forbidden`) comes after the hold
   * was given up: the holders' requests have rejected with an `AbortError`.
   * A steal in flight when the connection drops rejects with
   * `connection_lost` and is not asked again: the server may have carried
   * it out, and stealing again could take the lock from a client granted
   * it since.
   */
  steal?: boolean;
  /**
   * Gives up while waiting, also while waiting for the client to reconnect:
   * `request()` rejects with `signal.reason` (nothing more is sent for it).
   * Ignored once granted.
   */
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
  /** The server's announced limits; `rateLimit` paces the release of a hold the server refused to release. */
  readonly limits: Limits;
  acquire(key: string, options: AcquireOptions): Promise<Lease | null>;
  list(options: { prefix?: string; limit?: number }): Promise<ListResult>;
}

const RESERVED_PREFIX = '-';

/**
 * Reads `locks.request()`'s arguments (`callback` or `options, callback`) as
 * the Web Locks API does.
 *
 * @throws TypeError for a missing callback, options that are not an object,
 * a bad mode or a signal that is not an `AbortSignal`.
 */
export function parseRequestArguments<T>(rest: unknown[]): [LockOptions, LockGrantedCallback<T>] {
  const [first, second] = rest;
  const callback = rest.length >= 2 ? second : first;
  const options = rest.length >= 2 ? first : undefined;
  if (typeof callback !== 'function') throw new TypeError('locks.request() needs a callback function');
  // A dictionary, as WebIDL reads one: any object (a function too), or nothing.
  if (options !== undefined && options !== null && typeof options !== 'object' && typeof options !== 'function') {
    throw new TypeError('locks.request() options must be an object');
  }
  const given = (options ?? {}) as Record<string, unknown>;
  const { signal } = given;
  // An enum value is converted to a string before it is checked (a Symbol throws a TypeError).
  const mode = given.mode === undefined ? undefined : `${given.mode as string}`;
  if (mode !== undefined && mode !== 'exclusive' && mode !== 'shared') {
    throw new TypeError(`mode must be "exclusive" or "shared", got ${mode}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError('signal must be an AbortSignal');
  }
  const parsed: LockOptions = { mode, ifAvailable: Boolean(given.ifAvailable), steal: Boolean(given.steal), signal };
  return [parsed, callback as LockGrantedCallback<T>];
}

/**
 * Rejects the requests the Web Locks API does not support.
 *
 * @throws DOMException `NotSupportedError` for names starting with `-`,
 * `steal` with `ifAvailable` or `shared`, and `signal` with `steal` or `ifAvailable`.
 */
export function validateRequest(name: string, options: LockOptions): void {
  const notSupported = (message: string) => new DOMException(message, 'NotSupportedError');
  if (name.startsWith(RESERVED_PREFIX)) throw notSupported('lock names starting with "-" are reserved');
  if (options.steal && options.ifAvailable) throw notSupported('steal and ifAvailable cannot be combined');
  if (options.steal && options.mode === 'shared') throw notSupported('steal works only with exclusive locks');
  if (options.signal && (options.steal || options.ifAvailable)) {
    throw notSupported('signal cannot be combined with steal or ifAvailable');
  }
}
