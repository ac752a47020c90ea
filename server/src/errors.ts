import { ErrorCode, isErrorCode, type WireError } from '@lockwire/protocol';

/**
 * The server's one error class. `code` is the wire error code the request is
 * answered with; anything that is not a `LockError` becomes `internal` at the
 * session boundary.
 */
export class LockError extends Error {
  override readonly name = 'LockError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }

  /** The `error` object of a failed reply. */
  toWire(): WireError {
    return { code: this.code, message: this.message };
  }
}

/** Maps any thrown value to the wire error it is answered with. */
export function toWireError(error: unknown): WireError {
  if (error instanceof LockError && isErrorCode(error.code)) return error.toWire();
  return internalWireError();
}

/** The wire error of a failure the server did not expect (a bug): `internal`, telling nothing of its cause. */
export function internalWireError(): WireError {
  return { code: ErrorCode.Internal, message: 'internal error' };
}

export const badRequest = (message: string) => new LockError(ErrorCode.BadRequest, message);
export const notHolder = (key: string) =>
  new LockError(ErrorCode.NotHolder, `key: this session does not hold ${JSON.stringify(key)}`);
