import type { ListResult, LockMode, LockStatus, LostReason, LockEventType } from '@lockwire/protocol';
import type { LockError } from './errors.js';

/**
 * `createLockServer` failed because its store's `start` did (e.g. a Redis
 * that cannot be reached): `cause` is the store's error, whose message this
 * one repeats. The server never listened.
 */
export class StoreStartError extends Error {
  override readonly name = 'StoreStartError';
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** The server's name for a connection; the lock holder. */
export type SessionId = string;

/**
 * The server-wide id of one pending `acquire` or `wait`, chosen by the
 * session layer (unique per server process). The store reports the fate of a
 * pending request by its ticket.
 */
export type Ticket = number;

export type Meta = Record<string, unknown>;

export interface AcquireInput {
  ticket: Ticket;
  key: string;
  mode: LockMode;
  /** ms to wait in the queue; `null` waits indefinitely, `0` never queues. */
  acquireTimeout: number | null;
  /** ms the lock is held after the grant; `null` until released. */
  holdTimeout: number | null;
  steal: boolean;
  meta: Meta | null;
}

export interface Grant {
  key: string;
  token: number;
  expiresAt: number | null;
}

/** What `acquire` did at once. A `queued` request is settled later through the listener. */
export type AcquireOutcome =
  | ({ status: 'granted' } & Grant)
  | { status: 'queued'; position: number }
  | { status: 'not_granted' };

export interface WaitInput {
  ticket: Ticket;
  key: string;
  /** ms; `null` waits indefinitely. */
  timeout: number | null;
}

export interface LostLock {
  key: string;
  token: number;
  reason: LostReason;
}

/** One state change of a key, as watchers see it (the wire `event` without `type`). */
export interface LockEvent {
  key: string;
  event: LockEventType;
  session: SessionId;
  token?: number;
  mode: LockMode;
  meta: Meta | null;
  holders: number;
  waiters: number;
  at: number;
}

/**
 * How a store tells the session layer what happened to requests it could not
 * answer at once, and to locks taken away. Calls arrive in the order the
 * changes happened: a `lost` always precedes the grant it made room for.
 * Every settlement of a ticket comes after the `acquire`/`wait` promise that
 * created it has resolved, except `failed`: a store that gives up its
 * requests while their calls are still out (a Redis node that stopped
 * vouching) may fail one first, and the session then answers that failure,
 * whatever the promise resolves to later.
 */
export interface StoreListener {
  /** A queued acquire was granted. */
  granted(session: SessionId, ticket: Ticket, grant: Grant): void;
  /** A queued acquire's `acquireTimeout` passed: answered `acquired: false`. */
  acquireTimedOut(session: SessionId, ticket: Ticket): void;
  /** A pending wait ended: `free` true when the holds it waited on ended, false on timeout. */
  waitDone(session: SessionId, ticket: Ticket, free: boolean): void;
  /** A lock this session held was taken away without its asking. */
  lost(session: SessionId, lost: LostLock): void;
  /**
   * A pending acquire or wait cannot be settled because the store lost
   * contact with its backing (e.g. a Redis node that can no longer vouch for
   * its requests): the request is answered with `error`, usually
   * `store_unavailable`. Optional: without it a store answers such an acquire
   * `acquired: false` and such a wait `free: false`.
   */
  failed?(session: SessionId, ticket: Ticket, error: LockError): void;
}

export interface WatchHandle {
  /** The gap-free snapshot, as `list` gives it, taken in the step that started the stream. */
  snapshot: ListResult;
  /** Stops the stream; idempotent. */
  stop(): void;
}

/**
 * How `closeSession` ends the session's holds: `released`, as by their
 * holder (a disconnect), or `revoked`, taken back from it (its credentials
 * expired): each is reported `lost` with reason `revoked` to the listener and
 * watchers see `revoked`.
 */
export type SessionEnd = 'released' | 'revoked';

/** The limits a store enforces itself, in every call, whichever server calls it. */
export interface StoreLimits {
  /** Keys one session may hold or queue for at once; one more acquire is `too_many_locks`. */
  maxLocksPerSession: number;
  /** Waiters one key's queue may hold; one more is `too_many_waiters`. */
  maxWaitersPerKey: number;
}

/** Whether a store can serve calls now, as `GET /readyz` reports it. */
export interface StoreReadiness {
  readonly ready: boolean;
  /** Why it cannot, for people (the `store_unavailable` message its calls would fail with); only when not ready. */
  readonly reason?: string;
}

/**
 * The lock table. The session layer talks only to this interface; the memory
 * store (default) and the Redis store implement it, and one conformance suite
 * runs against both.
 *
 * Failures are thrown as `LockError` with the wire code (`bad_request`,
 * `not_holder`, `too_many_locks`, `too_many_waiters`, `store_unavailable`);
 * a failed call changes nothing.
 */
export interface LockStore {
  /** `memory` or `redis`: shown in metrics and `/healthz`. */
  readonly kind: string;
  /**
   * The limits this store enforces, as its options set them: a server
   * announces these in `welcome.limits`, and refuses to start with other
   * values of them in its own `limits`.
   */
  readonly limits: Readonly<StoreLimits>;
  /**
   * Whether the store can serve now, read from the state it keeps (no round
   * trip to its backing, so a health checker may call it as often as it
   * likes): e.g. a Redis node is not ready while Redis is unreachable, while
   * it registers anew after giving up its id, or during its holdoff after
   * Redis lost its state. Optional: a store without it (the memory store) is
   * always ready. Never throws.
   */
  readiness?(): StoreReadiness;
  /** Connects the store to its listener; called once before any other call. */
  start(listener: StoreListener): Promise<void>;
  acquire(session: SessionId, input: AcquireInput): Promise<AcquireOutcome>;
  /** Throws `not_holder` when the session does not hold the key. */
  release(session: SessionId, key: string): Promise<void>;
  /** Sets the hold to expire `holdTimeout` ms from now (`null`: never). Returns the new `expiresAt`. */
  extend(session: SessionId, key: string, holdTimeout: number | null): Promise<number | null>;
  /** `free` when nobody holds the key now; else `pending`, settled later by `waitDone`. */
  wait(session: SessionId, input: WaitInput): Promise<'free' | 'pending'>;
  /** Removes a pending acquire or wait. True if it was pending (it is then never settled). */
  cancel(session: SessionId, ticket: Ticket): Promise<boolean>;
  /** `viewer` sets `heldByYou`; `null` omits it. */
  status(key: string, viewer: SessionId | null): Promise<LockStatus>;
  /** Locked keys starting with `prefix`, in UTF-16 code-unit order, at most `limit`. */
  list(prefix: string, limit: number, viewer: SessionId | null): Promise<ListResult>;
  /** Starts a stream of events for keys starting with `prefix`. */
  watch(
    prefix: string,
    limit: number,
    viewer: SessionId | null,
    sink: (event: LockEvent) => void,
  ): Promise<WatchHandle>;
  /** Force-releases every hold on the key (`lost` revoked); returns how many. */
  revoke(key: string): Promise<number>;
  /**
   * Ends a session: its pending requests leave their queues first, then its
   * holds end as `end` says (default `released`), each next waiter granted
   * in the same step. Nothing of the session is settled afterwards; with
   * `revoked`, the listener hears each hold's `lost` before the grant it
   * made room for, as for a `revoke`.
   */
  closeSession(session: SessionId, end?: SessionEnd): Promise<void>;
  /**
   * Resolves once every change of the table made before the call that
   * `session` is owed news of (the `lost` of a steal made through another
   * node, a grant of its queued request, an event for a watch) has been
   * told to this store's listener, so an answer that touches no lock
   * (`ping`) given after it comes after those pushes. Never rejects; gives
   * up after a bounded wait when the store cannot tell. Optional: a store
   * that hears every change at once (the memory store) has none.
   */
  sync?(session: SessionId): Promise<void>;
  /** Releases resources (timers, connections). Idempotent. */
  close(): Promise<void>;
}
