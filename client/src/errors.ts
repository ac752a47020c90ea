import { ErrorCode, LostReason } from '@lockwire/protocol';

/** Why a lease stopped being held without its holder releasing it. */
export const LeaseLostReason = {
  ...LostReason,
  /** The connection ended; the server released (or, with session grace, parked) every lock. */
  ConnectionLost: 'connection_lost',
} as const;
export type LeaseLostReason = (typeof LeaseLostReason)[keyof typeof LeaseLostReason];

/**
 * Error codes the client raises on its own, next to the protocol's
 * {@link ErrorCode}s that come from the server.
 */
export const ClientErrorCode = {
  ...LeaseLostReason,
  /**
   * The client is closed (by `close()`, or after reconnecting gave up), or
   * never connected; nothing more will be answered. An established
   * connection that drops fails its pending calls with `connection_lost`.
   */
  ConnectionClosed: 'connection_closed',
  /** `withLock` could not acquire the key within its `acquireTimeout`. */
  NotAcquired: 'not_acquired',
  /** The server sent a frame this client cannot read; the connection is closed. */
  ProtocolError: 'protocol_error',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** Every `code` a {@link LockError} can carry. */
export type LockErrorCode = ErrorCode | ClientErrorCode;

/** Details of a closed connection, attached to `connection_closed` errors. */
export interface CloseInfo {
  /** The WebSocket close code (1000 normal, 1001 server draining, 1006 abnormal, ...). */
  code: number;
  /** The close reason text, possibly empty. */
  reason: string;
  /** True when this client called `close()`. */
  byClient: boolean;
  /**
   * True (else absent) when the transport closed the connection as its page
   * left: the browser transport's 1000 'page left' on `pagehide`. The server
   * ended the session on that close, grace or not, unless the 1000 never
   * reached it (a dead network path): the client ends its leases at once and
   * still resumes when it reconnects, to find out and free what the server
   * kept. Any other close, a 1000 from a proxy too, is a drop the session
   * may be resumed from.
   */
  pageLeft?: true;
}

/**
 * The client's one error class. `code` is the wire error code for errors the
 * server answered with (`not_holder`, `bad_request`, ...), or one of
 * {@link ClientErrorCode} for conditions the client detects itself. A lost
 * lease's `signal.reason` is a `LockError` whose code is the
 * {@link LeaseLostReason}.
 */
export class LockError extends Error {
  override readonly name = 'LockError';
  /** Set on `connection_closed` and `connection_lost` errors. */
  readonly close: CloseInfo | undefined;

  constructor(
    readonly code: LockErrorCode,
    message: string,
    options: { cause?: unknown; close?: CloseInfo } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.close = options.close;
  }
}

/**
 * True for the `LockError`s of a connection that is gone (`connection_lost`,
 * `connection_closed`): the server has already let go of what the call was about.
 */
export function isConnectionError(error: unknown): boolean {
  return (
    error instanceof LockError &&
    (error.code === ClientErrorCode.ConnectionLost || error.code === ClientErrorCode.ConnectionClosed)
  );
}

/** The error pending calls are rejected with when the connection closes. */
export function connectionClosedError(close: CloseInfo, cause?: unknown): LockError {
  const how = close.byClient ? 'closed by the client' : 'closed';
  const detail = close.reason ? `: ${close.reason}` : '';
  return new LockError(
    ClientErrorCode.ConnectionClosed,
    `connection ${how} (code ${close.code}${detail})`,
    { cause, close },
  );
}

/** The error pending calls are rejected with when an open connection drops (the client may reconnect). */
export function connectionLostError(close: CloseInfo, cause?: unknown): LockError {
  const detail = close.reason ? `: ${close.reason}` : '';
  return new LockError(ClientErrorCode.ConnectionLost, `connection lost (code ${close.code}${detail})`, {
    cause,
    close,
  });
}

/** The reason a lease's signal aborts with. */
export function leaseLostError(key: string, reason: LeaseLostReason, close?: CloseInfo): LockError {
  const why =
    reason === LeaseLostReason.ConnectionLost ? 'the connection ended' : `it was ${reason}`;
  return new LockError(reason, `lock ${JSON.stringify(key)} lost: ${why}`, close ? { close } : {});
}
