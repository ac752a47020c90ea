import type { SessionId } from '../store.js';
import type { LocalHold, LocalSession } from './local-state.js';
import type { LocalTable } from './local-table.js';
import { encodeKey } from './key-codec.js';
import type { NoteSettler } from './note-settler.js';
import type { StepRunner } from './step-runner.js';
import type { StoreContext } from './store-context.js';
import type { TableSnapshot } from './table-reader.js';
import type { KeyRead } from './watch-hub.js';

const nothing = () => {};

export interface ReadFenceOptions {
  steps: Pick<StepRunner, 'busy' | 'busyUnder' | 'idle'>;
  /** Its sequencer (set once the store started) tells which steps this node has heard; its logger notes a late one. */
  ctx: Pick<StoreContext, 'sequencer' | 'logger'>;
  /** This node's sessions: what a viewer holds and waits for here. */
  table: Pick<LocalTable, 'sessions'>;
  /** Tells a viewer whose hold a read shows gone without a step that it lost it (see `ReadFence#heard`). */
  notes: Pick<NoteSettler, 'vanished'>;
  /** Asks Redis where everything stands: a step a read showed was not heard in time. */
  reconcileSoon: () => void;
}

/**
 * The holds a read's viewer had on this node, among the keys the read
 * covers, taken in the turn the read is sent (`ReadFence#heldAt`,
 * `#heldUnder`): a hold recorded later may come from a step Redis ran after
 * the read, which the read cannot show.
 */
export interface HeldBefore {
  readonly session: SessionId;
  readonly holds: ReadonlyMap<string, LocalHold>;
}

/**
 * Fences a read of the shared table (`status`, `list`, a watch's snapshot)
 * on both sides, so that its answer takes its place among the session's
 * other messages as on the memory store.
 *
 * Before the read, it waits for this node's writes in flight on the keys it
 * reads (`key`, `prefix`), so that a request sees the effects of the same
 * session's requests sent before it. Without that a read, one script call
 * or a SCAN sent at once, reaches Redis before the step of a request the
 * client sent just ahead of it: that step first records its key in the
 * node's key set (a round trip for a key new to the node), and a `cancel`
 * first waits for the answer of the request it cancels.
 *
 * A write is in flight while a step of this node on its key is (see
 * `StepRunner#busy`), and, for a store call that may wait before its step
 * begins, for the whole call (`track`). The session's requests of the key
 * made behind such a call wait for its step to begin (see
 * `LocalSession#starting`), untracked: their steps are in flight by the time
 * it settles, and a read waits for the steps in flight then too. A read
 * waits for no other writes made after it; each it waits for is bounded by
 * the command timeout and the wait for a late predecessor of its step.
 *
 * After the read, it waits until this node has heard every step the read
 * shows (`heard`, `listed`): a step made through another node reaches this
 * one over pub/sub, which can lag the connection the read went on, and its
 * notes (a holder's `lost`, a waiter's grant) must reach the sessions here
 * before an answer that shows the step, as they do before the answer of a
 * later step of the key (`StepRunner`).
 *
 * A read by a holder that shows its hold gone while this node has heard
 * every step of the key it read shows a loss no step made: Redis lost its
 * state (a flush, a restart) and the node has not noticed yet. The holder
 * is told `lost` before the answer (`NoteSettler#vanished`), as before the
 * answer of its release of the key, and the node checks Redis at once.
 * Heard means delivered up to the version read (`BatchSequencer#delivered`):
 * for a key with no version recorded here the read first waits for the
 * step that ended the hold, whose own note says why.
 *
 * With nothing in flight and nothing behind, a read does not wait at all:
 * each of these returns null instead of a promise.
 */
export class ReadFence {
  readonly #o: ReadFenceOptions;
  /** Store calls in flight per key (see `track`), each as a promise that never rejects. */
  readonly #calls = new Map<string, Set<Promise<void>>>();

  constructor(options: ReadFenceOptions) {
    this.#o = options;
  }

  /**
   * Counts `call`, a store call on `key` that may wait before its step
   * begins, as a write in flight on `key` until it settles. Returns `call`
   * itself: its result and its failure are the caller's.
   */
  track<T>(key: string, call: Promise<T>): Promise<T> {
    const onKey = this.#calls.get(key) ?? new Set<Promise<void>>();
    const settled = call.then(nothing, nothing);
    this.#calls.set(key, onKey.add(settled));
    void settled.then(() => {
      onKey.delete(settled);
      if (onKey.size === 0 && this.#calls.get(key) === onKey) this.#calls.delete(key);
    });
    return call;
  }

  /** Resolves once the writes in flight on `key` now are done; null when none is. */
  key(key: string): Promise<void> | null {
    const steps = this.#o.steps;
    const calls = this.#calls.get(key);
    if (!calls) return steps.busy(key) ? steps.idle(key) : null;
    return Promise.all([...calls, steps.idle(key)]).then(() => steps.idle(key));
  }

  /** Resolves once the writes in flight now on every key starting with `prefix` are done; null when none is. */
  prefix(prefix: string): Promise<void> | null {
    const steps = this.#o.steps;
    const waits: Array<Promise<void>> = [];
    for (const [key, calls] of this.#calls) {
      if (key.startsWith(prefix)) waits.push(Promise.all(calls).then(() => steps.idle(key)));
    }
    for (const key of steps.busyUnder(prefix)) waits.push(steps.idle(key));
    return waits.length === 0 ? null : Promise.all(waits).then(nothing);
  }

  /** The hold `viewer` has of `key` on this node now, for `heard`; null when it has none (no viewer, or not a holder here). */
  heldAt(viewer: SessionId | null, key: string): HeldBefore | null {
    if (viewer === null) return null;
    const hold = this.#o.table.sessions.get(viewer)?.holds.get(key);
    return hold ? { session: viewer, holds: new Map([[key, hold]]) } : null;
  }

  /** The holds `viewer` has on this node now of keys starting with `prefix`, for `listed`; null when it has none. */
  heldUnder(viewer: SessionId | null, prefix: string): HeldBefore | null {
    if (viewer === null) return null;
    let holds: Map<string, LocalHold> | null = null;
    for (const [key, hold] of this.#o.table.sessions.get(viewer)?.holds ?? []) if (key.startsWith(prefix)) (holds ??= new Map()).set(key, hold);
    return holds ? { session: viewer, holds } : null;
  }

  /**
   * Resolves once this node has heard every step of each key up to the
   * version the read saw it at (`reads`): their batches were delivered,
   * their notes told to the sessions here. Null when none is behind, the
   * common case, found by a map lookup per key: no round trip. A key is
   * waited for at most twice the sequencer's gap wait, as a step waits for
   * its predecessors; then the read is answered all the same and a
   * reconciliation tells the sessions here what the missed step did.
   *
   * A key of `held` (the viewer's holds when the read was sent) this node
   * delivered up to the version read, whose read shows no hold of the viewer
   * under that token, while this node still records that very hold, lost it
   * without a step: the viewer is told so now (`NoteSettler#vanished`),
   * before the answer. When this node records no version of such a key, the
   * read waits for it as for a key it is behind on, and checks again then.
   * Only a hold the viewer has here costs that check, and it reads nothing.
   */
  heard(reads: Iterable<KeyRead>, held: HeldBefore | null = null): Promise<void> | null {
    const sequencer = this.#o.ctx.sequencer;
    if (!sequencer) return null;
    let behind: Array<Promise<boolean>> | null = null;
    for (const read of reads) {
      const encoded = encodeKey(read.key);
      // Not `start`: a read moves no key's order on (watches here may still want the events it shows).
      const reached = sequencer.reach(encoded, read.version, false);
      // Behind, the steps not heard yet may have ended the hold: their notes tell the holder.
      if (reached !== true) (behind ??= []).push(reached);
      else if (held && this.#showsGone(read, held)) {
        const delivered = sequencer.delivered(encoded);
        if (delivered !== null && delivered >= read.version) this.#o.notes.vanished(held.session, read.key);
        // `reach` is true at once for a key with no version recorded here (a history from before this
        // node, followed by a watch; one forgotten past the bound), so it says nothing of what was heard:
        // the step that ended the hold may be on its way, its note telling why. Wait for it first.
        else (behind ??= []).push(this.#heardThenVanished(encoded, read, held));
      }
    }
    if (!behind) return null;
    return Promise.all(behind).then((reached) => {
      if (reached.every(Boolean)) return;
      this.#o.ctx.logger.debug({}, 'a step a read showed was not heard in time; reconciling');
      this.#o.reconcileSoon();
    });
  }

  /** Whether the read shows gone the hold of the viewer of `held` on its key that this node still records. */
  #showsGone(read: KeyRead, held: HeldBefore): boolean {
    const hold = held.holds.get(read.key);
    if (!hold || this.#o.table.sessions.get(held.session)?.holds.get(read.key) !== hold) return false;
    return !read.status.holders.some((h) => h.session === held.session && h.token === hold.token);
  }

  /**
   * Waits (bounded, see `BatchSequencer#until`) until this node delivered the
   * key up to the version read; then a hold the read showed gone and no step
   * ended here vanished without a step and its viewer is told so. Not heard
   * in time, the holder is told nothing here: the reconciliation `heard`
   * asks for then tells it what happened.
   */
  async #heardThenVanished(encoded: string, read: KeyRead, held: HeldBefore): Promise<boolean> {
    const sequencer = this.#o.ctx.sequencer;
    if (!sequencer || !(await sequencer.until(encoded, read.version))) return false;
    if (this.#showsGone(read, held)) this.#o.notes.vanished(held.session, read.key);
    return true;
  }

  /**
   * `heard` for a `list` (`taken`, of `prefix`) read for `viewer` (null for
   * none), whose holds here under the prefix were `held` when the list was
   * sent. It waits for every key the list read: the listed ones, and those
   * found free or read past the limit, since the answer shows each (locked,
   * or free by its absence). A key costs a map lookup unless this node is
   * behind on it, and then the wait is what any answer about that key owes
   * the notes before it.
   *
   * A key the viewer holds or waits for here but the SCAN did not find was
   * free in Redis while this node still records its stake: a step this
   * node has not heard ended it (stolen, then released, through another
   * node), or Redis lost its state, and the answer, by leaving the key out,
   * shows that. Such a key, when the answer covers it (any key under the
   * prefix, or, when `truncated`, one before the last listed), is read again
   * for its version first: a round trip taken only in that case.
   */
  listed(taken: TableSnapshot, prefix: string, viewer: SessionId | null, held: HeldBefore | null): Promise<void> | null {
    const local = viewer === null ? undefined : this.#o.table.sessions.get(viewer);
    const unread = local ? unreadStakes(taken, prefix, local) : [];
    return unread.length === 0 ? this.heard(taken.reads, held) : this.#heardWith(taken, unread, held);
  }

  /** `heard` for the keys `taken` read and for `more`, read now (a failed read rejects, as the list's own would). */
  async #heardWith(taken: TableSnapshot, more: string[], held: HeldBefore | null): Promise<void> {
    const reads = await taken.readKeys(more);
    await this.heard([...taken.reads, ...reads], held);
  }
}

/** The keys under `prefix` the session holds or waits for that `taken` did not read and its answer covers. */
function unreadStakes(taken: TableSnapshot, prefix: string, session: LocalSession): string[] {
  const { locks, truncated } = taken.result;
  const last = locks.at(-1)?.key;
  const covered = (key: string) => key.startsWith(prefix) && !taken.versions.has(key) && (!truncated || (last !== undefined && key < last));
  const keys = new Set<string>();
  for (const key of session.holds.keys()) if (covered(key)) keys.add(key);
  for (const pending of session.pending.values()) if (covered(pending.key)) keys.add(pending.key);
  return [...keys];
}
