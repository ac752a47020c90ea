import { invokeSafely } from './emitter.js';
import {
  decodeServerMessage,
  ErrorCode,
  type EventMessage,
  type LostMessage,
  type Op,
  type ReplyMessage,
  type RequestOf,
  type WelcomeMessage,
} from '@lockwire/protocol';
import {
  ClientErrorCode,
  connectionClosedError,
  connectionLostError,
  LockError,
  type CloseInfo,
} from './errors.js';
import { Keepalive, welcomeDeadline, type KeepalivePolicy } from './keepalive.js';
import { deferred, PendingCalls, type PendingCall, type RequestOptions } from './pending-calls.js';
import { ABNORMAL_CLOSURE, NORMAL_CLOSURE, type Transport, type TransportFactory } from './transport.js';

/** A request's fields without `op` and `id`, which the connection adds. */
export type RequestFields<O extends Op> = Omit<RequestOf<O>, 'op' | 'id'>;

/** Pushes and the end of the connection, reported to the client that owns it. */
export interface ConnectionHandlers {
  lost(message: LostMessage): void;
  event(message: EventMessage): void;
  /**
   * Called once when an open connection ends, after every pending call was
   * rejected with `error` (`connection_lost` when the socket dropped,
   * `connection_closed` after `close()`, `protocol_error`).
   */
  closed(close: CloseInfo, error: LockError): void;
}

/**
 * The code a connection taken for dead is closed with. Not 1000: should the path come back and the closing
 * frame reach the server, the server takes any other code for a drop and keeps the session for its grace.
 */
const KEEPALIVE_CLOSURE = 4000;

/** ms the client waits for the server's answer to its close frame, without a keepalive policy, before dropping the socket. */
const CLOSE_HANDSHAKE_TIMEOUT = 2000;

/** Options of {@link Connection.open}. */
export interface ConnectionOpenOptions {
  /** Aborts the open while it waits for the welcome. */
  signal?: AbortSignal;
  /** How the connection notices a silent network path; `null` (the default): it does not. */
  keepalive?: KeepalivePolicy | null;
}

const utf8 = new TextEncoder();

/**
 * The UTF-8 length of `frame` when it is over `max` bytes, else null. A UTF-16 code unit takes at most 3
 * bytes, so the frames of everyday requests are let through without being encoded.
 */
function frameTooLarge(frame: string, max: number): number | null {
  if (frame.length * 3 <= max) return null;
  const bytes = utf8.encode(frame).length;
  return bytes > max ? bytes : null;
}

/** How `Connection#abortOpen` closes the socket of the connect it fails. */
interface AbortOpenOptions {
  /** Default 1000. */
  code?: number;
  /** Default `'connect aborted'`. */
  closeReason?: string;
  /**
   * Drop the socket without waiting for the closing handshake, for a server that said nothing and so will
   * not answer one either. Default `false`.
   */
  abortTransport?: boolean;
}

/**
 * One WebSocket connection speaking protocol v1: waits for `welcome`,
 * numbers requests 1, 2, 3, ..., matches replies to them, and hands pushes
 * to its owner. It is used once: when it closes, a new `Connection` takes
 * its place (which is how reconnecting fits in).
 *
 * Every frame is decoded with `decodeServerMessage`; a frame that does not
 * decode, or a reply whose result does not match its op, is a protocol error:
 * the connection closes and every pending call rejects with `protocol_error`.
 */
export class Connection {
  #state: 'connecting' | 'open' | 'closed' = 'connecting';
  readonly #pending = new PendingCalls((detail) => this.#protocolError(detail));
  readonly #handlers: ConnectionHandlers;
  readonly #opened = deferred<WelcomeMessage>();
  readonly #ended = deferred<void>();
  /** Aborted when the connection closes, for work bound to this connection alone (see `closedSignal`). */
  readonly #closed = new AbortController();
  readonly #transport: Transport;
  #closeError: LockError | undefined;
  #lastTransportError: unknown;
  readonly #keepalivePolicy: KeepalivePolicy | null;
  /** Runs while open, with a keepalive policy. */
  #keepalive: Keepalive | undefined;
  /** Fails the open when no welcome came in time, with a keepalive policy. */
  #welcomeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Numbers the keepalive's pings, whose string ids leave the numbering of requests alone. */
  #keepalivePings = 0;
  /** The largest frame the server reads (its welcome's `limits.maxPayload`); a larger one would close the connection. */
  #maxPayload = Infinity;

  private constructor(
    url: string,
    factory: TransportFactory,
    handlers: ConnectionHandlers,
    keepalive: KeepalivePolicy | null,
  ) {
    this.#handlers = handlers;
    this.#keepalivePolicy = keepalive;
    this.#transport = factory(url, {
      open: () => {},
      message: (text) => this.#onFrame(text),
      error: (error) => {
        this.#lastTransportError = error;
      },
      close: (code, reason, pageLeft) => this.#onTransportClose(code, reason, pageLeft === true),
    });
    if (keepalive && this.#state === 'connecting') {
      const ms = welcomeDeadline(keepalive);
      this.#welcomeTimer = setTimeout(() => this.#noWelcome(ms), ms);
    }
  }

  /**
   * Opens a connection and resolves once the server's `welcome` arrived.
   * With a `keepalive` policy, the open fails when no welcome arrived within
   * `interval + timeout` ms, and once open the connection pings the server
   * after `interval` ms of silence and is taken for dead (a drop: pending
   * calls reject with `connection_lost`, `closed` is called) when nothing
   * arrived within `timeout` ms of the ping.
   *
   * @throws LockError `connection_closed` when the socket closes first (its
   * `cause` is the transport's error) or no welcome came in time (code
   * 1006), `protocol_error` when the first frame is not a welcome;
   * `signal.reason` when `signal` aborts first.
   */
  static async open(
    url: string,
    factory: TransportFactory,
    handlers: ConnectionHandlers,
    { signal, keepalive = null }: ConnectionOpenOptions = {},
  ): Promise<{ connection: Connection; welcome: WelcomeMessage }> {
    signal?.throwIfAborted();
    const connection = new Connection(url, factory, handlers, keepalive);
    const onAbort = () => connection.#abortOpen(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const welcome = await connection.#opened.promise;
      return { connection, welcome };
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** True until the connection closed (by either side). */
  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /**
   * Aborts once the connection has closed (by either side, or a failed
   * open), after its pending calls were rejected. Work that must never
   * reach another connection (a retry of a request about this session's
   * state on this one) stops on it.
   */
  get closedSignal(): AbortSignal {
    return this.#closed.signal;
  }

  /** Number of requests sent and not yet answered. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Sends one request. The returned `result` rejects with the server's error
   * as a `LockError`, or with the close error if the connection is or becomes
   * closed before the reply.
   */
  request<O extends Op, T>(
    op: O,
    fields: RequestFields<O>,
    options: RequestOptions<O, T>,
  ): PendingCall<T> {
    const id = this.#pending.nextId();
    const call = deferred<T>();
    if (this.#state !== 'open' || this.#closeError) {
      call.reject(this.#closeError ?? new LockError(ClientErrorCode.ConnectionClosed, 'not connected'));
      return { id, result: call.promise };
    }
    const frame = JSON.stringify({ op, id, ...fields });
    const size = frameTooLarge(frame, this.#maxPayload);
    if (size !== null) {
      // The server would close the connection with 1009 for it, and with that drop every lease of the session
      // (or leave them to its grace): the one call is refused instead, as a field the server refuses is.
      call.reject(
        new LockError(
          ErrorCode.BadRequest,
          `${op}: the request is ${size} bytes of JSON, over the server's maxPayload of ${this.#maxPayload} bytes (a key or meta too long?)`,
        ),
      );
      return { id, result: call.promise };
    }
    this.#pending.add(id, op, options, call);
    try {
      this.#transport.send(frame);
    } catch (error) {
      this.#pending.delete(id);
      call.reject(error);
    }
    return { id, result: call.promise };
  }

  /**
   * Closes the connection. Pending calls reject at once with
   * `connection_closed`; resolves when the socket has closed. Idempotent.
   */
  close(reason = 'client closed'): Promise<void> {
    if (this.#state !== 'closed') {
      const close: CloseInfo = { code: NORMAL_CLOSURE, reason, byClient: true };
      this.#shutdown(close, connectionClosedError(close));
      this.#closeTransportBounded(reason);
    }
    return this.#ended.promise;
  }

  /**
   * Starts the closing handshake, and drops the socket (through the transport's `abort`) when the server has
   * not answered it within the keepalive's `timeout` (`CLOSE_HANDSHAKE_TIMEOUT` without keepalive): behind a
   * path gone silent the answer never comes, and `ws` would wait 30 s for it. The close frame is sent first
   * either way, so a server that reads it ends the session as for any close with its code.
   */
  #closeTransportBounded(reason: string): void {
    this.#closeTransport(reason);
    const timer = setTimeout(
      () => this.#closeTransport(reason, NORMAL_CLOSURE, true),
      this.#keepalivePolicy?.timeout ?? CLOSE_HANDSHAKE_TIMEOUT,
    );
    void this.#ended.promise.then(() => clearTimeout(timer));
  }

  /** Fails a connect still waiting for its welcome with `reason`, and closes the socket as `options` say. */
  #abortOpen(reason: unknown, options: AbortOpenOptions = {}): void {
    const { code = NORMAL_CLOSURE, closeReason = 'connect aborted', abortTransport = false } = options;
    if (this.#state !== 'connecting') return;
    this.#state = 'closed';
    clearTimeout(this.#welcomeTimer);
    this.#opened.reject(reason);
    this.#closed.abort(reason);
    this.#closeTransport(closeReason, code, abortTransport);
  }

  /**
   * No welcome within `ms`: a server behind a silent path (or too slow to answer) fails the open. Not with
   * 1000: a resume the server is still about to take must leave the session to its grace when that close
   * reaches it.
   */
  #noWelcome(ms: number): void {
    const close: CloseInfo = { code: ABNORMAL_CLOSURE, reason: `no welcome within ${ms} ms`, byClient: false };
    this.#abortOpen(connectionClosedError(close), {
      code: KEEPALIVE_CLOSURE,
      closeReason: 'no welcome',
      abortTransport: true,
    });
  }

  /** Sends the keepalive's ping, outside the pending calls: nothing waits for its answer but the keepalive. */
  #sendKeepalivePing(): void {
    this.#keepalivePings += 1;
    try {
      this.#transport.send(JSON.stringify({ op: 'ping', id: `keepalive-${this.#keepalivePings}` }));
    } catch {
      // The socket is closing: its close event follows.
    }
  }

  /** Nothing arrived within the keepalive's `timeout` of its ping: the connection is dropped, as on a dead socket. */
  #onSilent(timeout: number): void {
    if (this.#state !== 'open') return;
    const reason = `no answer from the server within ${timeout} ms of a keepalive ping`;
    const close: CloseInfo = { code: ABNORMAL_CLOSURE, reason, byClient: false };
    this.#shutdown(close, connectionLostError(close));
    // The closing handshake cannot complete on a silent path; the connection is over already.
    this.#closeTransport('keepalive timeout', KEEPALIVE_CLOSURE, true);
  }

  /**
   * Closes the socket with `code`; with `abort`, through the transport's `abort` where it has one, so a
   * socket whose peer cannot answer the closing handshake does not stay open waiting for it.
   */
  #closeTransport(reason: string, code: number = NORMAL_CLOSURE, abort = false): void {
    try {
      if (abort && this.#transport.abort) this.#transport.abort(code, reason);
      else this.#transport.close(code, reason);
    } catch {
      // The socket is already closing; its close event still arrives.
    }
  }

  #onFrame(text: string | null): void {
    // A frame that arrives after close() belongs to calls already rejected.
    if (this.#state === 'closed') return;
    this.#keepalive?.heard();
    if (text === null) {
      this.#protocolError('the server sent a binary frame');
      return;
    }
    const decoded = decodeServerMessage(text);
    if (!decoded.ok) {
      this.#protocolError(`unreadable server frame: ${decoded.error}`);
      return;
    }
    const message = decoded.message;
    if (this.#state === 'connecting') {
      if (message.type !== 'welcome') {
        this.#protocolError(`expected welcome, got ${message.type}`);
        return;
      }
      this.#state = 'open';
      this.#maxPayload = message.limits.maxPayload;
      clearTimeout(this.#welcomeTimer);
      const policy = this.#keepalivePolicy;
      if (policy) {
        this.#keepalive = new Keepalive(policy, {
          ping: () => this.#sendKeepalivePing(),
          dead: () => this.#onSilent(policy.timeout),
        });
      }
      this.#opened.resolve(message);
      return;
    }
    switch (message.type) {
      case 'reply':
        this.#onReply(message);
        return;
      case 'queued': {
        // A throwing user callback must not stop this frame's handling.
        const onQueued = typeof message.id === 'number' ? this.#pending.onQueued(message.id) : undefined;
        if (onQueued) invokeSafely(onQueued, message.position);
        return;
      }
      case 'lost':
        this.#handlers.lost(message);
        return;
      case 'event':
        this.#handlers.event(message);
        return;
      case 'welcome':
        this.#protocolError('a second welcome on one connection');
        return;
    }
  }

  #onReply(reply: ReplyMessage): void {
    if (reply.id === null) {
      // The server could not read one of our requests' ids, so some call would never be answered.
      const detail = reply.ok ? 'a reply without id' : `${reply.error.code}: ${reply.error.message}`;
      this.#protocolError(`the server could not match a request: ${detail}`);
      return;
    }
    this.#pending.settle(reply);
  }

  #onTransportClose(code: number, reason: string, pageLeft: boolean): void {
    this.#ended.resolve();
    if (this.#state === 'closed') return;
    const close: CloseInfo = pageLeft ? { code, reason, byClient: false, pageLeft } : { code, reason, byClient: false };
    // Before the welcome nothing was established: the connect attempt failed. After it, the connection was lost.
    const error =
      this.#state === 'open'
        ? connectionLostError(close, this.#lastTransportError)
        : connectionClosedError(close, this.#lastTransportError);
    this.#shutdown(close, error);
  }

  #protocolError(detail: string): LockError {
    // Browsers only let a page close with 1000 or 4000-4999: a protocol error closes with 1000 and a reason.
    const close: CloseInfo = { code: NORMAL_CLOSURE, reason: 'protocol error', byClient: true };
    const error = new LockError(ClientErrorCode.ProtocolError, detail, { close });
    if (this.#state !== 'closed') {
      this.#shutdown(close, error);
      this.#closeTransportBounded('protocol error');
    }
    return error;
  }

  #shutdown(close: CloseInfo, error: LockError): void {
    const wasOpen = this.#state === 'open';
    this.#state = 'closed';
    this.#closeError = error;
    clearTimeout(this.#welcomeTimer);
    this.#keepalive?.stop();
    if (!wasOpen) {
      this.#opened.reject(error);
      this.#closed.abort(error);
      return;
    }
    this.#pending.rejectAll(error);
    this.#closed.abort(error);
    this.#handlers.closed(close, error);
  }
}
