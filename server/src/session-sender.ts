import type { ClientMessage, RequestId, WireError } from '@lockwire/protocol';
import { WebSocket } from 'ws';
import type { SessionHost } from './session.js';
import type { SessionId } from './store.js';

/** `ws.send` options of a text frame whose UTF-8 is given as a Buffer. */
const TEXT_FRAME = { binary: false } as const;

/**
 * A successful reply larger than `maxBufferedBytes` by itself, waiting for
 * the large frame before it to be written out: kept as its result, and
 * serialized only when its turn comes, so that one such frame exists at a
 * time.
 */
interface LargeReply {
  readonly id: RequestId;
  readonly result: object;
}

/** A frame waiting behind a large one: its text, or a large reply still to be serialized. */
type Waiting = string | Buffer | LargeReply;

/** Bytes of UTF-8 a frame's text takes. */
function byteSize(frame: string | Buffer): number {
  return typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
}

/**
 * The send path of one session: every frame the server sends on the
 * connection goes through here, and a reader that falls too far behind is
 * cut. Nothing is sent once the socket is no longer open.
 *
 * A frame that takes the backlog past `maxBufferedBytes` (a `list` reply
 * or `watch` snapshot at a large `limit` does so alone) is sent and left
 * out of the backlog until it is written out; meanwhile the connection's
 * requests are not read (the peer is pushed back instead of cut), and a
 * reply larger than the limit by itself, to a request read before, waits
 * until that frame is written, with every frame after it. So one such
 * frame is written at a time, each to a client that has taken in the one
 * before.
 */
export class SessionSender {
  /** Bytes of the large frame being written (see `sendLarge`); 0 when none. */
  private oversized = 0;
  /** Frames waiting, in order, for the large frame being written; only ever filled while `oversized` is set. */
  private waiting: Waiting[] = [];
  /** Bytes of the waiting frames that count toward the backlog: all but the large replies. */
  private waitingBytes = 0;

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

  /**
   * Sends a successful `reply` to request `id`, with `result`'s fields. One
   * larger than `maxBufferedBytes` by itself, while another large frame is
   * being written, waits for it (see the class).
   */
  reply(id: RequestId, result: object): void {
    const text = JSON.stringify({ type: 'reply', id, ok: true, ...result });
    if (this.oversized === 0 || this.ws.readyState !== WebSocket.OPEN) return this.send(text);
    const limit = this.host.limits.maxBufferedBytes;
    if (3 * text.length <= limit || Buffer.byteLength(text) <= limit) return this.send(text);
    // Judged as any frame being added; the text is dropped and built
    // again when its turn comes, not held meanwhile.
    if (this.cutIfSlow(this.backlog())) return;
    this.waiting.push({ id, result });
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
    this.send(bytes);
  }

  /**
   * Sends one text frame (a Buffer is its UTF-8); dropped when the socket
   * is not open. The connection is cut instead when the backlog already
   * waiting to be sent is over `maxBufferedBytes` (see `cutIfSlow`). Behind
   * a waiting large reply, the frame waits too, and counts.
   */
  send(data: string | Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const backlog = this.ws.bufferedAmount - this.oversized + this.waitingBytes;
    if (this.cutIfSlow(backlog)) return;
    if (this.waiting.length > 0) {
      this.waiting.push(data);
      this.waitingBytes += byteSize(data);
      return;
    }
    const limit = this.host.limits.maxBufferedBytes;
    // A UTF-16 code unit is at most 3 bytes of UTF-8: a frame that cannot
    // take the backlog past the limit is sent without measuring it.
    const bound = typeof data === 'string' ? 3 * data.length : data.length;
    if (this.oversized === 0 && backlog + bound > limit) {
      const size = byteSize(data);
      if (backlog + size > limit) return this.sendLarge(data, size);
    }
    if (typeof data === 'string') this.ws.send(data);
    else this.ws.send(data, TEXT_FRAME);
  }

  /**
   * Answers a WebSocket ping with a pong carrying `data`; dropped when the
   * socket is not open, and the connection is cut instead past
   * `maxBufferedBytes`: a peer that pings but never reads queues pongs as
   * any unread frame. A control frame, it never waits behind a large one.
   */
  pong(data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.cutIfSlow(this.backlog())) return;
    this.ws.pong(data);
  }

  /** Bytes waiting to be sent that count toward `maxBufferedBytes`. */
  private backlog(): number {
    return this.ws.bufferedAmount - this.oversized + this.waitingBytes;
  }

  /**
   * Sends the frame that takes the backlog past the limit and leaves it out
   * of the backlog until it is written out: the frames that follow it, sent
   * while a reading client is still taking it in, are not its fault. Until
   * then the connection's requests are not read, so no more replies are
   * asked for while it is written; `ws` reads on from where it stopped.
   */
  private sendLarge(data: string | Buffer, size: number): void {
    this.oversized = size;
    this.ws.pause();
    this.ws.send(data, TEXT_FRAME, () => this.written());
  }

  /**
   * The large frame is written out (or the socket is gone): the frames that
   * waited for it go in order, until one of them is large in turn; once
   * none waits, requests are read again.
   */
  private written(): void {
    this.oversized = 0;
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingBytes = 0;
    for (let i = 0; i < waiting.length; i++) {
      const frame = waiting[i];
      if (frame === undefined) continue;
      if (this.oversized > 0) {
        // Large in turn: the rest wait for this one, counted as before.
        this.waiting = waiting.slice(i);
        for (const rest of this.waiting) if (typeof rest === 'string' || Buffer.isBuffer(rest)) this.waitingBytes += byteSize(rest);
        return;
      }
      if (typeof frame === 'string' || Buffer.isBuffer(frame)) this.send(frame);
      else this.reply(frame.id, frame.result);
    }
    if (this.oversized === 0) this.ws.resume();
  }

  /**
   * Cuts the connection when `backlog`, the bytes already waiting to be sent
   * before a frame (less the large frame being written and the large
   * replies waiting for it), is over `maxBufferedBytes`: a reader that does
   * not keep up would make the server buffer without bound, so it is cut
   * (and its locks released) instead. The frame about to be sent does not
   * count, so a reply larger than the limit reaches a client that reads.
   * The server then holds at most the limit, the large frame being written
   * and the frame being sent, each bounded by the protocol's `limit` and
   * `maxPayload`, and the large replies to requests read before that frame
   * went out, kept as results. Returns true when it cut.
   */
  private cutIfSlow(backlog: number): boolean {
    if (backlog <= this.host.limits.maxBufferedBytes) return false;
    this.host.logger.info(
      { session: this.session, buffered: this.ws.bufferedAmount },
      'slow reader; terminating connection',
    );
    this.onSlowReader();
    // The session ends from the socket's 'close' event, on a later tick:
    // ending it here would run a store step inside the one whose effects
    // are being delivered.
    this.ws.terminate();
    return true;
  }
}
