import { ErrorCode } from '@lockwire/protocol';
import { ClientErrorCode, LockError } from '@lockwire/client';

/** Exit codes shared by the client tools (sysexits.h names). */
export const ToolExit = {
  Ok: 0,
  Usage: 2,
  /**
   * EX_UNAVAILABLE: the server could not be reached (or answered the connect with 503), the connection ended, or the
   * server is draining or without its store. A refused token (401, 403) exits 1: trying again would not help.
   */
  Unavailable: 69,
  /** EX_SOFTWARE: `lockwire run` lost its lock while the command ran. */
  LockLost: 70,
  /** EX_TEMPFAIL: `lockwire run` was not granted the lock within `--wait`. */
  NotAcquired: 75,
  /**
   * 128 + SIGPIPE: the reader of `status`'s or `watch`'s output went away
   * (`| head -1`), as a tool that died of SIGPIPE would report. Noticed, as
   * SIGPIPE is, by the next write that fails: Node has no way to watch a
   * pipe that nothing is being written to.
   */
  OutputClosed: 141,
} as const;

/**
 * The server answered the WebSocket upgrade with an HTTP status instead of
 * switching protocols. Its message says what the status means to a user of
 * the tools.
 */
export class UpgradeRefusedError extends Error {
  override readonly name = 'UpgradeRefusedError';
  constructor(readonly status: number) {
    super(refusalMessage(status));
  }
}

function refusalMessage(status: number): string {
  if (status === 401) return 'unauthorized: the token is missing, invalid or expired (HTTP 401)';
  if (status === 403) return 'forbidden: the server refused this client (HTTP 403)';
  if (status === 503) return 'the server is draining or at its connection limit (HTTP 503)';
  if (status === 404) return 'not found: the URL is not a lockwire WebSocket endpoint (its path is /v1) (HTTP 404)';
  return `the server refused the WebSocket upgrade (HTTP ${status})`;
}

/** Client errors of the upgrade that say the request may succeed later as it is: a timeout, too many requests. */
const RETRIABLE_CLIENT_ERRORS: ReadonlySet<number> = new Set([408, 429]);

/**
 * Exit code of a failed connect: 1 when the server refused the upgrade with a
 * client error (401 or 403 for the credentials, 404 for a path that is not
 * the server's `/v1`...), which trying again will not change; otherwise
 * {@link ToolExit.Unavailable}, as for a server that cannot be reached or
 * is draining (503).
 */
export function connectExitCodeFor(error: unknown): number {
  if (!(error instanceof UpgradeRefusedError)) return ToolExit.Unavailable;
  const clientError = error.status >= 400 && error.status < 500 && !RETRIABLE_CLIENT_ERRORS.has(error.status);
  return clientError ? 1 : ToolExit.Unavailable;
}

/**
 * Refusals that say the server cannot serve right now rather than that the
 * request is wrong: a draining server (`shutting_down`) and a store it cannot
 * reach (`store_unavailable`). Trying again later, or against another
 * server, may succeed, as after a connection that ended.
 */
const UNAVAILABLE_CODES: ReadonlySet<string> = new Set([
  ClientErrorCode.ConnectionClosed,
  ClientErrorCode.ConnectionLost,
  ErrorCode.ShuttingDown,
  ErrorCode.StoreUnavailable,
]);

/**
 * A server that welcomed the tool did not answer one of its requests within
 * the deadline: paused, overloaded, or behind a path that went silent.
 */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError';
}

/**
 * Exit code of a failed call: {@link ToolExit.Unavailable} when the
 * connection is gone, the server did not answer in time
 * ({@link NoAnswerError}), is draining or its store is unavailable;
 * 1 for anything else the server refused (`forbidden`, `too_many_waiters`...).
 */
export function exitCodeFor(error: unknown): number {
  if (error instanceof NoAnswerError) return ToolExit.Unavailable;
  return error instanceof LockError && UNAVAILABLE_CODES.has(error.code) ? ToolExit.Unavailable : 1;
}
