import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { Clock } from './clock.js';

declare module 'ws' {
  namespace WebSocket {
    interface ServerOptions<
      U extends typeof WebSocket = typeof WebSocket,
      V extends typeof IncomingMessage = typeof IncomingMessage,
    > {
      /**
       * Ms after a close frame was sent (or answered) before `ws` destroys
       * the socket still open (default 30000). An option of `ws` 8.23 that
       * `@types/ws` 8.18 does not list.
       */
      closeTimeout?: number | undefined;
    }
  }
}

/**
 * How long a socket may take to be closed once its close handshake started
 * (the server sent or answered a close frame) before it is cut.
 */
export const CLOSE_HANDSHAKE_MS = 2000;

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
 * closing already; possibly more than once (FIN then reset): `dropped`
 * must be idempotent. Plain listeners, not `once` ones: each `once` wrapper
 * costs an idle connection about a hundred bytes of heap, for events that
 * come at most a few times anyway.
 */
export function whenDropped(ws: WebSocket, socket: Duplex, dropped: () => void): void {
  const seen = () => {
    if (ws.readyState === WebSocket.OPEN) dropped();
  };
  socket.prependListener('end', seen);
  socket.prependListener('error', seen);
}

/**
 * Calls `closed` once with the code of the peer's close frame (1005 for one
 * without a code) as soon as `ws` has received it, before its answer is
 * written out: a peer that is not reading leaves that answer queued behind
 * what the server sent it before, and its session must not live on
 * meanwhile, its queued acquires still grantable and its losses told to a
 * connection that sends nothing more. `ws` itself emits 'close' only once
 * the peer has also ended its TCP side (or its close timeout cut the
 * socket), which a wedged or hostile peer may put off.
 *
 * Looked at after each read of `socket`: `ws` parses what arrived in its
 * own 'data' listener, which comes first (so `ws` must have taken the
 * socket already), and has emitted every message before the close frame
 * by then. Also looked at when the socket's write side has ended (`ws`
 * ends it once its own close frame is written and the peer's received),
 * should `ws` have parsed the close frame later than the read that
 * brought it. Also called when the server started the close and the peer
 * answered it (the session has ended by then). Not called when the code
 * cannot be read: 'close' reports it then.
 */
export function whenCloseReceived(ws: WebSocket, socket: Duplex, closed: (code: number) => void): void {
  const look = () => {
    const code = receivedCloseCode(ws);
    if (code === null) return;
    socket.off('data', look);
    socket.off('finish', look);
    closed(code);
  };
  socket.on('data', look);
  socket.on('finish', look);
}

/**
 * The code of the close frame `ws` received, or null when none was received
 * (or this version of `ws` keeps it elsewhere). `ws` reports that code only
 * with its 'close' event; until then it is kept in private fields, read
 * here and nowhere else. Checked at run time, so a `ws` without them falls
 * back to 'close'.
 */
function receivedCloseCode(ws: WebSocket): number | null {
  if (!('_closeFrameReceived' in ws) || ws._closeFrameReceived !== true) return null;
  return '_closeCode' in ws && typeof ws._closeCode === 'number' ? ws._closeCode : null;
}
