import { ErrorCode } from '@lockwire/protocol';
import { LockError } from '../errors.js';
import type { SessionEnd, SessionId } from '../store.js';
import { decodeKey, encodeKey } from './key-codec.js';
import type { LocalTable } from './local-table.js';
import { keysOf } from './local-state.js';
import type { AbandonCause } from './node-liveness.js';
import { arr, str, type Json } from './records.js';
import type { StepRunner } from './step-runner.js';
import type { StoreContext } from './store-context.js';

/**
 * A closing session's keys in Redis, how its holds end, and the holds that
 * were due as it closed: key -> the `expiresAt` their timer was armed for.
 */
interface Drop {
  keys: Set<string>;
  end: SessionEnd;
  due: ReadonlyMap<string, number>;
}

/**
 * Takes what a session had out of Redis when it closes (its queued requests,
 * then its holds), what a dead node's sessions had, and retries sessions
 * whose drop failed while Redis was unreachable; ends every hold and request
 * of this node's sessions here when the node abandons them.
 */
export class SessionCleanup {
  readonly #ctx: StoreContext;
  readonly #table: LocalTable;
  readonly #steps: StepRunner;
  readonly #runDue: (key: string) => Promise<void> | null;
  /** Closed sessions whose drop failed, with the keys still to drop and how their holds end. */
  readonly #orphans = new Map<SessionId, Drop>();
  /** The keys of each session's drop in flight: in use until Redis ran it, so the key set's trim keeps them. */
  readonly #dropping = new Set<Set<string>>();
  /** The last retry pass: passes run one after another (see `retryOrphans`). */
  #retrying: Promise<void> = Promise.resolve();

  /** `runDue` runs what of this node's sessions on a key is due but whose timer has not run yet (see `Timeouts#runDue`). */
  constructor(ctx: StoreContext, table: LocalTable, steps: StepRunner, runDue: (key: string) => Promise<void> | null) {
    this.#ctx = ctx;
    this.#table = table;
    this.#steps = steps;
    this.#runDue = runDue;
  }

  /** Forgets closed sessions still to drop (the node abandoned its id; survivors clean up after it). */
  clearOrphans(): void {
    this.#orphans.clear();
  }

  /**
   * This node can no longer vouch for its sessions' locks: tell every holder,
   * and answer every pending request `store_unavailable` (through the
   * listener's `failed`; without it `acquired: false` / `free: false`).
   */
  abandon(cause: AbandonCause): void {
    const listener = this.#ctx.listener;
    const table = this.#table;
    const why =
      cause === 'state_lost'
        ? 'the lock store (Redis) lost its state; the request was dropped, retry shortly'
        : 'lost contact with the lock store (Redis); the request was dropped';
    this.clearOrphans();
    for (const [session, local] of table.sessions) {
      for (const pending of [...local.pending.values()]) {
        table.removePending(pending);
        if (listener?.failed) listener.failed(session, pending.ticket, new LockError(ErrorCode.StoreUnavailable, why));
        else if (pending.kind === 'acquire') listener?.acquireTimedOut(session, pending.ticket);
        else listener?.waitDone(session, pending.ticket, false);
      }
      for (const hold of [...local.holds.values()]) {
        table.dropHold(hold);
        listener?.lost(session, { key: hold.key, token: hold.token, reason: 'revoked' });
      }
      local.dirty.clear();
    }
    this.#ctx.logger.warn({ cause }, 'abandoned every lock and request of this node');
  }

  /**
   * Ends the session here and in Redis, its holds as `end` says, but for a
   * hold that is due and whose timer has not run yet (a loaded node): it ends
   * `expired` first, with the other due holds of its key in the order of
   * their deadlines, as the timers would have ended them and as on the
   * memory store, which runs what is due before each step (unless Redis has
   * a later expiry for it: an extend whose answer is still on its way).
   * Fails with `store_unavailable` when Redis cannot be reached; the drop is
   * then retried each renew period.
   */
  async closeSession(session: SessionId, end: SessionEnd = 'released'): Promise<void> {
    const table = this.#table;
    const open = table.sessions.get(session);
    if (!open) return;
    const dueKeys = new Set(table.dueOf(open, this.#ctx.clock.monotonic()).map((due) => due.key));
    // Told `lost` through the session's own view, which it keeps until they ran.
    if (dueKeys.size > 0) await Promise.all([...dueKeys].map((key) => this.#runDue(key)));
    const local = table.sessions.get(session);
    // Closed by another call meanwhile.
    if (local !== open) return;
    table.sessions.delete(session);
    const queued = new Set<string>(local.dirty);
    // An acquire still in flight may turn into a hold: release its key too.
    const held = new Set<string>(local.dirty);
    for (const pending of local.pending.values()) {
      queued.add(pending.key);
      if (pending.kind === 'acquire') held.add(pending.key);
      table.clearTimer(pending);
      table.tickets.delete(pending.ticket);
    }
    const now = this.#ctx.clock.monotonic();
    // One that fell due while those ran ends `expired` in the drop, unless Redis has a later expiry for it.
    const due = new Map<string, number>();
    for (const hold of local.holds.values()) {
      held.add(hold.key);
      // A hold's `expiresAt` is the one its timer was armed for: every change of it re-arms.
      if (hold.expiresAt !== null && table.holdDue(hold, now)) due.set(hold.key, hold.expiresAt);
      table.clearHoldTimer(hold);
    }
    await this.#dropSession(session, queued, held, { keys: new Set([...queued, ...held]), end, due });
  }

  /** True while a closed session's drop failed and is still to be retried. */
  get hasOrphans(): boolean {
    return this.#orphans.size > 0;
  }

  /**
   * Drops again what closed sessions left in Redis when their drop failed.
   * Runs after the pass in flight, if any (the housekeeping's, when the store
   * closes): a session stays an orphan until its drop succeeded, so what that
   * pass fails to drop is still seen, by this pass and by `hasOrphans`.
   */
  retryOrphans(): Promise<void> {
    const pass = this.#retrying.catch(() => {}).then(() => this.#retryPass());
    this.#retrying = pass;
    return pass;
  }

  async #retryPass(): Promise<void> {
    for (const [session, orphan] of [...this.#orphans]) {
      // Forgotten meanwhile: the node abandoned its id.
      if (this.#orphans.get(session) !== orphan) continue;
      await this.#dropSession(session, orphan.keys, orphan.keys, orphan);
      if (this.#orphans.get(session) === orphan) this.#orphans.delete(session);
    }
  }

  /** Encoded keys where a session of this node, open or still to drop, may have something. */
  keysInUse(): Set<string> {
    const inUse = new Set<string>();
    for (const local of this.#table.sessions.values()) for (const key of keysOf(local)) inUse.add(encodeKey(key));
    for (const { keys } of this.#orphans.values()) for (const key of keys) inUse.add(encodeKey(key));
    for (const keys of this.#dropping) for (const key of keys) inUse.add(encodeKey(key));
    return inUse;
  }

  /**
   * Runs the two drop phases for a session's keys; on failure keeps them to
   * retry. The session is no longer in the local table, so the `lost` notes
   * of revoked or expired holds find no hold to settle: each is told to the
   * listener here instead, when its step is applied, before the step's notes
   * (the grant of the next waiter) are delivered.
   */
  async #dropSession(session: SessionId, queued: Set<string>, held: Set<string>, drop: Drop): Promise<void> {
    const reportLost = (key: string) => (r: Json) => {
      const token = str(r, 't');
      const how = str(r, 'r');
      if (token === '' || (how !== 'revoked' && how !== 'expired')) return;
      this.#ctx.listener?.lost(session, { key, token: Number(token), reason: how });
    };
    const { keys } = drop;
    this.#dropping.add(keys);
    try {
      await Promise.all([...queued].map((key) => this.#steps.step('drop', key, ['q', 's', session], () => {})));
      await Promise.all(
        [...held].map((key) => {
          const due = drop.due.get(key);
          const args = ['h', 's', session, drop.end, due === undefined ? '' : String(due)];
          return this.#steps.step('drop', key, args, reportLost(key));
        }),
      );
    } catch (error) {
      this.#orphans.set(session, drop);
      throw error;
    } finally {
      this.#dropping.delete(keys);
    }
  }

  /**
   * Releases what dead node `id`'s sessions held and drops what they waited
   * for, then forgets the node. The keys go in batches of `CLEANUP_BATCH`,
   * each key's queued requests before its holds (a released hold must not be
   * granted to a queued request of the same dead node), so this node's own
   * renewals never wait behind a long run of drops on a connection they share.
   * Each batch's keys leave the id's key set once dropped: a cleanup that
   * fails (Redis unreachable) and is run again resumes with the keys left,
   * and an empty set means every drop ran. The drops are not recorded in
   * this node's key set: nothing of its sessions is on those keys for them.
   */
  async cleanupDeadNode(id: string): Promise<void> {
    const { link, names } = this.#ctx;
    if (!link) return;
    const set = names.nodeKeys(id);
    const unrecorded = { record: false } as const;
    for (;;) {
      const batch = arr(await link.command(set, ['SRANDMEMBER', set, String(CLEANUP_BATCH)])).map(String);
      if (batch.length === 0) break;
      await Promise.all(
        batch.map(async (encoded) => {
          const key = decodeKey(encoded);
          await this.#steps.step('drop', key, ['q', 'n', id], () => {}, undefined, unrecorded);
          await this.#steps.step('drop', key, ['h', 'n', id], () => {}, undefined, unrecorded);
        }),
      );
      await link.command(set, ['SREM', set, ...batch]);
    }
    await link.command(set, ['DEL', set]);
    await link.command(names.nodes(), ['SREM', names.nodes(), id]);
  }
}

/**
 * Keys of a dead node's key set dropped at once: enough to keep Redis busy,
 * few enough to let a renewal through soon. A renew sent during a batch waits
 * behind up to twice this many steps on its connection, each a script call in
 * Redis and a reply and a broadcast read by this node; on a loaded machine a
 * step may take a millisecond, and the renew must land well within the key's
 * life (0.9 x node TTL, renewed every third of it).
 */
const CLEANUP_BATCH = 128;
