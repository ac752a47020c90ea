import type { ClientMessage, RequestId, WireError } from '@lockwire/protocol';
import { WebSocket } from 'ws';
import type { SessionHost } from './session-host.js';
import type { SessionId } from './store.js';
import type { Corkable } from './write-turns.js';

/** `ws.send` options of a text frame whose UTF-8 is given as a Buffer. */
const TEXT_FRAME = { binary: false } as const;

/**
 * Bytes of frames a connection gathers in one turn before they are written
 * at once (see `WriteTurns`): a burst of thousands of events goes out in
 * writes of about this size rather than all at the turn's end.
 */
const MAX_GATHERED_BYTES = 64 * 1024;

/**
 * The send path of one session: every frame the server sends on the
 * connection goes through here, and a reader that falls too far behind is
 * cut. Nothing is sent once the socket is no longer open.
 */
export class SessionSender {
  /** Bytes of the oversized frame still being written (see `sendOversized`); 0 when none. */
  private oversized = 0;
  /** The write turn this connection last sent a frame in (see `WriteTurns`); 0 before its first. */
  private lastTurn = 0;
  /** The write turn whose frames the socket is gathering (corked); 0 when none. */
  private gathering = 0;
  /** The backlog when the gathering began: the gathered frames are not written yet, not unread. */
  private gatheredOver = 0;

  /**
   * @param socket the connection's socket, which `ws` writes to: frames after
   *   the first of a write turn are gathered on it. Without one, each frame is
   *   written as it is sent.
   */
  constructor(
    private readonly session: SessionId,
    private readonly ws: WebSocket,
    private readonly host: Pick<SessionHost, 'limits' | 'logger' | 'metrics' | 'writeTurns' | 'closes'>,
    private readonly socket: Corkable | null = null,
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

  /**
   * Sends one text frame; dropped when the socket is not open. The
   * connection is cut instead when the backlog already waiting to be sent is
   * over `maxBufferedBytes` (see `cutIfSlow`).
   */
  send(data: string | Buffer, options: { binary: false } | null = null): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const backlog = this.backlog();
    if (this.cutIfSlow(backlog)) return;
    const limit = this.host.limits.maxBufferedBytes;
    // A UTF-16 code unit is at most 3 bytes of UTF-8: a frame that cannot
    // take the backlog past the limit is sent without measuring it.
    const bound = typeof data === 'string' ? 3 * data.length : data.length;
    if (this.oversized === 0 && backlog + bound > limit) {
      const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
      if (backlog + size > limit) {
        this.writeGathered();
        return this.sendOversized(data, size);
      }
    }
    this.gather();
    if (options) this.ws.send(data, options);
    else this.ws.send(data);
  }

  /**
   * The bytes waiting to be written before the next frame that count
   * against `maxBufferedBytes`: the backlog as it stood when this turn's
   * gathering began while it goes on (the gathered frames wait for the
   * turn's end, not for the reader), less the one oversized frame.
   */
  private backlog(): number {
    if (this.gathering === this.host.writeTurns.current) return this.gatheredOver;
    return this.ws.bufferedAmount - this.oversized;
  }

  /**
   * Lets the next frame be written at once when it is the connection's first
   * of this write turn, else gathers it (see `WriteTurns`). Past
   * `MAX_GATHERED_BYTES` gathered, those are written now and gathering starts
   * over, so a burst holds at most that much beyond `maxBufferedBytes`.
   */
  private gather(): void {
    if (!this.socket) return;
    const turns = this.host.writeTurns;
    const turn = turns.current;
    if (this.gathering === turn) {
      if (this.ws.bufferedAmount - this.oversized - this.gatheredOver <= MAX_GATHERED_BYTES) return;
      this.socket.uncork();
    } else if (this.lastTurn !== turn) {
      this.lastTurn = turn;
      turns.wrote();
      return;
    }
    this.gathering = turn;
    this.gatheredOver = this.ws.bufferedAmount - this.oversized;
    turns.hold(this.socket);
  }

  /** Writes the frames gathered in this turn now. */
  private writeGathered(): void {
    if (this.gathering !== this.host.writeTurns.current) return;
    this.gathering = 0;
    this.socket?.uncork();
  }

  /**
   * Answers a WebSocket ping with a pong carrying `data`; dropped when the
   * socket is not open, and the connection is cut instead past
   * `maxBufferedBytes`: a peer that pings but never reads queues pongs as
   * any unread frame.
   */
  pong(data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.cutIfSlow(this.backlog())) return;
    this.ws.pong(data);
  }

  /**
   * Sends the frame that takes the backlog past the limit (a `list` reply or
   * `watch` snapshot at a large `limit` does so alone) and leaves it out of
   * the backlog until it is written out: the frames that follow it, sent
   * while a reading client is still taking it in, are not its fault. One
   * such frame at a time.
   */
  private sendOversized(data: string | Buffer, size: number): void {
    this.oversized = size;
    this.ws.send(data, TEXT_FRAME, () => {
      this.oversized = 0;
    });
  }

  /**
   * Cuts the connection when `backlog`, the bytes already waiting to be sent
   * before a frame (less the one oversized frame being written), is over
   * `maxBufferedBytes`: a reader that does not keep up would make the server
   * buffer without bound, so it is cut instead. Its session ends as on a
   * drop, keeping its locks for the session grace when that is on: a
   * paused or slow client whose backlog grew may well come back for them.
   * The frame about to be sent does not count, so a reply larger than the
   * limit reaches a client that reads, nor do the frames gathered in this
   * turn (see `backlog`); the server then holds at most the limit, one
   * oversized frame, `MAX_GATHERED_BYTES` and the frame being sent, each
   * bounded by the protocol's `limit` and `maxPayload`. Returns true when it cut.
   */
  private cutIfSlow(backlog: number): boolean {
    if (backlog <= this.host.limits.maxBufferedBytes) return false;
    this.host.logger.info(
      { session: this.session, buffered: this.ws.bufferedAmount },
      'slow reader; terminating connection',
    );
    // The session ends from the socket's 'close' event, on a later tick:
    // ending it here would run a store step inside the one whose effects
    // are being delivered.
    this.host.closes.terminate(this.ws);
    return true;
  }
}
