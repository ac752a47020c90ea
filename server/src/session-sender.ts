import type { ClientMessage, RequestId, WireError } from '@lockwire/protocol';
import { WebSocket } from 'ws';
import type { SessionHost } from './session.js';
import type { SessionId } from './store.js';

/** `ws.send` options of a text frame whose UTF-8 is given as a Buffer. */
const TEXT_FRAME = { binary: false } as const;

/**
 * The send path of one session: every frame the server sends on the
 * connection goes through here, and a reader that falls too far behind is
 * cut. Nothing is sent once the socket is no longer open.
 */
export class SessionSender {
  /**
   * @param onSlowReader called when the connection is cut for a slow reader,
   *   just before the socket is terminated: the session must not keep its
   *   locks for a resume then.
   */
  constructor(
    private readonly session: SessionId,
    private readonly ws: WebSocket,
    private readonly host: Pick<SessionHost, 'limits' | 'logger' | 'metrics'>,
    private readonly onSlowReader: () => void,
  ) {}

  /** Sends a successful `reply` to request `id`, with `result`'s fields. */
  reply(id: RequestId, result: object): void {
    this.send(JSON.stringify({ type: 'reply', id, ok: true, ...result }));
  }

  /** Answers with an error; counted and logged (never with the request's content). */
  replyError(id: RequestId | null, error: WireError, op: ClientMessage['op'] | null = null): void {
    this.host.metrics.error(error.code);
    this.host.logger.info({ session: this.session, code: error.code, op, id }, 'error reply');
    this.send(JSON.stringify({ type: 'reply', id, ok: false, error }));
  }

  /**
   * Sends an event's UTF-8 JSON as a text frame. `ws` frames a Buffer as it
   * is, where a string would be encoded to UTF-8 again for every watcher.
   */
  sendEvent(bytes: Buffer): void {
    this.send(bytes, TEXT_FRAME);
  }

  /** Sends one text frame; dropped when the socket is not open, and the connection is cut past `maxBufferedBytes`. */
  send(data: string | Buffer, options: { binary: false } | null = null): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (options) this.ws.send(data, options);
    else this.ws.send(data);
    this.cutIfSlow();
  }

  /**
   * Answers a WebSocket ping with a pong carrying `data`; dropped when the
   * socket is not open, and the connection is cut past `maxBufferedBytes`:
   * a peer that pings but never reads queues pongs as any unread frame.
   */
  pong(data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.pong(data);
    this.cutIfSlow();
  }

  /**
   * Cuts the connection once more than `maxBufferedBytes` wait to be sent:
   * a reader that does not keep up would make the server buffer without
   * bound, so it is cut (and its locks released) instead.
   */
  private cutIfSlow(): void {
    if (this.ws.bufferedAmount > this.host.limits.maxBufferedBytes) {
      this.host.logger.info({ session: this.session, buffered: this.ws.bufferedAmount }, 'slow reader; terminating connection');
      this.onSlowReader();
      // The session ends from the socket's 'close' event, on a later tick:
      // ending it here would run a store step inside the one whose effects
      // are being delivered.
      this.ws.terminate();
    }
  }
}
