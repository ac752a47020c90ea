import { CloseCode, type EventMessage, type LostMessage, type WelcomeMessage } from '@lockwire/protocol';
import { Connection, type ConnectionHandlers } from './connection.js';
import type { Emitter } from './emitter.js';
import { ClientErrorCode, connectionClosedError, LockError, type CloseInfo } from './errors.js';
import type { KeepalivePolicy } from './keepalive.js';
import type { LeaseBook } from './lease-book.js';
import type { ClientEvents, ClientState } from './options.js';
import {
  backoffDelay,
  END_SESSION_TIMEOUT,
  endSession,
  mayReconnectAfter,
  pause,
  resumeTicket,
  resumeUrl,
  type ReconnectPolicy,
  type ResumeTicket,
} from './reconnect.js';
import { RefusalRetries } from './refusal-retry.js';
import { settleLeases, watchAgain } from './resume-settling.js';
import type { TransportFactory } from './transport.js';
import type { WatchRegistry } from './watch.js';

/** What `connect()` hands the constructor. */
export interface ClientInit {
  url: string;
  transport: TransportFactory;
  policy: ReconnectPolicy | null;
  /** How each connection notices a silent network path (see `Connection.open`); `null`: it does not. */
  keepalive: KeepalivePolicy | null;
  connection: Connection;
  welcome: WelcomeMessage;
}

/** The client's state that follows the connection: leases, watches and the client's events. */
export interface KeptState {
  leases: LeaseBook;
  watches: WatchRegistry;
  events: Emitter<ClientEvents>;
}

const CLIENT_CLOSE: CloseInfo = { code: 1000, reason: 'client closed', byClient: true };

/**
 * Keeps a client connected: holds the open connection and the server's welcome, reconnects with backoff when the
 * connection drops (resuming the session while the server keeps it), and carries the leases, watches and state
 * events across. The transport's close as its page left (`pageLeft`), also when it ends a reconnect attempt, loses
 * the leases at once, with no grace: the server ended the session on it, unless that 1000 never reached the server
 * (a dead network path), so the reconnect still resumes (the server answers a fresh session, or gives the holds
 * back to be released) and `close()` still ends the session. Any other close, a 1000 from a proxy too, is a drop
 * to resume from, and so is a connection its keepalive took for dead (a silent network path), closed without
 * waiting for a closing handshake that cannot complete. Ends for good on `close()`, when reconnecting is off or
 * gives up, on a protocol error, or on a close that forbids reconnecting.
 */
export class ConnectionKeeper {
  readonly #url: string;
  readonly #transport: TransportFactory;
  readonly #policy: ReconnectPolicy | null;
  readonly #keepalive: KeepalivePolicy | null;
  readonly #leases: LeaseBook;
  readonly #watches: WatchRegistry;
  readonly #events: Emitter<ClientEvents>;
  #connection: Connection | undefined;
  #welcome: WelcomeMessage;
  #state: ClientState = 'open';
  #closing: Promise<void> | undefined;
  /** Set as the client starts to close for good, before any user callback of that close runs. */
  #finished = false;
  /** Aborted by `close()`: stops a reconnect in progress. */
  readonly #stop = new AbortController();
  /** The resume offer of the current session, while one can still be used. */
  #resume: ResumeTicket | null;
  /** When the server's grace for the dropped session runs out (`performance.now()` ms), while down with a ticket. */
  #graceEnds: number | undefined;
  /** Loses the leases parked for a resume once the server's grace has run out. */
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #lastClose: CloseInfo | undefined;
  /** The close that ended the client for good (its `close` event), once finished. */
  #finalClose: CloseInfo | undefined;
  /**
   * The drop that ends the client for good, set before its `disconnect` is
   * emitted: a `close()` from a listener of that event finishes with it, so
   * `close` reports the drop, not the client's own close.
   */
  #ending: { close: CloseInfo; error: LockError } | undefined;
  /** Releases of holds a resume gave back that no lease stands for, asked again while refused. */
  readonly #keptReleases = new RefusalRetries(() => this.#welcome.limits);

  constructor(init: ClientInit, kept: KeptState) {
    this.#url = init.url;
    this.#transport = init.transport;
    this.#policy = init.policy;
    this.#keepalive = init.keepalive;
    this.#connection = init.connection;
    this.#welcome = init.welcome;
    this.#resume = resumeTicket(init.welcome);
    this.#leases = kept.leases;
    this.#watches = kept.watches;
    this.#events = kept.events;
  }

  /** The welcome of the current (or last) connection. */
  get welcome(): WelcomeMessage {
    return this.#welcome;
  }

  /** `open`, `reconnecting`/`connecting` while the connection is down, `closed` for good. */
  get state(): ClientState {
    return this.#state;
  }

  /** The transport connections are opened with. */
  get transport(): TransportFactory {
    return this.#transport;
  }

  /** The current connection; `undefined` while down. It may have closed already: check `isOpen`. */
  get connection(): Connection | undefined {
    return this.#connection;
  }

  /**
   * The open connection, for a new call.
   *
   * @throws LockError `connection_closed` once `close()` was called or the
   * client closed for good, with `close` set to what ended it (`close()`:
   * code 1000, `byClient`; otherwise the last drop); `connection_lost`
   * (with the last close) while down.
   */
  live(): Connection {
    const connection = this.#connection;
    if (connection?.isOpen) return connection;
    if (this.#finished || this.#closing) {
      const close = this.#finalClose ?? this.#ending?.close ?? CLIENT_CLOSE;
      throw new LockError(ClientErrorCode.ConnectionClosed, 'the client is closed', { close });
    }
    throw new LockError(ClientErrorCode.ConnectionLost, `the client is not connected (${this.#state})`, {
      close: this.#lastClose,
    });
  }

  /**
   * The client is about to acquire `key`: a release of a kept hold of that
   * key that is still being asked again stops here, before the acquire is
   * sent. A later copy of it (a release names only the key) would end the
   * hold the acquire is about to get or keep.
   */
  claim(key: string): void {
    this.#keptReleases.stop(key);
  }

  /**
   * Closes for good and stops reconnecting; idempotent. Resolves when the
   * socket closed. While disconnected with a session the server may still
   * keep (session grace), resolves once one bounded attempt to end that
   * session (see {@link endSession}) is done or gave up: at most
   * {@link END_SESSION_TIMEOUT} ms, or the rest of the grace if shorter.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    // Set before anything runs: a close() from a callback of this one (a lease's abort listener) gets this promise.
    let closed: () => void = () => undefined;
    this.#closing = new Promise<void>((resolve) => {
      closed = resolve;
    });
    this.#stop.abort();
    this.#keptReleases.stopAll();
    const connection = this.#connection;
    if (connection?.isOpen) {
      void connection.close().then(closed);
      return this.#closing;
    }
    // Taken before `#finish` drops the ticket.
    const resumable = this.#resumable();
    const ending = this.#ending ?? { close: CLIENT_CLOSE, error: connectionClosedError(CLIENT_CLOSE) };
    this.#finish(ending.close, ending.error);
    if (resumable) {
      // The leases are lost now; the server holds their locks for the rest of the grace unless told.
      const ms = Math.min(END_SESSION_TIMEOUT, resumable.left);
      void endSession(this.#url, resumable.ticket, this.#transport, ms).then(closed);
    } else {
      closed();
    }
    return this.#closing;
  }

  /** The resume ticket of a dropped session the server may still keep, with the time left of its grace (ms). */
  #resumable(): { ticket: ResumeTicket; left: number } | null {
    const ticket = this.#resume;
    if (!ticket || this.#graceEnds === undefined) return null;
    const left = this.#graceEnds - performance.now();
    return left > 0 ? { ticket, left } : null;
  }

  /** The server took a lock away: its lease is lost. */
  onLost(message: LostMessage): void {
    this.#leases.lost(message.key, message.token, message.reason);
    // A kept hold being released that the server took away meanwhile leaves nothing to release.
    this.#keptReleases.stop(message.key);
    this.#events.emit('lost', { key: message.key, token: message.token, reason: message.reason });
  }

  /** A watched key changed. */
  onEvent(message: EventMessage): void {
    this.#watches.dispatch(message);
  }

  /** The connection ended: pending calls were already rejected; reconnect or close for good. */
  onClosed(close: CloseInfo, error: LockError): void {
    this.#connection = undefined;
    this.#lastClose = close;
    const policy = this.#policy;
    const retry =
      policy !== null &&
      policy.maxAttempts > 0 &&
      !this.#stop.signal.aborted &&
      error.code !== ClientErrorCode.ProtocolError &&
      mayReconnectAfter(close);
    if (!retry) {
      // Not to be resumed: superseded by a resume elsewhere, refused, or not reconnecting at all.
      this.#resume = null;
      this.#ending = { close, error };
    } else if (this.#resume) {
      this.#graceEnds = performance.now() + this.#resume.grace;
    }
    this.#events.emit('disconnect', { ...close, reconnecting: retry });
    if (!retry) {
      this.#finish(close, error);
      return;
    }
    // A disconnect listener may have closed the client: it is closed for good then, and nothing is left to retry.
    if (this.#stop.signal.aborted) return;
    const ticket = this.#resume;
    if (ticket && close.code !== CloseCode.GoingAway && close.pageLeft !== true) {
      // The server keeps this session's locks for `grace` ms: the leases wait for the resume.
      this.#graceTimer = setTimeout(() => {
        this.#resume = null;
        this.#leases.loseAll(close);
      }, ticket.grace);
    } else {
      // No grace to wait for. A server shutting down (1001) releases its
      // sessions' locks at once, grace or not; a proxy's 1001 is taken the
      // same way, on the safe side. The transport's own 1000 as its page left
      // (also into the back/forward cache) ended the session on the server,
      // unless the network path was dead and it never arrived: the leases are
      // lost now, not after a resume a page shown again may never make. The
      // ticket stays either way: a session the server still keeps is resumed
      // and the holds it gives back, which no lease stands for any more, are
      // released; or `close()` ends it. One the server ended answers the
      // resume with a fresh session.
      this.#leases.loseAll(close);
      // So may a lease's abort listener.
      if (this.#stop.signal.aborted) return;
    }
    this.#watches.suspend();
    void this.#reconnect(policy, close);
  }

  #handlers(): ConnectionHandlers {
    return {
      lost: (message) => this.onLost(message),
      event: (message) => this.onEvent(message),
      closed: (close, error) => this.onClosed(close, error),
    };
  }

  #setState(state: ClientState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events.emit('state', state);
  }

  async #reconnect(policy: ReconnectPolicy, close: CloseInfo): Promise<void> {
    const previous = this.#welcome;
    for (let attempt = 1; attempt <= policy.maxAttempts; attempt += 1) {
      // Closed meanwhile (also by a listener of the drop): `closed` is the last state.
      if (this.#stop.signal.aborted) return;
      this.#setState('reconnecting');
      await pause(backoffDelay(policy, attempt), this.#stop.signal);
      if (this.#stop.signal.aborted) return;
      this.#setState('connecting');
      const ticket = this.#resume;
      let opened: { connection: Connection; welcome: WelcomeMessage };
      try {
        const url = ticket ? resumeUrl(this.#url, ticket) : this.#url;
        opened = await Connection.open(url, this.#transport, this.#handlers(), {
          signal: this.#stop.signal,
          keepalive: this.#keepalive,
        });
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        if (error instanceof LockError && error.close?.pageLeft) {
          this.#sessionEnded(error.close);
          // A lease's abort listener may have closed the client.
          if (this.#stop.signal.aborted) return;
        }
        continue;
      }
      if (this.#stop.signal.aborted) {
        void opened.connection.close();
        return;
      }
      this.#resumeWith(opened.connection, opened.welcome, previous, attempt);
      return;
    }
    this.#finish(close, connectionClosedError(close));
  }

  /**
   * The page left while an attempt was connecting (a browser reads no welcome once it closed the socket). A
   * resume may have got the session back, which the server then ended on that close: the leases parked for the
   * grace are lost now. The ticket stays: if the close never reached the server (a dead network path), the
   * server keeps the session for another grace from this drop, and the next attempt's resume gets its holds back
   * to release them, or `close()` ends it; a session the server ended answers the resume with a fresh one.
   */
  #sessionEnded(close: CloseInfo): void {
    clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
    const ticket = this.#resume;
    this.#graceEnds = ticket ? performance.now() + ticket.grace : undefined;
    this.#lastClose = close;
    this.#leases.loseAll(close);
  }

  /**
   * A new connection is open: keep the leases a resume gave back, lose the rest, then report `open` and watch
   * again. The leases are settled first: a `state` listener that sees `open`, and whatever waits for
   * `reconnect` (the Web Locks queue), never finds a lease the new session does not hold.
   */
  #resumeWith(connection: Connection, welcome: WelcomeMessage, previous: WelcomeMessage, attempts: number): void {
    clearTimeout(this.#graceTimer);
    this.#graceEnds = undefined;
    this.#connection = connection;
    this.#welcome = welcome;
    this.#resume = resumeTicket(welcome);
    const resumed = welcome.resumed === true && welcome.session === previous.session;
    settleLeases({
      connection,
      welcome,
      previous,
      resumed,
      leases: this.#leases,
      keptReleases: this.#keptReleases,
      lastClose: () => this.#lastClose,
      limits: () => this.#welcome.limits,
      current: () => this.#connection,
    });
    // A lost lease's abort listener closed the client: it ended this connection, and it never turns open.
    if (this.#stop.signal.aborted) return;
    this.#setState('open');
    // A state listener closed the client: there is nothing to watch again, and no reconnect to report.
    if (this.#stop.signal.aborted) return;
    watchAgain(connection, this.#watches);
    this.#events.emit('reconnect', { session: welcome.session, previousSession: previous.session, resumed, attempts });
  }

  /** The client is closed for good. */
  #finish(close: CloseInfo, error: LockError): void {
    // Marked first: a lease's abort listener that calls close() again must not end the client (and emit) twice.
    if (this.#finished) return;
    this.#finished = true;
    this.#finalClose = close;
    clearTimeout(this.#graceTimer);
    this.#keptReleases.stopAll();
    this.#resume = null;
    this.#leases.loseAll(close);
    this.#watches.endAll(error.code === ClientErrorCode.ConnectionLost ? connectionClosedError(close) : error);
    this.#setState('closed');
    this.#events.emit('close', close);
  }
}
