import {
  binaryFrameError,
  CloseCode,
  ErrorCode,
  type Op,
  type RequestId,
  type WireError,
} from '@lockwire/protocol';
import { WebSocket, type RawData } from 'ws';
import { cutAfterHandshake, whenCloseReceived, whenDropped } from './close-handshake.js';
import type { CloseConnection } from './grace.js';
import { acceptsSecret } from './grace-registry.js';
import { internalWireError } from './errors.js';
import { AcquireOutcome } from './metrics.js';
import type { RateVerdict } from './rate-limit.js';
import { SessionAcquires } from './session-acquire.js';
import { endSessionInStore } from './session-end.js';
import { decodeFrame, earlyRefusal, frameText, namedOp } from './session-frame.js';
import { SessionGuard } from './session-guard.js';
import type { SessionHost, SessionOptions, Settlement } from './session-host.js';
import { dispatchRequest, SessionRequests } from './session-requests.js';
import { SessionSender } from './session-sender.js';
import { SessionWatches } from './session-watches.js';
import type { LostLock, SessionId, Ticket } from './store.js';

/** The watches by prefix of a session that never watched. */
const NO_WATCHES: ReadonlyMap<string, unknown> = new Map();

/**
 * One WebSocket connection: the lock holder. Decodes frames, calls the store,
 * and answers; routes the store's settlements and pushes for this session.
 * Once the connection is gone the session is dead: late frames and late store
 * results are ignored and nothing more is sent.
 *
 * The session owns its lifecycle (connection, heartbeat, credentials expiry,
 * end or detach) and the intake of frames; its pending requests, acquires,
 * watches and send path are collaborators it composes.
 */
export class Session {
  private alive = true;
  private ended = false;
  /** Whether anything (a frame or a pong) came from the peer since the last heartbeat ping. */
  private heardSincePing = true;
  /**
   * Heartbeat pings not yet answered: the pong answering one is free, so the
   * heartbeat never takes from the frame budget of a client that only answers it.
   */
  private pongsOwed = 0;
  /** Keys this session holds, as its replies and `lost` pushes told the client. */
  private readonly held = new Set<string>();
  /**
   * Locks lost while the connection was closing, which nothing can be sent
   * on: kept for a resume, should the session detach. Made on the first such
   * loss, as an idle connection pays for every field.
   */
  private untold: Map<string, LostLock> | null = null;
  private releasedAtEnd = 0;
  private readonly guard: SessionGuard;
  private readonly sender: SessionSender;
  private readonly requests: SessionRequests;
  private readonly acquires: SessionAcquires;
  /**
   * The session's watches, made by its first `watch` (see `watchesMade`):
   * most connections never watch, and an idle connection pays for every
   * field, here about 700 bytes of maps and lists.
   */
  private watches: SessionWatches | null = null;
  private readonly resume: string | null;
  /** The secret the resume that opened this connection presented, until the client's first frame (see `acceptsSecret`). */
  private resumedWith: string | null;
  /**
   * Set when the session must not keep its locks after the connection:
   * closed by its client with 1000, or by the server for policy (1008: abuse,
   * expired credentials). Every other close, the server's own included,
   * keeps grace.
   */
  private noGrace = false;
  /** Set while expired credentials are being acted on: frames are refused `unauthorized`. */
  private expired = false;
  /** The store's `closeSession` started when the credentials expired, which `end()` then waits on instead of a second one. */
  private closedInStore: Promise<void> | null = null;
  private expiryTimer: unknown = null;

  constructor(
    readonly id: SessionId,
    private readonly ws: WebSocket,
    private readonly host: SessionHost,
    options: SessionOptions,
  ) {
    this.guard = new SessionGuard(options.permissions, host.limits, host.clock);
    const alive = () => this.alive;
    this.sender = new SessionSender(id, ws, host, options.socket ?? null);
    this.requests = new SessionRequests(id, host, this.sender, alive);
    this.acquires = new SessionAcquires({
      session: id,
      host,
      requests: this.requests,
      sender: this.sender,
      held: this.held,
      openTicket: (requestId) => host.openTicket(this, requestId),
    });
    this.resume = options.resume;
    this.resumedWith = options.resumedWith ?? null;
    for (const key of options.held ?? []) this.held.add(key);
    const { expiresAt } = options.permissions;
    if (expiresAt !== null) {
      // `exp` is a wall-clock time: what is left of it now is timed on the
      // clock's monotonic reading, so a later step of the wall clock moves
      // the session's end neither way (docs/guarantees.md).
      this.expiryTimer = host.clock.setTimeout(
        () => void this.expireCredentials(),
        Math.max(0, expiresAt - host.clock.now()),
      );
    }
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    // A pong answering one of the heartbeat's pings is free; a peer may also send them unasked, and
    // each of those takes from the frame budget as a ping does, so a flood of them is refused and closed.
    ws.on('pong', () => {
      if (this.pongsOwed === 0) return void this.arrived();
      this.pongsOwed--;
      this.heardSincePing = true;
    });
    ws.on('ping', (data) => this.onPing(data));
    ws.on('close', (code: number) => this.endClosed(code));
    ws.on('error', (error) => {
      this.host.logger.debug({ err: error, session: id }, 'socket error');
      // `ws` closes the connection itself on a frame over maxPayload (1009),
      // a text frame that is not UTF-8 (1007) or another protocol error
      // (1002). That is the failure of one frame (a client library's bug),
      // not a policy: the client may well come back for its locks, so the
      // session keeps grace as on a drop. It ends now, not at 'close', which
      // would come only once the peer answered (or the cut).
      if (ws.readyState !== WebSocket.CLOSING) return;
      this.host.closes.refused(ws, error);
      this.endClosedByServer();
    });
    // A drop or the peer's close frame ends the session at once; 'close'
    // ends it in every other case (`end()` runs once).
    if (options.socket) {
      whenDropped(ws, options.socket, () => this.end());
      whenCloseReceived(ws, options.socket, (code) => this.endClosed(code));
    }
  }

  /** Sends the first message of the connection. */
  greet(welcome: object): void {
    this.sender.send(JSON.stringify(welcome));
  }

  /** Answers a settled `acquire` or `wait` (or keeps the answer until its store call has resolved). */
  settle(id: RequestId, ticket: Ticket, settlement: Settlement): void {
    if (this.alive) this.acquires.settle(id, ticket, settlement);
  }

  /** The credentials' `sub`, or null. */
  get user(): string | null {
    return this.guard.permissions.user;
  }

  /**
   * True when `secret` and `user` may resume this session (constant-time
   * secret comparison; the secret of the resume that opened this connection
   * works too until the client is heard, see `acceptsSecret`). Never for a
   * session that is to end without grace (its credentials expiring): there
   * would be nothing left to resume. A
   * slow reader being cut (its socket terminated, its 'close' not yet come)
   * may be resumed: it ends as on a drop, in grace.
   */
  accepts(secret: string, user: string | null): boolean {
    return (
      this.resume !== null &&
      this.alive &&
      !this.noGrace &&
      user === this.user &&
      acceptsSecret(secret, this.resume, this.resumedWith)
    );
  }

  /**
   * Hands the session over to a resume on a new connection: it keeps its
   * locks (its pending requests are cancelled, as on a disconnect in grace)
   * and stops being served. Its connection stays open until the resume
   * settles, which closes it with the returned function: with 4001 only
   * once the resumed connection opened.
   */
  supersede(): CloseConnection {
    this.end();
    return (code, reason) => void this.host.closes.closeWithinHandshake(this.ws, code, reason, this.host.clock);
  }

  /** Locks this session holds now. */
  get heldCount(): number {
    return this.held.size;
  }

  /** Acquires of this session waiting in a queue now. */
  get waitingCount(): number {
    return this.requests.waitingCount;
  }

  /** Locks the session held when it ended, released by the store's `closeSession`. */
  get locksReleased(): number {
    return this.releasedAtEnd;
  }

  /**
   * Tells the client that a lock it held was taken away; while the
   * connection is closing, keeps the loss for the session's grace instead.
   */
  pushLost(lost: LostLock): void {
    this.acquires.lost(lost.key, lost.token);
    if (!this.alive) return;
    // A closing connection (the peer's close frame read but the session not
    // ended yet, a cut under way) sends nothing more: the loss would be
    // dropped, and a resume would leave the lock out of `held` untold.
    if (this.ws.readyState !== WebSocket.OPEN) return void (this.untold ??= new Map()).set(lost.key, lost);
    this.sender.send(JSON.stringify({ type: 'lost', key: lost.key, token: lost.token, reason: lost.reason }));
  }

  /**
   * One heartbeat step: when `judge` is set, cut the connection if nothing
   * (neither the pong nor any frame) came from the peer since the last ping;
   * else ping again.
   */
  heartbeat(judge: boolean): void {
    if (!this.alive) return;
    if (judge && !this.heardSincePing) {
      this.host.logger.info({ session: this.id }, 'heartbeat missed; terminating connection');
      this.host.closes.terminate(this.ws);
      return;
    }
    this.heardSincePing = false;
    this.pongsOwed++;
    this.ws.ping();
  }

  /**
   * First step of a server shutdown, run on every session before any of
   * them is closed in the store: answers each pending request
   * `shutting_down` and marks the session dead, so that no grant made by
   * another session's release can reach it afterwards.
   */
  drain(): void {
    if (!this.alive) return;
    const error: WireError = { code: ErrorCode.ShuttingDown, message: 'the server is shutting down' };
    this.requests.replyErrorToAll(error);
    this.kill(AcquireOutcome.Error);
  }

  /**
   * Ends the session once: marks it dead, then has the store drop its queued
   * requests and release its locks.
   */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.resume !== null && !this.noGrace && this.host.keepsLocks()) {
      this.detach(this.resume);
      return;
    }
    this.kill();
    this.releasedAtEnd = this.held.size;
    const keys = [...this.held];
    this.held.clear();
    const closing = endSessionInStore(this.host, this.id, keys, this.closedInStore ?? undefined);
    this.host.sessionEnded(this, closing);
  }

  /**
   * Ends the connection but not the session (session grace): its queued
   * acquires and waits are cancelled in the store, its locks stay held.
   */
  private detach(secret: string): void {
    const ticketed = this.requests.ticketed();
    const keys = this.acquires.detach(this.held);
    this.kill();
    const cancelling = this.acquires.leaveQueues(ticketed, keys);
    const detached = { session: this.id, secret, resumedWith: this.resumedWith, user: this.user, keys, losses: this.untold ?? undefined };
    this.host.sessionDetached(this, detached, cancelling);
  }

  /**
   * The credentials expired while connected: the session ends in the store
   * as on a disconnect, in one step (its queued requests leave their queues,
   * then its holds end), except that the holds are taken back: each is
   * `revoked`, and the client, still connected, is told `lost` through the
   * store's listener like any other loss. Then the connection is closed with
   * 1008, without grace.
   */
  private async expireCredentials(): Promise<void> {
    this.expiryTimer = null;
    if (!this.alive) return;
    this.expired = true;
    this.noGrace = true;
    this.closedInStore = this.host.store.closeSession(this.id, 'revoked');
    // A failure is logged by `end()`, which waits on the same call.
    await this.closedInStore.catch(() => {});
    if (this.alive) this.closeForPolicy('credentials expired');
  }

  /**
   * Closes with 1008 and ends the session without grace: a policy close is
   * the server's judgement that the client must not keep its session.
   */
  private closeForPolicy(reason: string): void {
    this.host.logger.info({ session: this.id, reason }, 'closing connection for policy');
    this.noGrace = true;
    this.host.closes.close(this.ws, CloseCode.PolicyViolation, reason);
    this.endClosedByServer();
  }

  /**
   * Ends at once the session of a connection the server is closing: with
   * grace, when it is on, unless `noGrace` was set (a policy close). The
   * socket is cut when the peer leaves the close unanswered past the
   * handshake bound: it counts against `maxConnections` until it is gone.
   */
  private endClosedByServer(): void {
    void cutAfterHandshake(this.ws, this.host.clock);
    this.end();
  }

  /**
   * Ends the session of a connection closed with `code` (of the peer's
   * close frame as soon as it was read, or of 'close'), unless the server
   * ended it as it started the close; cuts a socket the peer does not end
   * in time.
   */
  private endClosed(code: number): void {
    if (this.ended) return;
    // 1000 is a deliberate close: the client is done and will not resume,
    // so its locks go now. A drop (1006) or any other code keeps grace.
    if (code === CloseCode.Normal) this.noGrace = true;
    void cutAfterHandshake(this.ws, this.host.clock);
    this.end();
  }

  /**
   * A WebSocket ping from the peer takes a token of the frame budget, as any
   * frame does: within it, it is answered with a pong; past it, it is not
   * answered and counts toward the abuse streak as a refused frame does.
   */
  private onPing(data: Buffer): void {
    if (this.arrived() === 'accept') this.sender.pong(data);
  }

  /**
   * Something (a frame, a ping or a pong) came from the peer: the heartbeat counts
   * it as heard, and it takes a token of the frame budget. Null when the
   * session is dead, or the rate limit's abuse streak closed it just now:
   * the arrival is then dropped.
   */
  private arrived(): Exclude<RateVerdict, 'abuse'> | null {
    if (!this.alive) return null;
    this.heardSincePing = true;
    const verdict = this.guard.frame();
    if (verdict !== 'abuse') return verdict;
    this.closeForPolicy('rate limit exceeded');
    return null;
  }

  /** The session's watches, made on first use. */
  private watchesMade(): SessionWatches {
    this.watches ??= new SessionWatches({
      session: this.id,
      host: this.host,
      guard: this.guard,
      requests: this.requests,
      sender: this.sender,
      alive: () => this.alive,
    });
    return this.watches;
  }

  /**
   * Marks the session dead: late frames, store results and pushes are dropped
   * from here on. Pending acquires are counted with `abandoned`.
   */
  private kill(abandoned: AcquireOutcome = AcquireOutcome.Cancelled): void {
    if (!this.alive) return;
    this.alive = false;
    if (this.expiryTimer !== null) this.host.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    this.watches?.stopAll();
    this.requests.abandonAll(abandoned);
  }

  /**
   * Takes one frame. Once its id is known, a reused id of a pending request
   * is refused `duplicate_id` before anything else, so the client never
   * reads another refusal under that id as the fate of its pending request;
   * then expired credentials, the rate limit, decoding and the guard refuse
   * it, in that order.
   */
  private onFrame(data: RawData, isBinary: boolean): void {
    // The client sends only once it has read the welcome, and with it the new resume secret.
    this.resumedWith = null;
    const verdict = this.arrived();
    if (verdict === null) return;
    const text = isBinary ? null : frameText(data);
    const decoding = text === null ? null : decodeFrame(text, this.host.maxKeyLength);
    if (decoding?.threw) {
      this.host.logger.error({ session: this.id, err: decoding.error }, 'frame decoding failed');
      return this.refuse(null, null, internalWireError());
    }
    const decoded = decoding?.decoded ?? null;
    if (decoded?.ok) {
      const { id, op } = decoded.message;
      const refused =
        earlyRefusal(id, this.requests, this.expired, verdict) ??
        this.guard.check(decoded.message, this.requests, this.watches?.byPrefix ?? NO_WATCHES, this.held);
      if (refused) return this.refuse(id, op, refused);
      return dispatchRequest(decoded.message, {
        session: this.id,
        host: this.host,
        permissions: this.guard.permissions,
        requests: this.requests,
        acquires: this.acquires,
        watches: () => this.watchesMade(),
        watching: this.watches,
      });
    }
    const id = decoded?.id ?? null;
    const op = text === null ? null : namedOp(text);
    this.refuse(id, op, earlyRefusal(id, this.requests, this.expired, verdict) ?? decoded?.error ?? binaryFrameError());
  }

  /**
   * Answers a frame refused before it reached the store. Every such refusal
   * goes through here, so a refused `acquire` counts its one final outcome,
   * `error`, here.
   */
  private refuse(id: RequestId | null, op: Op | null, error: WireError): void {
    if (op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Error);
    this.sender.replyError(id, error, op);
  }
}
