import {
  binaryFrameError,
  CloseCode,
  decodeClientMessage,
  DEFAULT_LIST_LIMIT,
  ErrorCode,
  type ClientMessage,
  type RequestId,
  type RequestOf,
  type WireError,
} from '@lockwire/protocol';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import type { Clock } from './clock.js';
import { LockError, toWireError } from './errors.js';
import { heldLocks, sameSecret, type DetachedSession } from './grace.js';
import type { ServerLimits } from './limits.js';
import type { Logger } from './logger.js';
import { AcquireOutcome, type LockMetrics } from './metrics.js';
import { listVisible, watchSnapshot, watchStoreLimit, type Permissions } from './permissions.js';
import { SessionGuard } from './session-guard.js';
import type { Grant, LockEvent, LockStore, LostLock, SessionId, Ticket, WatchHandle } from './store.js';

/** How a pending `acquire` or `wait` ended, as the store's listener reported it. */
export type Settlement =
  | { kind: 'granted'; grant: Grant }
  | { kind: 'acquireTimedOut' }
  | { kind: 'waitDone'; free: boolean }
  /** The store could not settle it (lost contact): answered with the error. */
  | { kind: 'failed'; error: LockError };

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly store: LockStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: LockMetrics;
  readonly maxKeyLength: number;
  readonly limits: ServerLimits;
  /** True when a session that loses its connection now keeps its locks for a resume (grace on, not closing). */
  keepsLocks(): boolean;
  /** Called once when a session lost its connection and keeps its locks; its pending requests are being cancelled. */
  sessionDetached(session: Session, detached: DetachedSession, cancelling: Promise<void>): void;
  /** Allocates a server-wide ticket whose settlements are routed to `session`'s request `id`. */
  openTicket(session: Session, id: RequestId): Ticket;
  /** Forgets a ticket's route; later settlements of it are dropped. */
  closeTicket(ticket: Ticket): void;
  /**
   * The wire `event` for `event` as UTF-8 JSON, built once however many
   * watchers get it: the same bytes are sent to each of them as a text frame.
   */
  encodeEvent(event: LockEvent): Buffer;
  /** Called once when the session ends, with the store's `closeSession` in progress. */
  sessionEnded(session: Session, closing: Promise<void>): void;
}

/** Who a session is and what it may do, fixed when its connection opens. */
export interface SessionOptions {
  /** What the connection's credentials allow (everything with auth off). */
  permissions: Permissions;
  /** The resume secret of this session's welcome, or null with session grace off. */
  resume: string | null;
  /** Keys a resumed session holds from before. */
  held?: Iterable<string>;
  /** The connection's socket: a dropped peer is noticed on it before `ws` emits 'close'. */
  socket?: Duplex;
}

interface PendingRequest {
  readonly id: RequestId;
  readonly op: ClientMessage['op'];
  /** The key of an `acquire` or `wait`, else null. */
  readonly key: string | null;
  /** Set for `acquire` and `wait`: the store settles them later by this ticket. */
  readonly ticket: Ticket | null;
  /** True once the store call resolved (and a `queued` was sent): settlements are answered at once. */
  started: boolean;
  /** A settlement that arrived before the store call resolved, answered right after it. */
  early: Settlement | null;
  /** For an acquire that joined a queue: when it did (`performance.now()`), else null. */
  queuedAt: number | null;
}

interface Watch {
  readonly prefix: string;
  handle: WatchHandle | null;
  stopped: boolean;
  /** False until the snapshot reply went out: events it must see are held back until then. */
  live: boolean;
}

/** An event held back because a watch that must see it after its snapshot is not live yet. */
interface HeldEvent {
  readonly event: LockEvent;
  /** The watches whose store streams delivered it: it is after their snapshots. */
  readonly receivedBy: Set<Watch>;
}

/** `ws.send` options of a text frame whose UTF-8 is given as a Buffer. */
const TEXT_FRAME = { binary: false } as const;

/** Marks an event this session already sent. */
const SENT = true;

/** How long a closing socket may take to finish its close handshake before it is cut. */
const CLOSE_HANDSHAKE_MS = 2000;

function frameText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}

/**
 * One WebSocket connection: the lock holder. Decodes frames, calls the store,
 * and answers; routes the store's settlements and pushes for this session.
 * Once the connection is gone the session is dead: late frames and late store
 * results are ignored and nothing more is sent.
 */
export class Session {
  private alive = true;
  private ended = false;
  /** Whether anything (a frame or a pong) came from the peer since the last heartbeat ping. */
  private heardSincePing = true;
  private readonly pending = new Map<RequestId, PendingRequest>();
  /** Keys this session holds, as its replies and `lost` pushes told the client. */
  private readonly held = new Set<string>();
  private releasedAtEnd = 0;
  private readonly watches = new Map<string, Watch>();
  /**
   * Events this session has seen, by identity: a store hands the same event
   * object to every matching watch, and the session sends it once however
   * many of its prefixes match.
   */
  private readonly seenEvents = new WeakMap<LockEvent, HeldEvent | typeof SENT>();
  /** Events waiting, in order, for watches still taking their snapshots. */
  private heldEvents: HeldEvent[] = [];
  private readonly socketClosed: Promise<void>;
  private readonly guard: SessionGuard;
  private readonly resume: string | null;
  /** Set when the session must not keep its locks after the connection: closed by the client (1000), for abuse or expiry. */
  private noGrace = false;
  /** Set while expired credentials are being acted on: frames are refused `unauthorized`. */
  private expired = false;
  private expiryTimer: unknown = null;
  /** While detached: the keys it may still hold, completed by store calls that were in flight. */
  private detachedKeys: Set<string> | null = null;

  constructor(
    readonly id: SessionId,
    private readonly ws: WebSocket,
    private readonly host: SessionHost,
    options: SessionOptions,
  ) {
    this.guard = new SessionGuard(options.permissions, host.limits, host.clock);
    this.resume = options.resume;
    for (const key of options.held ?? []) this.held.add(key);
    const { expiresAt } = options.permissions;
    if (expiresAt !== null) {
      this.expiryTimer = host.clock.setTimeout(
        () => void this.expireCredentials(),
        Math.max(0, expiresAt - host.clock.now()),
      );
    }
    this.socketClosed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('pong', () => {
      this.heardSincePing = true;
    });
    ws.on('close', (code: number) => {
      // 1000 is a deliberate close: the client is done and will not resume,
      // so its locks go now. A drop (1006) or any other code keeps grace.
      if (code === CloseCode.Normal) this.noGrace = true;
      this.end();
    });
    ws.on('error', (error) => this.host.logger.debug({ err: error, session: id }, 'socket error'));
    if (options.socket) this.endOnDrop(options.socket);
  }

  /**
   * Ends the session as soon as the peer is seen gone without a close frame
   * (its FIN, or a reset), instead of at `ws`'s 'close': `ws` emits that
   * only after it has shut the socket's write side and the handle has
   * closed, a few event-loop turns later, so the locks of a dropped holder
   * would reach their next waiters that much later. The listeners are put
   * before `ws`'s own, which mark the connection CLOSING: still OPEN there
   * means no close frame was received or sent, so 'close' will report a
   * drop (1006) and the session ends as it would have then (grace applies).
   * 'close' still ends the session in every other case; `end()` runs once.
   */
  private endOnDrop(socket: Duplex): void {
    const dropped = () => {
      if (this.ws.readyState === WebSocket.OPEN) this.end();
    };
    socket.prependOnceListener('end', dropped);
    socket.prependOnceListener('error', dropped);
  }

  /** Sends the first message of the connection. */
  greet(welcome: object): void {
    this.send(JSON.stringify(welcome));
  }

  /** Answers a settled `acquire` or `wait` (or keeps the answer until its store call has resolved). */
  settle(id: RequestId, ticket: Ticket, settlement: Settlement): void {
    const request = this.pending.get(id);
    if (!this.alive || !request || request.ticket !== ticket) return;
    if (request.started) this.answer(request, settlement);
    else request.early = settlement;
  }

  /** The credentials' `sub`, or null. */
  get user(): string | null {
    return this.guard.permissions.user;
  }

  /** True when `secret` and `user` may resume this session (constant-time secret comparison). */
  accepts(secret: string, user: string | null): boolean {
    return this.resume !== null && this.alive && user === this.user && sameSecret(secret, this.resume);
  }

  /**
   * Hands the session over to a resume on a new connection: it keeps its
   * locks (its pending requests are cancelled, as on a disconnect in grace)
   * and the old connection is closed with 4001.
   */
  supersede(): void {
    this.end();
    this.ws.close(4001, 'superseded by a resume');
  }

  /** Locks this session holds now. */
  get heldCount(): number {
    return this.held.size;
  }

  /** Acquires of this session waiting in a queue now. */
  get waitingCount(): number {
    let waiting = 0;
    for (const request of this.pending.values()) if (request.queuedAt !== null) waiting++;
    return waiting;
  }

  /** Locks the session held when it ended, released by the store's `closeSession`. */
  get locksReleased(): number {
    return this.releasedAtEnd;
  }

  /** Tells the client that a lock it held was taken away. */
  pushLost(lost: LostLock): void {
    this.held.delete(lost.key);
    if (!this.alive) return;
    this.send(JSON.stringify({ type: 'lost', key: lost.key, token: lost.token, reason: lost.reason }));
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
      this.ws.terminate();
      return;
    }
    this.heardSincePing = false;
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
    for (const request of this.pending.values()) this.replyError(request.id, error, request.op);
    this.kill(AcquireOutcome.Error);
  }

  /**
   * Second step of a server shutdown: ends the session and closes the socket
   * with 1001. Resolves when the socket has closed (cut after a bound).
   */
  shutdown(): Promise<void> {
    this.end();
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    this.ws.close(1001, 'server shutting down');
    const cut = setTimeout(() => this.ws.terminate(), CLOSE_HANDSHAKE_MS);
    return this.socketClosed.finally(() => clearTimeout(cut));
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
    const handoffs = [...this.held].map((key) => this.host.metrics.holdEnding(key));
    this.held.clear();
    const closing = this.host.store
      .closeSession(this.id)
      .catch((error: unknown) => {
        this.host.logger.error({ err: error, session: this.id }, 'store failed to close the session');
      })
      .finally(() => {
        for (const done of handoffs) done();
      });
    this.host.sessionEnded(this, closing);
  }

  /**
   * Ends the connection but not the session (session grace): its queued
   * acquires and waits are cancelled in the store, its locks stay held.
   */
  private detach(secret: string): void {
    const ticketed = [...this.pending.values()].filter((request) => request.ticket !== null);
    const keys = new Set(this.held);
    this.detachedKeys = keys;
    this.kill();
    const cancelling = Promise.all(
      ticketed.map(async (request) => {
        if (request.ticket === null) return;
        const cancelled = await this.host.store.cancel(this.id, request.ticket).catch(() => false);
        // Not cancelled: it may have been granted just now; a resume checks each key.
        if (!cancelled && request.op === 'acquire' && request.key !== null) keys.add(request.key);
      }),
    ).then(() => {});
    this.host.sessionDetached(this, { session: this.id, secret, user: this.user, keys }, cancelling);
  }

  /**
   * The credentials expired while connected: each held lock is reported
   * `lost` (`revoked`) and released, then the connection is closed with 1008.
   */
  private async expireCredentials(): Promise<void> {
    this.expiryTimer = null;
    if (!this.alive) return;
    this.expired = true;
    this.noGrace = true;
    const held = await heldLocks(this.host.store, this.id, this.held).catch(() => []);
    for (const lock of held) {
      this.send(JSON.stringify({ type: 'lost', key: lock.key, token: lock.token, reason: 'revoked' }));
      this.held.delete(lock.key);
    }
    await Promise.all(held.map((lock) => this.host.store.release(this.id, lock.key).catch(() => {})));
    this.closeForPolicy('credentials expired');
  }

  /** Closes with 1008 and ends the session without grace. */
  private closeForPolicy(reason: string): void {
    this.noGrace = true;
    this.host.logger.info({ session: this.id, reason }, 'closing connection for policy');
    this.ws.close(1008, reason);
    this.end();
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
    for (const watch of this.watches.values()) stopWatch(watch);
    this.watches.clear();
    this.heldEvents = [];
    for (const request of this.pending.values()) {
      if (request.ticket !== null) this.host.closeTicket(request.ticket);
      if (request.op === 'acquire') this.host.metrics.acquire(abandoned);
    }
    this.pending.clear();
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (!this.alive) return;
    this.heardSincePing = true;
    const verdict = this.guard.frame();
    if (verdict === 'abuse') return this.closeForPolicy('rate limit exceeded');
    if (verdict === 'refuse' || this.expired) {
      const decoded = isBinary ? null : decodeClientMessage(frameText(data), { maxKeyLength: this.host.maxKeyLength });
      const id = decoded === null ? null : decoded.ok ? decoded.message.id : decoded.id;
      const error: WireError = this.expired
        ? { code: ErrorCode.Unauthorized, message: 'the credentials expired' }
        : { code: ErrorCode.RateLimited, message: 'this session sends faster than allowed; the frame was not processed' };
      return this.replyError(id, error);
    }
    if (isBinary) {
      this.replyError(null, binaryFrameError());
      return;
    }
    const decoded = decodeClientMessage(frameText(data), { maxKeyLength: this.host.maxKeyLength });
    if (!decoded.ok) {
      this.replyError(decoded.id, decoded.error);
      return;
    }
    const message = decoded.message;
    if (this.pending.has(message.id)) {
      this.replyError(
        message.id,
        { code: ErrorCode.DuplicateId, message: `id: ${JSON.stringify(message.id)} is already pending` },
        message.op,
      );
      return;
    }
    const refused = this.guard.check(message, this.pending.size, this.watches, this.held);
    if (refused) return this.replyError(message.id, refused, message.op);
    this.dispatch(message);
  }

  private dispatch(message: ClientMessage): void {
    const { store } = this.host;
    switch (message.op) {
      case 'acquire':
        return this.acquire(message);
      case 'wait':
        return this.wait(message);
      case 'cancel':
        return this.cancel(message);
      case 'release':
        return this.run(message, async () => {
          const handoff = this.host.metrics.holdEnding(message.key);
          try {
            await store.release(this.id, message.key);
          } finally {
            handoff();
          }
          this.held.delete(message.key);
          return { released: true };
        });
      case 'extend':
        return this.run(message, async () => ({
          expiresAt: await store.extend(this.id, message.key, message.holdTimeout),
        }));
      case 'status':
        return this.run(message, () => store.status(message.key, this.id));
      case 'list':
        return this.run(message, () => this.listVisible(message.prefix ?? '', message.limit ?? DEFAULT_LIST_LIMIT));
      case 'watch':
        return this.watch(message);
      case 'unwatch':
        return this.run(message, async () => {
          const prefix = message.prefix ?? '';
          const watch = this.watches.get(prefix);
          if (watch) stopWatch(watch);
          this.watches.delete(prefix);
          this.flushHeldEvents(null);
          return {};
        });
      case 'revoke':
        return this.run(message, async () => ({ revoked: await store.revoke(message.key) }));
      case 'ping':
        // After the pushes of every change made before it (a `lost` of a steal through another node).
        return this.run(message, async () => {
          await store.sync?.();
          return { at: this.host.clock.now() };
        });
    }
  }

  /**
   * Runs one request's store work and answers it. The request stays pending
   * (for `duplicate_id`) until the work resolves; a result that arrives after
   * the session died or the request was answered otherwise is dropped.
   */
  private run(
    message: Pick<ClientMessage, 'id' | 'op'> & { key?: string },
    work: (request: PendingRequest) => Promise<object | null>,
    ticket: Ticket | null = null,
  ): void {
    const { id, op } = message;
    const key = message.key ?? null;
    const request: PendingRequest = { id, op, key, ticket, started: false, early: null, queuedAt: null };
    this.pending.set(id, request);
    work(request).then(
      (result) => {
        // `null`: the request stays pending, to be settled by the store later.
        if (result === null || !this.isCurrent(request)) return;
        this.finish(request);
        this.reply(id, result);
      },
      (error: unknown) => {
        if (!this.isCurrent(request)) return;
        this.finish(request);
        if (!(error instanceof LockError)) {
          this.host.logger.error({ err: error, session: this.id, id }, 'request failed');
        }
        if (op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Error);
        this.replyError(id, toWireError(error), op);
      },
    );
  }

  private acquire(message: RequestOf<'acquire'>): void {
    // The ticket is routed before the store sees it, so a settlement or a
    // cancel that races the store call finds this request.
    const ticket = this.host.openTicket(this, message.id);
    this.run(
      message,
      async (request) => {
        const outcome = await this.host.store.acquire(this.id, {
          ticket,
          key: message.key,
          mode: message.mode ?? 'exclusive',
          acquireTimeout: message.acquireTimeout ?? null,
          holdTimeout: message.holdTimeout ?? null,
          steal: message.steal ?? false,
          meta: message.meta ?? null,
        });
        // A request no longer current was counted when its session died.
        const current = this.isCurrent(request);
        if (!current && this.detachedKeys) this.settleDetached(outcome.status, ticket, message.key);
        switch (outcome.status) {
          case 'granted':
            if (current) {
              this.held.add(message.key);
              this.host.metrics.acquire(AcquireOutcome.GrantedImmediately);
            }
            return { acquired: true, token: outcome.token, expiresAt: outcome.expiresAt };
          case 'not_granted':
            if (current) this.host.metrics.acquire(AcquireOutcome.NotGranted);
            return { acquired: false };
          case 'queued':
            if (current) {
              request.queuedAt = performance.now();
              this.host.metrics.acquire(AcquireOutcome.Queued);
              const queued = { type: 'queued', id: message.id, key: message.key, position: outcome.position };
              this.send(JSON.stringify(queued));
              this.startPending(request);
            }
            return null;
        }
      },
      ticket,
    );
  }

  private wait(message: RequestOf<'wait'>): void {
    const ticket = this.host.openTicket(this, message.id);
    this.run(
      message,
      async (request) => {
        const state = await this.host.store.wait(this.id, {
          ticket,
          key: message.key,
          timeout: message.timeout ?? null,
        });
        if (state === 'free') return { free: true };
        if (!this.isCurrent(request) && this.detachedKeys) this.settleDetached('queued', ticket, message.key);
        if (this.isCurrent(request)) this.startPending(request);
        return null;
      },
      ticket,
    );
  }

  private cancel(message: RequestOf<'cancel'>): void {
    const target = this.pending.get(message.target);
    this.run(message, async () => {
      if (!target || target.ticket === null) return { cancelled: false };
      const cancelled = await this.host.store.cancel(this.id, target.ticket);
      if (!cancelled || !this.isCurrent(target)) return { cancelled: false };
      // The cancelled request is answered before the cancel itself.
      this.finish(target);
      if (target.op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Cancelled);
      this.replyError(target.id, { code: ErrorCode.Cancelled, message: 'the request was cancelled' }, target.op);
      return { cancelled: true };
    });
  }

  private watch(message: RequestOf<'watch'>): void {
    const prefix = message.prefix ?? '';
    const limit = message.limit ?? DEFAULT_LIST_LIMIT;
    // Watching a prefix again is the same watch with a fresh snapshot: the
    // new stream starts the way a first one does (so its snapshot is
    // gap-free), and the old stream stops once the snapshot is out. Events
    // both streams deliver are sent once.
    const previous = this.watches.get(prefix) ?? null;
    const watch: Watch = { prefix, handle: null, stopped: false, live: false };
    this.watches.set(prefix, watch);
    this.run(message, async (request) => {
      try {
        const storeLimit = watchStoreLimit(this.guard.permissions, prefix, limit);
        watch.handle = await this.host.store.watch(prefix, storeLimit, this.id, (event) =>
          this.deliver(watch, event),
        );
      } catch (error) {
        if (this.watches.get(prefix) === watch) {
          if (previous && !previous.stopped) this.watches.set(prefix, previous);
          else this.watches.delete(prefix);
        } else if (previous) stopWatch(previous);
        this.flushHeldEvents(null);
        throw error;
      }
      if (previous) stopWatch(previous);
      if (watch.stopped) watch.handle.stop();
      if (!this.isCurrent(request)) return null;
      // Held events this watch's stream did not deliver are in its snapshot:
      // they go before the reply, the ones it delivered after it.
      this.flushHeldEvents(watch);
      this.finish(request);
      this.reply(request.id, watchSnapshot(this.guard.permissions, watch.handle.snapshot, limit));
      watch.live = true;
      this.flushHeldEvents(null);
      return null;
    });
  }

  /**
   * Sends an event once per session. It is held back, keeping the session's
   * event order, while a watch of a matching prefix is still taking its
   * snapshot, so that watch's client hears it after the snapshot reply.
   */
  private deliver(watch: Watch, event: LockEvent): void {
    if (!this.alive || watch.stopped || !this.guard.maySee(event)) return;
    const seen = this.seenEvents.get(event);
    if (seen === SENT) return;
    if (seen) {
      seen.receivedBy.add(watch);
      return;
    }
    if (this.heldEvents.length === 0 && !this.awaitsSnapshot(event, null)) {
      this.seenEvents.set(event, SENT);
      this.sendEvent(this.host.encodeEvent(event));
      return;
    }
    const held: HeldEvent = { event, receivedBy: new Set([watch]) };
    this.seenEvents.set(event, held);
    this.heldEvents.push(held);
  }

  /** True when a watch matching the event's key (other than `except`) has not sent its snapshot yet. */
  private awaitsSnapshot(event: LockEvent, except: Watch | null): boolean {
    for (const watch of this.watches.values()) {
      if (watch !== except && !watch.live && event.key.startsWith(watch.prefix)) return true;
    }
    return false;
  }

  /**
   * Sends held events from the front while nothing holds them back any more.
   * With `before` set (a watch about to send its snapshot), stops at the
   * first event that watch's stream delivered: that one belongs after it.
   */
  private flushHeldEvents(before: Watch | null): void {
    let sent = 0;
    for (const held of this.heldEvents) {
      if (before && held.receivedBy.has(before)) break;
      if (this.awaitsSnapshot(held.event, before)) break;
      this.seenEvents.set(held.event, SENT);
      this.sendEvent(this.host.encodeEvent(held.event));
      sent++;
    }
    if (sent > 0) this.heldEvents = this.heldEvents.slice(sent);
  }

  private startPending(request: PendingRequest): void {
    request.started = true;
    if (request.early) this.answer(request, request.early);
  }

  private answer(request: PendingRequest, settlement: Settlement): void {
    this.finish(request);
    if (settlement.kind === 'failed') {
      if (request.op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Error);
      this.replyError(request.id, toWireError(settlement.error), request.op);
      return;
    }
    if (settlement.kind === 'granted') this.held.add(settlement.grant.key);
    // The reply goes out before the metrics are counted: a grant is the
    // handoff's last step, and the client should not wait for histograms.
    this.reply(request.id, settlementResult(settlement));
    if (settlement.kind === 'granted') this.countGrantAfterWait(request, settlement.grant.key);
    else if (settlement.kind === 'acquireTimedOut') this.host.metrics.acquire(AcquireOutcome.TimedOut);
  }

  private countGrantAfterWait(request: PendingRequest, key: string): void {
    const { metrics } = this.host;
    metrics.acquire(AcquireOutcome.GrantedAfterWait);
    metrics.handedOff(key);
    if (request.queuedAt !== null) metrics.waited((performance.now() - request.queuedAt) / 1000);
  }

  private isCurrent(request: PendingRequest): boolean {
    return this.alive && this.pending.get(request.id) === request;
  }

  private finish(request: PendingRequest): void {
    this.pending.delete(request.id);
    if (request.ticket !== null) this.host.closeTicket(request.ticket);
  }

  private reply(id: RequestId, result: object): void {
    this.send(JSON.stringify({ type: 'reply', id, ok: true, ...result }));
  }

  /** Answers with an error; counted and logged (never with the request's content). */
  private replyError(id: RequestId | null, error: WireError, op: ClientMessage['op'] | null = null): void {
    this.host.metrics.error(error.code);
    this.host.logger.info({ session: this.id, code: error.code, op, id }, 'error reply');
    this.send(JSON.stringify({ type: 'reply', id, ok: false, error }));
  }

  /** `list` filtered to what this session may see. */
  private listVisible(prefix: string, limit: number) {
    return listVisible(this.guard.permissions, prefix, limit, {
      list: (p, l) => this.host.store.list(p, l, this.id),
      status: (key) => this.host.store.status(key, this.id),
    });
  }

  /**
   * A store call of a detached session resolved: a queued acquire or a
   * pending wait is cancelled (it must leave its queue), a grant is kept
   * for the resume to report.
   */
  private settleDetached(status: string, ticket: Ticket, key: string): void {
    if (status === 'granted') this.detachedKeys?.add(key);
    else if (status === 'queued') void this.host.store.cancel(this.id, ticket).catch(() => false);
  }

  /**
   * Sends an event's UTF-8 JSON as a text frame. `ws` frames a Buffer as it
   * is, where a string would be encoded to UTF-8 again for every watcher.
   */
  private sendEvent(bytes: Buffer): void {
    this.send(bytes, TEXT_FRAME);
  }

  private send(data: string | Buffer, options: { binary: false } | null = null): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (options) this.ws.send(data, options);
    else this.ws.send(data);
    // A reader that does not keep up would make the server buffer without
    // bound: it is cut (and its locks released) instead.
    if (this.ws.bufferedAmount > this.host.limits.maxBufferedBytes) {
      this.host.logger.info({ session: this.id, buffered: this.ws.bufferedAmount }, 'slow reader; terminating connection');
      this.noGrace = true;
      // The session ends from the socket's 'close' event, on a later tick:
      // ending it here would run a store step inside the one whose effects
      // are being delivered.
      this.ws.terminate();
    }
  }
}

function settlementResult(settlement: Exclude<Settlement, { kind: 'failed' }>): object {
  switch (settlement.kind) {
    case 'granted':
      return { acquired: true, token: settlement.grant.token, expiresAt: settlement.grant.expiresAt };
    case 'acquireTimedOut':
      return { acquired: false };
    case 'waitDone':
      return { free: settlement.free };
  }
}

function stopWatch(watch: Watch): void {
  watch.stopped = true;
  watch.handle?.stop();
}
