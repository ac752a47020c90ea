import { CloseCode } from '@lockwire/protocol';
import { WebSocket } from 'ws';
import type { Clock } from './clock.js';
import { closeWithinHandshake } from './close-handshake.js';

/** Who ended a connection first, as its `connection closed` log line says. */
export interface ConnectionCloser {
  /** `server` when the server closed or cut the connection before the peer's close frame or drop; else `peer`. */
  closedBy: 'server' | 'peer';
  /** The code of the server's close frame when it closed first; null when it cut without one, or the peer was first. */
  serverCode: number | null;
}

/**
 * The close codes `ws` sends when it closes a connection itself over a
 * refused frame, by the error's `code` (ws `lib/receiver.js`); any other
 * `WS_ERR_*` is a protocol error, closed with 1002.
 */
const REFUSED_FRAME_CLOSE_CODES: Readonly<Record<string, number>> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: CloseCode.MessageTooBig,
  // Invalid frame payload data (RFC 6455).
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: CloseCode.PolicyViolation,
};
/** Protocol error (RFC 6455). */
const PROTOCOL_ERROR = 1002;

/**
 * The closes one server started: every place the server closes or cuts a
 * connection goes through here, so its `connection closed` line can say
 * whether the server ended it first, and with which code. Only the first
 * close counts: the server's is recorded only while the connection is still
 * open (`ws` leaves OPEN as soon as it reads the peer's close frame or sees
 * a drop), and a later cut of a close left unanswered keeps it. Kept by
 * socket, not on the session: shutdown closes every socket of `wss.clients`,
 * a superseded one among them whose session has left the server's map. A
 * connection the server never closed costs nothing here.
 */
export class ServerCloses {
  readonly #codes = new WeakMap<WebSocket, number | null>();

  /** Closes `ws` with a close frame of `code`. */
  close(ws: WebSocket, code: number, reason: string): void {
    this.#started(ws, code);
    ws.close(code, reason);
  }

  /** Cuts `ws` without a close frame. */
  terminate(ws: WebSocket): void {
    this.#started(ws, null);
    ws.terminate();
  }

  /** Closes `ws` with `code`, cut if the peer leaves the close unanswered; see `closeWithinHandshake`. */
  closeWithinHandshake(ws: WebSocket, code: number, reason: string, clock: Clock): Promise<void> {
    this.#started(ws, code);
    return closeWithinHandshake(ws, code, reason, clock);
  }

  /**
   * `ws` reported `error` and is closing: it closed the connection itself
   * over a refused frame (too large, not UTF-8, a protocol error), with the
   * code its error's `code` maps to. `ws`'s receiver reads nothing after
   * the peer's close frame, so such an error means the server was first.
   */
  refused(ws: WebSocket, error: Error): void {
    const name = 'code' in error && typeof error.code === 'string' ? error.code : null;
    if (name === null || !name.startsWith('WS_ERR_') || this.#codes.has(ws)) return;
    this.#codes.set(ws, REFUSED_FRAME_CLOSE_CODES[name] ?? PROTOCOL_ERROR);
  }

  /** Who ended `ws` first; read once it has closed. */
  closer(ws: WebSocket): ConnectionCloser {
    const code = this.#codes.get(ws);
    return code === undefined ? { closedBy: 'peer', serverCode: null } : { closedBy: 'server', serverCode: code };
  }

  #started(ws: WebSocket, code: number | null): void {
    if (ws.readyState === WebSocket.OPEN && !this.#codes.has(ws)) this.#codes.set(ws, code);
  }
}
