import { DEFAULT_LIST_LIMIT, type ClientMessage, type RequestId, type WireError } from '@lockwire/protocol';
import { LockError, toWireError } from './errors.js';
import { AcquireOutcome } from './metrics.js';
import { listVisible, statusRefusal, type Permissions } from './permissions.js';
import type { SessionHost, Settlement } from './session-host.js';
import type { SessionAcquires } from './session-acquire.js';
import type { SessionSender } from './session-sender.js';
import type { SessionWatches } from './session-watches.js';
import type { SessionId, Ticket } from './store.js';

/** One request of a session, from its frame until it is answered. */
export interface PendingRequest {
  readonly id: RequestId;
  readonly op: ClientMessage['op'];
  /**
   * The request's place among the session's requests, counted from 1 as
   * they start. Each makes its store call as it starts, and the store takes
   * a session's calls in the order they come, so this is also the order
   * the store ran them in, whatever order their answers come back in.
   */
  readonly seq: number;
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

/** The request a `run` starts: its id and op, and the key of an `acquire` or `wait`. */
export type RequestStart = Pick<ClientMessage, 'id' | 'op'> & { key?: string };

/**
 * The requests of one session that are not answered yet, by id: what
 * `duplicate_id` and `maxPendingPerSession` count (the latter leaving out
 * the acquires waiting in a queue, see `waitingCount`), and what a
 * settlement, a cancel or the session's end looks up. Each request leaves through
 * `finish`, which also closes its ticket's route.
 */
export class SessionRequests {
  private readonly pending = new Map<RequestId, PendingRequest>();
  /** How many of `pending` wait in a queue (their `queuedAt` is set): kept as they come and go. */
  private waiting = 0;
  /** The `seq` of the request started last. */
  private lastSeq = 0;

  /** @param alive whether the session is still alive: results that arrive after it died are dropped. */
  constructor(
    private readonly session: SessionId,
    private readonly host: Pick<SessionHost, 'logger' | 'metrics' | 'closeTicket'>,
    private readonly sender: SessionSender,
    private readonly alive: () => boolean,
  ) {}

  /** Requests pending now. */
  get size(): number {
    return this.pending.size;
  }

  /** True when a request with this id is pending. */
  has(id: RequestId): boolean {
    return this.pending.has(id);
  }

  /** The pending request with this id, if any. */
  get(id: RequestId): PendingRequest | undefined {
    return this.pending.get(id);
  }

  /** Acquires waiting in a queue now (from their `queued` until they are answered). */
  get waitingCount(): number {
    return this.waiting;
  }

  /** Marks a pending acquire as waiting in its key's queue from now (its `queued` went out). */
  markQueued(request: PendingRequest): void {
    if (request.queuedAt === null && this.pending.get(request.id) === request) this.waiting++;
    request.queuedAt = performance.now();
  }

  /** The pending requests the store settles later (`acquire`s and `wait`s). */
  ticketed(): PendingRequest[] {
    return [...this.pending.values()].filter((request) => request.ticket !== null);
  }

  /**
   * Runs one request's store work and answers it. The request stays pending
   * (for `duplicate_id`) until the work resolves; a result that arrives after
   * the session died or the request was answered otherwise is dropped.
   */
  run(
    message: RequestStart,
    work: (request: PendingRequest) => Promise<object | null>,
    ticket: Ticket | null = null,
  ): void {
    const { id, op } = message;
    const key = message.key ?? null;
    const seq = ++this.lastSeq;
    const request: PendingRequest = { id, op, key, seq, ticket, started: false, early: null, queuedAt: null };
    this.pending.set(id, request);
    work(request).then(
      (result) => {
        // `null`: the request stays pending, to be settled by the store later.
        if (result === null || !this.isCurrent(request)) return;
        this.finish(request);
        this.sender.reply(id, result);
      },
      (error: unknown) => {
        if (!this.isCurrent(request)) return;
        this.finish(request);
        if (!(error instanceof LockError)) {
          this.host.logger.error({ err: error, session: this.session, id }, 'request failed');
        }
        if (op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Error);
        this.sender.replyError(id, toWireError(error), op);
      },
    );
  }

  /** True while the session is alive and `request` is still the pending one of its id. */
  isCurrent(request: PendingRequest): boolean {
    return this.alive() && this.pending.get(request.id) === request;
  }

  /** Takes `request` out of the pending ones and forgets its ticket's route. */
  finish(request: PendingRequest): void {
    if (this.pending.get(request.id) !== request) return;
    if (request.queuedAt !== null) this.waiting--;
    this.pending.delete(request.id);
    if (request.ticket !== null) this.host.closeTicket(request.ticket);
  }

  /** Answers every pending request with `error`, leaving them pending. */
  replyErrorToAll(error: WireError): void {
    for (const request of this.pending.values()) this.sender.replyError(request.id, error, request.op);
  }

  /** Forgets every pending request and its ticket's route; pending acquires are counted with `abandoned`. */
  abandonAll(abandoned: AcquireOutcome): void {
    for (const request of this.pending.values()) {
      if (request.ticket !== null) this.host.closeTicket(request.ticket);
      if (request.op === 'acquire') this.host.metrics.acquire(abandoned);
    }
    this.pending.clear();
    this.waiting = 0;
  }
}

/** What a decoded request is handed to: the session's collaborators and what its handlers touch. */
export interface RequestTargets {
  readonly session: SessionId;
  readonly host: SessionHost;
  /** What the session's credentials allow: `list` is filtered to it, `status` outside `watch` answered only to a holder. */
  readonly permissions: Permissions;
  readonly requests: SessionRequests;
  /** Runs `release` too: it takes its key out of what the session holds. */
  readonly acquires: SessionAcquires;
  /** The session's watches, made by the call when it has none yet (a `watch` or `unwatch`). */
  readonly watches: () => SessionWatches;
  /** The session's watches when it has any; null when it never watched. */
  readonly watching: SessionWatches | null;
}

/**
 * Runs one decoded request that passed the session's guard: `acquire`,
 * `wait`, `cancel` and `release` go to the acquires, `watch` and `unwatch`
 * to the watches, and the rest are one store call answered when it
 * resolves.
 */
export function dispatchRequest(message: ClientMessage, to: RequestTargets): void {
  const { session, host, requests } = to;
  const { store } = host;
  switch (message.op) {
    case 'acquire':
      return to.acquires.acquire(message);
    case 'wait':
      return to.acquires.wait(message);
    case 'cancel':
      return to.acquires.cancel(message);
    case 'release':
      return to.acquires.release(message);
    case 'extend':
      return requests.run(message, async () => ({
        expiresAt: await store.extend(session, message.key, message.holdTimeout),
      }));
    case 'status':
      // Outside `watch` only a holder is answered, decided on the read: it runs after the session's
      // earlier requests, so an acquire or release sent right before it counts. A refused read is
      // answered with the error alone.
      return requests.run(message, async () => {
        const status = await store.status(message.key, session);
        const refused = statusRefusal(to.permissions, message.key, status);
        if (refused) throw new LockError(refused.code, refused.message);
        return status;
      });
    case 'list':
      // Filtered to what this session may see.
      return requests.run(message, () =>
        listVisible(to.permissions, message.prefix ?? '', message.limit ?? DEFAULT_LIST_LIMIT, {
          list: (p, l) => store.list(p, l, session),
          status: (key) => store.status(key, session),
        }),
      );
    case 'watch':
      return to.watches().watch(message);
    case 'unwatch':
      return to.watches().unwatch(message);
    case 'revoke':
      return requests.run(message, async () => ({ revoked: await store.revoke(message.key) }));
    case 'ping':
      // After the pushes of every change made before it: a `lost` of a steal through another node, and
      // the events held back then for a watch's snapshot (those heard during the sync among them).
      return requests.run(message, async () => {
        await store.sync?.(session);
        const held = to.watching?.heldSent();
        if (held) await held;
        return { at: host.clock.now() };
      });
  }
}
