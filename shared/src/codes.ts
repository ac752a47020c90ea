/** The protocol version this package speaks; sent as `welcome.protocol`. */
export const PROTOCOL_VERSION = 1 as const;

/** The WebSocket path of protocol version 1. */
export const PROTOCOL_PATH = '/v1' as const;

/**
 * Stable error codes. Each is both the wire `error.code` and the `code` of
 * the error classes on either side.
 */
export const ErrorCode = {
  BadRequest: 'bad_request',
  DuplicateId: 'duplicate_id',
  NotHolder: 'not_holder',
  Cancelled: 'cancelled',
  TooManyLocks: 'too_many_locks',
  TooManyWaiters: 'too_many_waiters',
  RateLimited: 'rate_limited',
  Unauthorized: 'unauthorized',
  Forbidden: 'forbidden',
  ShuttingDown: 'shutting_down',
  StoreUnavailable: 'store_unavailable',
  Internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const errorCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** True when `code` is one of the protocol's error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && errorCodes.has(code);
}

/** WebSocket close codes the server uses. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  InternalError: 1011,
  Superseded: 4001,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Why a holder lost a lock it did not release itself. */
export const LostReason = {
  Expired: 'expired',
  Stolen: 'stolen',
  Revoked: 'revoked',
} as const;
export type LostReason = (typeof LostReason)[keyof typeof LostReason];

/** The `event` values pushed to watchers. */
export const LockEventType = {
  Acquired: 'acquired',
  Released: 'released',
  Expired: 'expired',
  Stolen: 'stolen',
  Revoked: 'revoked',
  Queued: 'queued',
  Dequeued: 'dequeued',
} as const;
export type LockEventType = (typeof LockEventType)[keyof typeof LockEventType];

export const LockMode = {
  Exclusive: 'exclusive',
  Shared: 'shared',
} as const;
export type LockMode = (typeof LockMode)[keyof typeof LockMode];

/** Largest duration in milliseconds the protocol accepts (2^31 - 1, as setTimeout). */
export const MAX_DURATION_MS = 2_147_483_647;

/** Largest `meta` object, in bytes of the UTF-8 of its compact JSON. */
export const MAX_META_BYTES = 1024;

/** Largest and default `limit` of `list` and `watch`. */
export const MAX_LIST_LIMIT = 10_000;
export const DEFAULT_LIST_LIMIT = 1000;

/** Limits a server announces in `welcome.limits`, with their defaults. */
export const DEFAULT_LIMITS = {
  maxPayload: 64 * 1024,
  maxKeyLength: 256,
  maxLocksPerSession: 1000,
  maxWaitersPerKey: 10_000,
} as const;
