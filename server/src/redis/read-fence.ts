import type { StepRunner } from './step-runner.js';

const nothing = () => {};

/**
 * Lets a read of the shared table (`status`, `list`, a watch's snapshot)
 * wait for this node's writes in flight on the keys it reads, so that a
 * request sees the effects of the same session's requests sent before it,
 * as on the memory store. Without it a read, one script call or a SCAN sent
 * at once, reaches Redis before the step of a request the client sent just
 * ahead of it: that step first records its key in the node's key set (a
 * round trip for a key new to the node), and a `cancel` first waits for the
 * answer of the request it cancels.
 *
 * A write is in flight while a step of this node on its key is (see
 * `StepRunner#busy`), and, for a store call that may wait before its step
 * begins, for the whole call (`track`). The session's requests of the key
 * made behind such a call wait for its step to begin (see
 * `LocalSession#starting`), untracked: their steps are in flight by the time
 * it settles, and a read waits for the steps in flight then too. A read
 * waits for no other writes made after it; each it waits for is bounded by
 * the command timeout and the wait for a late predecessor of its step. With
 * nothing in flight a read does not wait at all: `key` and `prefix` return
 * null instead of a promise.
 */
export class ReadFence {
  readonly #steps: Pick<StepRunner, 'busy' | 'busyUnder' | 'idle'>;
  /** Store calls in flight per key (see `track`), each as a promise that never rejects. */
  readonly #calls = new Map<string, Set<Promise<void>>>();

  constructor(steps: Pick<StepRunner, 'busy' | 'busyUnder' | 'idle'>) {
    this.#steps = steps;
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
    const calls = this.#calls.get(key);
    if (!calls) return this.#steps.busy(key) ? this.#steps.idle(key) : null;
    return Promise.all([...calls, this.#steps.idle(key)]).then(() => this.#steps.idle(key));
  }

  /** Resolves once the writes in flight now on every key starting with `prefix` are done; null when none is. */
  prefix(prefix: string): Promise<void> | null {
    const waits: Array<Promise<void>> = [];
    for (const [key, calls] of this.#calls) {
      if (key.startsWith(prefix)) waits.push(Promise.all(calls).then(() => this.#steps.idle(key)));
    }
    for (const key of this.#steps.busyUnder(prefix)) waits.push(this.#steps.idle(key));
    return waits.length === 0 ? null : Promise.all(waits).then(nothing);
  }
}
