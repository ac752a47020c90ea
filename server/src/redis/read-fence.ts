import type { LocalSession } from './local-state.js';
import { encodeKey } from './key-codec.js';
import type { StepRunner } from './step-runner.js';
import type { StoreContext } from './store-context.js';
import type { TableSnapshot } from './table-reader.js';

const nothing = () => {};

export interface ReadFenceOptions {
  steps: Pick<StepRunner, 'busy' | 'busyUnder' | 'idle'>;
  /** Its sequencer (set once the store started) tells which steps this node has heard; its logger notes a late one. */
  ctx: Pick<StoreContext, 'sequencer' | 'logger'>;
  /** Asks Redis where everything stands: a step a read showed was not heard in time. */
  reconcileSoon: () => void;
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

  /**
   * Resolves once this node has heard every step of each key up to the
   * version the read saw it at (`reads`: key and version pairs): their
   * batches were delivered, their notes told to the sessions here. Null when
   * none is behind, the common case, found by a map lookup per key: no round
   * trip. A key is waited for at most twice the sequencer's gap wait, as a
   * step waits for its predecessors; then the read is answered all the same
   * and a reconciliation tells the sessions here what the missed step did.
   */
  heard(reads: Iterable<readonly [string, number]>): Promise<void> | null {
    const sequencer = this.#o.ctx.sequencer;
    if (!sequencer) return null;
    let behind: Array<Promise<boolean>> | null = null;
    for (const [key, version] of reads) {
      // Not `start`: a read moves no key's order on (watches here may still want the events it shows).
      const reached = sequencer.reach(encodeKey(key), version, false);
      if (reached !== true) (behind ??= []).push(reached);
    }
    if (!behind) return null;
    return Promise.all(behind).then((reached) => {
      if (reached.every(Boolean)) return;
      this.#o.ctx.logger.debug({}, 'a step a read showed was not heard in time; reconciling');
      this.#o.reconcileSoon();
    });
  }

  /**
   * `heard` for a `list` (`taken`, of `prefix`) read for `viewer`, this
   * node's session (undefined for none). It waits for every key the list
   * read: the listed ones, and those found free or read past the limit,
   * since the answer shows each (locked, or free by its absence). A key
   * costs a map lookup unless this node is behind on it, and then the wait
   * is what any answer about that key owes the notes before it.
   *
   * A key the viewer holds or waits for here but the SCAN did not find was
   * free in Redis while this node still records its stake: a step this
   * node has not heard ended it (stolen, then released, through another
   * node), and the answer, by leaving the key out, shows that step. Such a
   * key, when the answer covers it (any key under the prefix, or, when
   * `truncated`, one before the last listed), is read again for its version
   * first: a round trip taken only in that case.
   */
  listed(taken: TableSnapshot, prefix: string, viewer: LocalSession | undefined): Promise<void> | null {
    const unread = viewer ? unreadStakes(taken, prefix, viewer) : [];
    return unread.length === 0 ? this.heard(taken.versions) : this.#heardWith(taken, unread);
  }

  /** `heard` for the keys `taken` read and for `more`, read now (a failed read rejects, as the list's own would). */
  async #heardWith(taken: TableSnapshot, more: string[]): Promise<void> {
    const reads = await taken.readKeys(more);
    await this.heard([...taken.versions, ...reads.map((r) => [r.key, r.version] as const)]);
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
