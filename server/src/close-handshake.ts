import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { Clock } from './clock.js';

/** How long a socket the server closes may take to finish its close handshake before it is cut. */
const CLOSE_HANDSHAKE_MS = 2000;

/**
 * Closes `ws` with `code` and cuts it (`terminate`) when the peer has not
 * finished the close handshake within {@link CLOSE_HANDSHAKE_MS} of `clock`.
 * A socket already closing keeps the code it was closed with (a second
 * close frame is never sent) but gets the cut all the same; a closed one is
 * left alone.
 *
 * @returns resolves once the socket is closed, never rejects.
 */
export function closeWithinHandshake(ws: WebSocket, code: number, reason: string, clock: Clock): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  ws.close(code, reason);
  return cutAfterHandshake(ws, clock);
}

/**
 * Cuts `ws` unless it is closed within {@link CLOSE_HANDSHAKE_MS} of
 * `clock`, for a socket that is being closed. Until its socket is closed a
 * connection still counts against `maxConnections`; without the cut, a peer
 * that never answers the close frame would hold it for `ws`'s own timeout
 * (30 s).
 *
 * @returns resolves once the socket is closed, never rejects.
 */
export function cutAfterHandshake(ws: WebSocket, clock: Clock): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  const cut = clock.setTimeout(() => ws.terminate(), CLOSE_HANDSHAKE_MS);
  return closed.finally(() => clock.clearTimeout(cut));
}

/**
 * Calls `dropped` as soon as the peer of `ws` is seen gone without a close
 * frame (its FIN, or a reset on `socket`, the connection's socket), instead
 * of at `ws`'s 'close': `ws` emits that only after it has shut the socket's
 * write side and the handle has closed, a few event-loop turns later, so the
 * locks of a dropped holder would reach their next waiters that much later.
 * The listeners are put before `ws`'s own, which mark the connection
 * CLOSING: still OPEN there means no close frame was received or sent, so
 * 'close' will report a drop (1006). Not called when the connection was
 * closing already; at most once per listener, so possibly twice (FIN then
 * reset): `dropped` must be idempotent.
 */
export function whenDropped(ws: WebSocket, socket: Duplex, dropped: () => void): void {
  const seen = () => {
    if (ws.readyState === WebSocket.OPEN) dropped();
  };
  socket.prependOnceListener('end', seen);
  socket.prependOnceListener('error', seen);
}
