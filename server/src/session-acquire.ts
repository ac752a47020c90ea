import { ErrorCode, type RequestId, type RequestOf } from '@lockwire/protocol';
import { performance } from 'node:perf_hooks';
import { toWireError } from './errors.js';
import { AcquireOutcome } from './metrics.js';
import type { SessionHost, Settlement } from './session-host.js';
import type { PendingRequest, SessionRequests } from './session-requests.js';
import type { SessionSender } from './session-sender.js';
import type { AcquireOutcome as StoreAcquireOutcome, SessionId, Ticket } from './store.js';

/** What an acquire-side collaborator is given by its session. */
export interface SessionAcquiresOptions {
  readonly session: SessionId;
  readonly host: SessionHost;
  readonly requests: SessionRequests;
  readonly sender: SessionSender;
  /** Keys the session holds, as its replies and `lost` pushes told the client: grants add to it. */
  readonly held: Set<string>;
  /** The route a ticket's settlements take back to this session (`host.openTicket` with the session). */
  readonly openTicket: (id: RequestId) => Ticket;
}

/**
 * The acquire and release calls of one key in flight, and what orders their
 * answers: the store runs a session's calls in order, but their answers may
 * come back in another, and the outcome of an earlier request does not undo
 * that of a later one.
 */
interface KeyCalls {
  /** Calls in flight; the entry goes when the last is answered. */
  inFlight: number;
  /** The `seq` of the latest request whose grant or release changed what the session holds (0: none yet). */
  applied: number;
  /**
   * The token of a hold the session was told it lost meanwhile: a
   * re-acquire the store ran before the loss may be answered after it, with
   * that same token, and must not make the key held again.
   */
  lostToken: number | undefined;
}

/**
 * The requests of one session that the store may settle later: `acquire`
 * and `wait` (answered at once, or `queued` and settled by ticket), and the
 * `cancel` that takes one back; and the `release` that ends a hold. While
 * the session is detached (session grace), store calls that were in flight
 * leave their queues or are kept for the resume.
 */
export class SessionAcquires {
  /** While detached: the keys it may still hold, kept current by store calls that were in flight. */
  private detachedKeys: Set<string> | null = null;
  /**
   * The keys with an acquire or release call in flight, with what orders
   * their answers (see `KeyCalls`); made with the first such call, as most
   * connections of a large server are idle and a map per session would
   * cost each of them.
   */
  private keyCalls: Map<string, KeyCalls> | null = null;
  private readonly session: SessionId;
  private readonly host: SessionHost;
  private readonly requests: SessionRequests;
  private readonly sender: SessionSender;
  private readonly held: Set<string>;
  private readonly openTicket: (id: RequestId) => Ticket;

  constructor(options: SessionAcquiresOptions) {
    this.session = options.session;
    this.host = options.host;
    this.requests = options.requests;
    this.sender = options.sender;
    this.held = options.held;
    this.openTicket = options.openTicket;
  }

  /** Runs an `acquire`: answered at once (granted or not), or `queued` and answered when the store settles it. */
  acquire(message: RequestOf<'acquire'>): void {
    this.runTicketed(message, (request, ticket) => this.ordered(message.key, async () => {
      const outcome = await this.host.store.acquire(this.session, {
        ticket,
        key: message.key,
        mode: message.mode ?? 'exclusive',
        acquireTimeout: message.acquireTimeout ?? null,
        holdTimeout: message.holdTimeout ?? null,
        steal: message.steal ?? false,
        meta: message.meta ?? null,
      });
      // A request no longer current was counted when its session died.
      const current = this.requests.isCurrent(request);
      if (!current && this.detachedKeys) this.settleDetached(outcome, ticket, request, message.key);
      if (current && outcome.status !== 'queued') answeredFailed(request);
      switch (outcome.status) {
        case 'granted':
          if (current) {
            this.took(message.key, request, this.held, outcome.token);
            this.host.metrics.acquire(AcquireOutcome.GrantedImmediately);
          }
          return { acquired: true, token: outcome.token, expiresAt: outcome.expiresAt };
        case 'not_granted':
          if (current) this.host.metrics.acquire(AcquireOutcome.NotGranted);
          return { acquired: false };
        case 'queued':
          if (current) {
            this.requests.markQueued(request);
            this.host.metrics.acquire(AcquireOutcome.Queued);
            const queued = { type: 'queued', id: message.id, key: message.key, position: outcome.position };
            this.sender.send(JSON.stringify(queued));
            this.startPending(request);
          }
          return null;
      }
    }));
  }

  /** Runs a `wait`: answered at once when the key is free, else when the store settles it. */
  wait(message: RequestOf<'wait'>): void {
    this.runTicketed(message, async (request, ticket) => {
      const state = await this.host.store.wait(this.session, { ticket, key: message.key, timeout: message.timeout ?? null });
      if (state === 'free') {
        if (this.requests.isCurrent(request)) answeredFailed(request);
        return { free: true };
      }
      if (!this.requests.isCurrent(request) && this.detachedKeys) this.leaveQueue(ticket);
      if (this.requests.isCurrent(request)) this.startPending(request);
      return null;
    });
  }

  /** Runs a `cancel`: a pending `acquire` or `wait` it takes back is answered `cancelled` first. */
  cancel(message: RequestOf<'cancel'>): void {
    const target = this.requests.get(message.target);
    this.requests.run(message, async () => {
      if (!target || target.ticket === null) return { cancelled: false };
      const cancelled = await this.host.store.cancel(this.session, target.ticket);
      if (!cancelled || !this.requests.isCurrent(target)) return { cancelled: false };
      // The cancelled request is answered before the cancel itself.
      this.requests.finish(target);
      if (target.op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Cancelled);
      this.sender.replyError(target.id, { code: ErrorCode.Cancelled, message: 'the request was cancelled' }, target.op);
      return { cancelled: true };
    });
  }

  /** Answers a settled `acquire` or `wait` (or keeps the answer until its store call has resolved). */
  settle(id: RequestId, ticket: Ticket, settlement: Settlement): void {
    const request = this.requests.get(id);
    if (!request || request.ticket !== ticket) return;
    if (request.started) this.answer(request, settlement);
    else request.early = settlement;
  }

  /**
   * The session is detaching: from here on, store calls still in flight
   * settle as `settleDetached` says (a pending wait leaves its queue), and a
   * release still in flight takes its key out (see `release`). Returns the
   * keys it may still hold, starting with `held`; the set is kept current as
   * those calls resolve, as the grace counts and ends the session's holds
   * by it.
   */
  detach(held: ReadonlySet<string>): Set<string> {
    const keys = new Set(held);
    this.detachedKeys = keys;
    return keys;
  }

  /**
   * Runs a `release`. Once the store released the hold, its key leaves
   * `held`, and, when the release was still in flight as the session
   * detached, the keys its grace counts, so the hold is neither counted as
   * held nor ended a second time when the grace is over. Unless the session
   * took the key again by a request started after the release (the store
   * ran it after the release, though its grant may have been answered
   * first): that hold stays.
   */
  release(message: RequestOf<'release'>): void {
    const { key } = message;
    this.requests.run(message, (request) => this.ordered(key, async () => {
      const handoff = this.host.metrics.holdEnding(key);
      try {
        await this.host.store.release(this.session, key);
      } finally {
        handoff();
      }
      if (this.apply(key, request)) {
        this.held.delete(key);
        this.detachedKeys?.delete(key);
      }
      return { released: true };
    }));
  }

  /**
   * The session was told it lost its hold of `key` (`token`): a grant of
   * that hold answered later (a re-acquire the store ran before the loss)
   * does not make the key held again.
   */
  lost(key: string, token: number): void {
    this.held.delete(key);
    const calls = this.keyCalls?.get(key);
    if (calls) calls.lostToken = token;
  }

  /**
   * Cancels the detached session's queued acquires and waits in the store;
   * an acquire that could not be cancelled adds its key to `keys` when the
   * session holds the key then. Resolves when every cancel has.
   */
  leaveQueues(ticketed: readonly PendingRequest[], keys: Set<string>): Promise<void> {
    return Promise.all(
      ticketed.map(async (request) => {
        if (request.ticket === null) return;
        const cancelled = await this.host.store.cancel(this.session, request.ticket).catch(() => false);
        if (cancelled || request.op !== 'acquire' || request.key === null) return;
        // Not cancelled: granted just now (the grant's route closed with the
        // connection), or already answered otherwise (not granted, timed
        // out, failed). Only the store can tell which; a grant still to come
        // of a call in flight is added by `settleDetached`. When the store
        // cannot say, the key is kept: a resume checks each key anyway.
        if (await this.holds(request.key)) this.took(request.key, request, keys);
      }),
    ).then(() => {});
  }

  /** Whether the store says the session holds `key` now (true when it cannot say). */
  private async holds(key: string): Promise<boolean> {
    try {
      const status = await this.host.store.status(key, this.session);
      return status.holders.some((holder) => holder.session === this.session);
    } catch (error) {
      const fields = { session: this.session, key, err: error };
      this.host.logger.debug(fields, 'store could not tell whether a detached session holds a key; keeping it');
      return true;
    }
  }

  /**
   * A store acquire of a detached session resolved: a queued acquire leaves
   * its queue, a grant is kept for the resume to report.
   */
  private settleDetached(outcome: StoreAcquireOutcome, ticket: Ticket, request: PendingRequest, key: string): void {
    if (outcome.status === 'granted') {
      if (this.detachedKeys) this.took(key, request, this.detachedKeys, outcome.token);
    } else if (outcome.status === 'queued') this.leaveQueue(ticket);
  }

  /** Takes a detached session's queued acquire or pending wait out of its store queue: no one is left to answer it. */
  private leaveQueue(ticket: Ticket): void {
    void this.host.store.cancel(this.session, ticket).catch(() => false);
  }

  /**
   * Runs a request the store may settle later by ticket (`work` makes the
   * store call). The ticket is routed before the store sees it, so a
   * settlement or a cancel that races the store call finds this request.
   */
  private runTicketed(
    message: RequestOf<'acquire' | 'wait'>,
    work: (request: PendingRequest, ticket: Ticket) => Promise<object | null>,
  ): void {
    const ticket = this.openTicket(message.id);
    this.requests.run(message, (request) => work(request, ticket), ticket);
  }

  /**
   * The session took `key` by `request`'s grant: adds it to `keys` (`held`
   * or the detached keys), unless a release started after `request` was
   * answered first (a re-acquire by the holder answered late).
   */
  private took(key: string, request: PendingRequest, keys: Set<string>, token?: number): void {
    if (token !== undefined && this.keyCalls?.get(key)?.lostToken === token) return;
    if (this.apply(key, request)) keys.add(key);
  }

  /** Whether `request`'s outcome for `key` is the latest yet (see `applied`); if so it is from now on. */
  private apply(key: string, request: PendingRequest): boolean {
    const calls = this.keyCalls?.get(key);
    if (!calls) return true;
    if (calls.applied > request.seq) return false;
    calls.applied = request.seq;
    return true;
  }

  /**
   * Runs `call`, a store call of `key` whose outcome changes what the
   * session holds. Its start is counted before the call is made, so that
   * its `KeyCalls` stay until every such call has been answered.
   */
  private ordered<T>(key: string, call: () => Promise<T>): Promise<T> {
    const keyCalls = (this.keyCalls ??= new Map());
    let calls = keyCalls.get(key);
    if (calls) calls.inFlight++;
    else keyCalls.set(key, (calls = { inFlight: 1, applied: 0, lostToken: undefined }));
    const settled = () => {
      if (--calls.inFlight > 0) return;
      keyCalls.delete(key);
      if (keyCalls.size === 0 && this.keyCalls === keyCalls) this.keyCalls = null;
    };
    // The call's own promise is handed on, not awaited here: an extra step would answer the request
    // a turn later, after replies to requests that came behind it in the same read (a ping).
    const answered = call();
    answered.then(settled, settled);
    return answered;
  }

  private startPending(request: PendingRequest): void {
    request.started = true;
    if (request.early) this.answer(request, request.early);
  }

  private answer(request: PendingRequest, settlement: Settlement): void {
    this.requests.finish(request);
    if (settlement.kind === 'failed') {
      if (request.op === 'acquire') this.host.metrics.acquire(AcquireOutcome.Error);
      this.sender.replyError(request.id, toWireError(settlement.error), request.op);
      return;
    }
    if (settlement.kind === 'granted') this.took(settlement.grant.key, request, this.held, settlement.grant.token);
    // The reply goes out before the metrics are counted: a grant is the
    // handoff's last step, and the client should not wait for histograms.
    this.sender.reply(request.id, settlementResult(settlement));
    if (settlement.kind === 'granted') this.countGrantAfterWait(request, settlement.grant.key);
    else if (settlement.kind === 'acquireTimedOut') this.host.metrics.acquire(AcquireOutcome.TimedOut);
  }

  private countGrantAfterWait(request: PendingRequest, key: string): void {
    const { metrics } = this.host;
    metrics.acquire(AcquireOutcome.GrantedAfterWait);
    metrics.handedOff(key);
    if (request.queuedAt !== null) metrics.waited((performance.now() - request.queuedAt) / 1000);
  }
}

/**
 * Throws the failure the store settled `request` with before its call
 * resolved (a Redis node that gave its requests up, say): that answer
 * stands, and the request is answered with it rather than with what the
 * call resolved to. Above all, no `acquired: true` follows a failure. A
 * `queued` request answers it right after its `queued` (see `startPending`).
 */
function answeredFailed(request: PendingRequest): void {
  if (request.early?.kind === 'failed') throw request.early.error;
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
