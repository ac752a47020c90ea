import { ErrorCode } from '@lockwire/protocol';
import { LockError } from '../errors.js';
import type { SessionId, Ticket } from '../store.js';
import { encodeKey } from './key-codec.js';
import type { LocalTable } from './local-table.js';
import type { LocalPending, LocalSession } from './local-state.js';
import { expiresAtOf, num, parseJson, str, type Json } from './records.js';
import { scripts } from './scripts.js';
import type { StepRunner } from './step-runner.js';
import { live, retrySoon, type StoreContext } from './store-context.js';

/** What a node publishes to its own channel to check that pub/sub reaches it. */
export const HEARTBEAT = 'hb';

/**
 * Finds what this node missed. Notes and grants come over pub/sub, which
 * drops messages while a subscriber reconnects, and a path may go silent
 * unnoticed. After a resubscribe, a recovery, a step whose predecessor was
 * not heard in time, or a heartbeat that did not come back, the node asks
 * Redis (`probe`) where every pending request and hold of its sessions
 * stands, and settles what ended unheard. It also takes out of Redis what
 * an acquire answered `store_unavailable` may have left there (the call
 * failed, yet Redis may have run it), so that a failed request changes
 * nothing.
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
   * have queued or been granted in Redis: the next runs take it out again
   * (the step runner starts one after every failed call).
   */
  uncertain(local: LocalSession, ticket: Ticket, key: string): void {
    local.uncertain.set(ticket, key);
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

  /** Settles a pending request from a probe's answer, unless it still waits in Redis. */
  settleProbed(pending: LocalPending, r: Json): void {
    const st = str(r, 'st');
    const table = this.#table;
    if (table.tickets.get(pending.ticket) !== pending || st === 'queued' || st === 'pending') return;
    table.removePending(pending);
    const { session, ticket } = pending;
    const listener = this.#ctx.listener;
    if (pending.kind === 'wait') listener?.waitDone(session, ticket, true);
    else if (st === 'granted') {
      const grant = { key: pending.key, token: Number(str(r, 't')), expiresAt: expiresAtOf(str(r, 'x')) };
      const local = table.sessions.get(session);
      const ended = pending.unheld.get(grant.token);
      if (local && ended === undefined) table.addHold(local, session, grant);
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
      for (const [ticket, key] of local.uncertain) {
        work.push(
          this.#undoUncertain(session, local, ticket, key).then((done) => {
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
   * Takes out of Redis what a failed acquire left: its queued request, or
   * the hold it was granted, unless the session holds that grant here (a
   * later acquire of the key was answered with it). False when the key must
   * be looked at again (a step of this node on it is in flight, the node does
   * not serve, or the request was granted while being taken out).
   */
  async #undoUncertain(session: SessionId, local: LocalSession, ticket: Ticket, key: string): Promise<boolean> {
    const r = await this.probe(key, session, 'a', String(ticket));
    const current = () => this.#table.sessions.get(session) === local && local.uncertain.get(ticket) === key;
    if (!current()) return true;
    if (this.#steps.busy(key) || !this.#vouching()) return false;
    const st = str(r, 'st');
    const token = Number(str(r, 't'));
    if (st === 'granted' && local.holds.get(key)?.token === token) {
      local.uncertain.delete(ticket);
      return true;
    }
    const logger = this.#ctx.logger;
    if (st === 'queued') {
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
   * Publishes a heartbeat to this node's own channel. When the previous one
   * has not come back, notes or grants may be lost on a silent pub/sub path:
   * the node reconciles (and on a single server the silent connection is
   * reconnected once idle for the node TTL).
   */
  async beat(): Promise<void> {
    const { link, liveness } = this.#ctx;
    if (!link || !liveness) return;
    if (this.#heartbeat.sent && !this.#heartbeat.heard) {
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
