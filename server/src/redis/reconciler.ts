import { ErrorCode } from '@lockwire/protocol';
import { LockError } from '../errors.js';
import type { SessionId, Ticket } from '../store.js';
import { encodeKey } from './key-codec.js';
import type { LocalTable } from './local-table.js';
import type { LocalPending, LocalSession, UncertainRequest } from './local-state.js';
import { expiresAtOf, num, parseJson, str, type Json } from './records.js';
import { scripts } from './scripts.js';
import { failedCallReason, type StepRunner } from './step-runner.js';
import { live, retrySoon, type StoreContext } from './store-context.js';
import { dueOfGrant } from './timeouts.js';

/** The answer to a wait whose record a cleanup of the id it was recorded under may have dropped. */
const WAIT_DROPPED = 'lost contact with the lock store (Redis); the request was dropped';

/** What a node publishes to its own channel to check that pub/sub reaches it. */
export const HEARTBEAT = 'hb';

/**
 * Finds what this node missed. Notes and grants come over pub/sub, which
 * drops messages while a subscriber reconnects, and a path may go silent
 * unnoticed. After a resubscribe, a recovery, a step whose predecessor was
 * not heard in time, or a heartbeat that did not come back, the node asks
 * Redis (`probe`) where every pending request and hold of its sessions
 * stands, and settles what ended unheard. It also takes out of Redis what
 * an acquire or wait answered `store_unavailable` may have left there (the
 * call failed, yet Redis may have run it), so that a failed request changes
 * nothing; a new acquire of the same session and key waits for that first.
 */
export class Reconciler {
  readonly #ctx: StoreContext;
  readonly #table: LocalTable;
  readonly #steps: StepRunner;
  #reconciling: Promise<void> | null = null;
  #reconcileAgain = false;
  /**
   * A run that must be tried again (a step of the key was in flight, or a
   * probe failed) waits 100 ms first; until that run begins, this resolves
   * then, so `settled` still covers what it will settle.
   */
  #retryDue: Promise<void> | null = null;
  /**
   * The take-out of each failed request in progress, by ticket: a run of the
   * reconciliation and an acquire waiting on it share one, so two never
   * race on the same request.
   */
  readonly #undoing = new Map<Ticket, Promise<boolean>>();
  /** The node id each pending wait was recorded under in Redis (its record's name holds it). */
  readonly #waitIds = new WeakMap<LocalPending, string>();
  /** The last heartbeat this node published to its own channel, and whether it came back. */
  #heartbeat: { sent: boolean; heard: boolean } = { sent: false, heard: false };

  constructor(ctx: StoreContext, table: LocalTable, steps: StepRunner) {
    this.#ctx = ctx;
    this.#table = table;
    this.#steps = steps;
  }

  /** Resolves once no reconciliation is running or due to run again. */
  async settled(): Promise<void> {
    for (;;) {
      const under = this.#reconciling ?? this.#retryDue;
      if (!under) return;
      await under.catch(() => {});
    }
  }

  /** Reconciles once more after the run in progress, or now. */
  reconcileSoon(): void {
    if (this.#reconciling) {
      this.#reconcileAgain = true;
      return;
    }
    this.#reconciling = this.reconcile().finally(() => {
      this.#reconciling = null;
      if (this.#reconcileAgain) {
        this.#reconcileAgain = false;
        this.reconcileSoon();
      }
    });
  }

  /**
   * An acquire of `local`'s session answered `store_unavailable` may still
   * have queued or been granted in Redis, a wait may still have its record
   * there: the next runs take it out again (the step runner starts one after
   * every failed call). `kind` defaults to an acquire.
   */
  uncertain(local: LocalSession, ticket: Ticket, key: string, kind: UncertainRequest['kind'] = 'acquire'): void {
    local.uncertain.set(ticket, { key, kind });
  }

  /**
   * Takes out of Redis what the failed acquires of `local`'s session on
   * `key` left there, before a new acquire of the key runs: otherwise Redis
   * would answer it with the failed request (already queued) or with a grant
   * the session was told it did not get. Waits for a take-out already in
   * progress, then does it itself: a probe and one step, each bounded by the
   * command timeout. Throws `store_unavailable` when Redis cannot answer or
   * the node does not serve, so the new acquire is refused as the failed one
   * was, never as already queued.
   */
  async clearUncertain(session: SessionId, local: LocalSession, key: string): Promise<void> {
    for (const [ticket, request] of [...local.uncertain]) {
      if (request.kind !== 'acquire' || request.key !== key) continue;
      // Three looks at most: a request granted while being unqueued needs a second, its release a third.
      let done = false;
      for (let look = 0; look < 3 && !done; look++) {
        try {
          done = await this.#undo(session, local, ticket, request, true);
        } catch (error) {
          // A failed step is already answered so; a failed probe is not.
          if (error instanceof LockError && error.code === ErrorCode.StoreUnavailable) throw error;
          throw new LockError(ErrorCode.StoreUnavailable, failedCallReason(live(this.#ctx), error));
        }
      }
      if (!done) throw new LockError(ErrorCode.StoreUnavailable, live(this.#ctx).reason);
    }
  }

  /** Where a request (`a`/`w` by ticket) or hold (`h` by token) of a session stands in Redis. */
  async probe(key: string, session: SessionId, kind: 'a' | 'w' | 'h', id: string): Promise<Json> {
    const ctx = this.#ctx;
    const link = ctx.link;
    const liveness = live(ctx);
    if (!link) throw new LockError(ErrorCode.StoreUnavailable, liveness.reason);
    const reply = await link.evalScript(scripts.probe, ctx.names.lockKeys(encodeKey(key)), [
      liveness.id,
      '',
      '0',
      '',
      ctx.namespace,
      session,
      kind,
      id,
    ]);
    return parseJson(reply);
  }

  /**
   * True while this node serves: a request or hold gone from Redis then ended
   * in the table. Otherwise Redis may have lost its state unnoticed so far,
   * and the node's abandon settles everything instead.
   */
  #vouching(): boolean {
    return this.#ctx.liveness?.serving ?? false;
  }

  /** Notes the node id a wait's step runs under: a probe under another id cannot see its record. */
  recordedUnder(pending: LocalPending, node: string): void {
    this.#waitIds.set(pending, node);
  }

  /**
   * Settles a pending request from a probe's answer, unless it still waits
   * in Redis. A wait whose record is gone ended (its holds were released)
   * only when the probe looked under the id it was recorded under, and the
   * node vouches: otherwise a cleanup of that id may have dropped the record,
   * and the wait is answered `store_unavailable`, never `free`.
   */
  settleProbed(pending: LocalPending, r: Json): void {
    const st = str(r, 'st');
    const table = this.#table;
    if (table.tickets.get(pending.ticket) !== pending || st === 'queued' || st === 'pending') return;
    table.removePending(pending);
    const { session, ticket } = pending;
    const listener = this.#ctx.listener;
    if (pending.kind === 'wait') {
      const liveness = live(this.#ctx);
      if (liveness.vouching && this.#waitIds.get(pending) === liveness.id) listener?.waitDone(session, ticket, true);
      else if (listener?.failed) listener.failed(session, ticket, new LockError(ErrorCode.StoreUnavailable, WAIT_DROPPED));
      else listener?.waitDone(session, ticket, false);
    } else if (st === 'granted') {
      const grant = { key: pending.key, token: Number(str(r, 't')), expiresAt: expiresAtOf(str(r, 'x')) };
      const local = table.sessions.get(session);
      const ended = pending.unheld?.get(grant.token);
      // Granted at some time before this probe, its message missed: timed within what that allows.
      if (local && ended === undefined) table.addHold(local, session, grant, dueOfGrant(this.#ctx.clock, grant.expiresAt, pending, true));
      listener?.granted(session, ticket, grant);
      // Its `lost` came over pub/sub before this reply and found no hold: report it now.
      if (ended !== undefined) listener?.lost(session, { key: grant.key, token: grant.token, reason: ended });
    } else listener?.acquireTimedOut(session, ticket);
  }

  /** After missed messages: asks Redis where every pending request and hold stands. */
  async reconcile(): Promise<void> {
    const ctx = this.#ctx;
    if (!ctx.link || !ctx.liveness) return;
    const listener = ctx.listener;
    const work: Promise<void>[] = [];
    let again = false;
    for (const [session, local] of this.#table.sessions) {
      for (const pending of local.pending.values()) {
        if (pending.sending) continue;
        const kind = pending.kind === 'acquire' ? 'a' : 'w';
        work.push(
          this.probe(pending.key, session, kind, String(pending.ticket)).then((r) => {
            const st = str(r, 'st');
            if (st === 'queued' || st === 'pending') return;
            if (this.#steps.busy(pending.key) || !this.#vouching()) again = true;
            else this.settleProbed(pending, r);
          }),
        );
      }
      for (const [ticket, request] of local.uncertain) {
        work.push(
          this.#undo(session, local, ticket, request, false).then((done) => {
            if (!done) again = true;
          }),
        );
      }
      for (const hold of local.holds.values()) {
        work.push(
          this.probe(hold.key, session, 'h', String(hold.token)).then((r) => {
            if (str(r, 'st') !== 'gone' || local.holds.get(hold.key) !== hold) return;
            // A step of this node on the key (a release, a cancel) may have ended it: look again once applied.
            if (this.#steps.busy(hold.key) || !this.#vouching()) {
              again = true;
              return;
            }
            this.#table.dropHold(hold);
            listener?.lost(session, { key: hold.key, token: hold.token, reason: 'revoked' });
          }),
        );
      }
    }
    const results = await Promise.allSettled(work);
    if (again || results.some((r) => r.status === 'rejected')) this.#retry();
  }

  /**
   * Runs the take-out of one failed request, or joins the one in progress:
   * true once nothing of it is left to look at. `force` (an acquire of the
   * session and key waits on it) does not leave the key for a later run when
   * a step of this node on it is in flight, but waits for that step first.
   */
  async #undo(session: SessionId, local: LocalSession, ticket: Ticket, request: UncertainRequest, force: boolean): Promise<boolean> {
    const current = () => this.#table.sessions.get(session) === local && local.uncertain.get(ticket) === request;
    let running = this.#undoing.get(ticket);
    while (running) {
      const done = await running.catch(() => false);
      if (done || !current()) return true;
      // Left for a later run, or Redis did not answer: an acquire waiting on it looks itself.
      if (!force) return false;
      const next = this.#undoing.get(ticket);
      running = next === running ? undefined : next;
    }
    if (!current()) return true;
    const run = this.#undoUncertain(session, local, ticket, request, force, current);
    this.#undoing.set(ticket, run);
    try {
      return await run;
    } finally {
      if (this.#undoing.get(ticket) === run) this.#undoing.delete(ticket);
    }
  }

  /**
   * Takes out of Redis what a failed acquire left: its queued request, or
   * the hold it was granted, unless the session holds that grant here (an
   * acquire of the key answered with it, or an extend); and what a failed
   * wait left: its record. False when the key must be looked at again (a
   * step of this node on it is in flight, the node does not serve, or the
   * request was granted while being taken out).
   */
  async #undoUncertain(
    session: SessionId,
    local: LocalSession,
    ticket: Ticket,
    { key, kind }: UncertainRequest,
    force: boolean,
    current: () => boolean,
  ): Promise<boolean> {
    // A step of the session in flight may answer with the very hold a failed acquire was granted: let it land first.
    if (force) await this.#steps.idle(key);
    const r = await this.probe(key, session, kind === 'acquire' ? 'a' : 'w', String(ticket));
    if (!current()) return true;
    if ((!force && this.#steps.busy(key)) || !this.#vouching()) return false;
    const st = str(r, 'st');
    const logger = this.#ctx.logger;
    if (kind === 'wait') {
      if (st === 'pending') {
        // Redis ran the wait: its record would outlive it and settle a ticket nobody waits on.
        await this.#steps.step('unqueue', key, [session, String(ticket), 'w'], () => {});
        logger.debug({ key, ticket }, 'took a failed wait out of Redis');
      }
    } else if (st === 'granted' && local.holds.get(key)?.token === Number(str(r, 't'))) {
      // The session holds that grant here already: it keeps it.
    } else if (st === 'queued') {
      // Removes only that ticket's request: false when it was granted meanwhile.
      const removed = await this.#steps.step('unqueue', key, [session, String(ticket), 'a'], (u) => num(u, 'ok') === 1);
      if (!removed) return false;
      logger.debug({ key, ticket }, 'took a failed acquire out of the queue');
    } else if (st === 'granted') {
      await this.#steps.step('drop', key, ['h', 's', session, 'released'], (d) => {
        // An acquire of the key answered meanwhile with this very hold: its session must hear it ended.
        const hold = local.holds.get(key);
        if (!hold || String(hold.token) !== str(d, 't')) return;
        this.#table.dropHold(hold);
        this.#ctx.listener?.lost(session, { key, token: hold.token, reason: 'revoked' });
      });
      logger.debug({ key, ticket }, 'released the hold a failed acquire was granted');
    } else if (st !== 'gone') {
      return false;
    }
    if (current()) local.uncertain.delete(ticket);
    return true;
  }

  /** Reconciles again in 100 ms; `settled` waits for that run too. */
  #retry(): void {
    if (this.#retryDue || this.#ctx.closing) return;
    let begin: () => void = () => {};
    this.#retryDue = new Promise<void>((resolve) => (begin = resolve));
    retrySoon(this.#ctx, () => {
      this.#retryDue = null;
      // The run starts before anything waiting on `settled` looks again.
      this.reconcileSoon();
      begin();
    });
  }

  /**
   * True when this node published a heartbeat that has not come back (yet):
   * read before the next `beat()`, the pub/sub path may have been silent
   * and broadcasts lost on it as well as notes and grants.
   */
  get heartbeatMissed(): boolean {
    return this.#heartbeat.sent && !this.#heartbeat.heard;
  }

  /**
   * Publishes a heartbeat to this node's own channel. When the previous one
   * has not come back, notes or grants may be lost on a silent pub/sub path:
   * the node reconciles (and on a single server the silent connection is
   * reconnected once idle for the node TTL).
   */
  async beat(): Promise<void> {
    const { link, liveness } = this.#ctx;
    if (!link || !liveness) return;
    if (this.heartbeatMissed) {
      this.#ctx.logger.warn({}, 'a pub/sub heartbeat did not come back; reconciling');
      this.reconcileSoon();
    }
    this.#heartbeat = { sent: true, heard: false };
    const channel = this.#ctx.names.nodeChannel(liveness.id);
    await link.command(channel, ['PUBLISH', channel, HEARTBEAT]);
  }

  /** The last heartbeat came back over this node's channel. */
  heard(): void {
    this.#heartbeat.heard = true;
  }
}
