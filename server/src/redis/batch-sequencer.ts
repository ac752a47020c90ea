import type { Batch } from './records.js';

/** Calls with what to deliver of a batch: its notes always, its events when `withEvents`. */
export type Deliver = (batch: Batch, withEvents: boolean) => void;

export interface BatchSequencerOptions {
  /** This node's id: broadcasts it originated are delivered from the reply instead. */
  node: () => string;
  deliver: Deliver;
  /** ms to hold a batch whose predecessor has not arrived before delivering it anyway. */
  gapWait: number;
  /**
   * Redis' clock in microseconds, read before the broadcast channel was
   * subscribed (on a Redis Cluster the least of its primaries'): a step whose
   * version is below it ran before this node could hear it, so its broadcast
   * never comes, and the first batch seen of a key whose predecessor is such
   * a step is not held for it. Default 0: every batch with a predecessor the
   * node has not delivered is held. Set once: after a resubscribe a step
   * published while the connection was down is at or above it, so a batch
   * following it is held, given up on and caught up, as for any lost message.
   */
  heardSince?: number;
  /**
   * Called with a key's encoding after its held batches were delivered
   * without their predecessor: the events of the missing step(s) were never
   * delivered, so whoever shows the key's state must read it again.
   */
  gaveUp?: (encoded: string) => void;
}

/** Keys whose last version is remembered; beyond this the oldest half is forgotten. */
const MAX_TRACKED_KEYS = 50_000;

/** Failed calls whose broadcast may still come; beyond this the oldest is forgotten. */
const MAX_FAILED_CALLS = 1000;

/**
 * Puts the batches of each key back into the order Redis ran the steps in.
 *
 * A node hears of one step up to three ways: the reply of its own call, its
 * node channel (when the step settled one of its sessions) and the broadcast
 * channel (events for watchers). These travel on different connections, so a
 * later step can overtake an earlier one. Each batch carries the key's event
 * version before (`pv`) and after (`v`) the step; versions only grow (they are
 * at least Redis' clock in microseconds), so a batch is delivered when it
 * follows the last delivered one, held while its predecessor is missing, and
 * its events are dropped when a copy was already delivered. The first batch
 * seen of a key is held for its predecessor too, unless that predecessor ran
 * before the node subscribed (`heardSince`): every watch here was read after
 * that step, and its broadcast never comes. A broadcast of a step this node
 * ran is not needed when the call's reply arrives: the reply carries the
 * same events with the caller's notes in their place among them (a `lost`
 * before the grant it made room for). Such a broadcast is dropped unread,
 * and read only when its call failed (the step may still have run).
 */
export class BatchSequencer {
  readonly #options: BatchSequencerOptions;
  readonly #last = new Map<string, number>();
  readonly #held = new Map<string, { batches: Batch[]; timer: ReturnType<typeof setTimeout> }>();
  readonly #inflight = new Map<string, Array<() => Batch>>();
  readonly #failed = new Set<string>();
  readonly #reaching = new Map<string, Set<{ version: number; done: (reached: boolean) => void }>>();
  readonly #heardSince: number;

  constructor(options: BatchSequencerOptions) {
    this.#options = options;
    this.#heardSince = options.heardSince ?? 0;
  }

  /** Marks a call as sent: broadcasts of its step wait for its reply. */
  beginCall(call: string): void {
    this.#inflight.set(call, []);
  }

  /**
   * The call's reply arrived (`batch`): delivers it. Or the call failed
   * (`null`): delivers its broadcast if it came, else reads it when it comes.
   */
  endCall(call: string, batch: Batch | null): void {
    const waiting = this.#inflight.get(call) ?? [];
    this.#inflight.delete(call);
    if (batch) {
      this.#place(batch);
      return;
    }
    if (waiting.length === 0) this.#rememberFailed(call);
    for (const load of waiting) this.#place(load());
  }

  /** Takes one copy of a step's batch from any of the three ways. */
  accept(batch: Batch): void {
    if (batch.origin !== undefined && batch.origin === this.#options.node() && batch.call !== undefined) {
      this.acceptOwn(batch.call, () => batch);
      return;
    }
    this.#place(batch);
  }

  /**
   * Takes the broadcast of a step this node ran by call `call`; `load` reads
   * it. Dropped unread when the call's reply was (or will be) delivered.
   */
  acceptOwn(call: string, load: () => Batch): void {
    const waiting = this.#inflight.get(call);
    if (waiting) waiting.push(load);
    else if (this.#failed.delete(call)) this.#place(load());
  }

  #rememberFailed(call: string): void {
    this.#failed.add(call);
    if (this.#failed.size > MAX_FAILED_CALLS) {
      for (const oldest of this.#failed) {
        this.#failed.delete(oldest);
        break;
      }
    }
  }

  #place(batch: Batch): void {
    if (batch.v === 0) {
      this.#options.deliver(batch, false);
      return;
    }
    const last = this.#last.get(batch.encoded);
    if (last !== undefined && batch.v <= last) {
      this.#dropCopy(batch);
      return;
    }
    // A key never seen here: a batch that had a predecessor may have overtaken it; wait a little,
    // unless that predecessor ran before this node subscribed (its broadcast never comes).
    if (last === undefined ? batch.pv > 0 && batch.pv >= this.#heardSince : batch.pv > last) {
      this.#hold(batch);
      return;
    }
    this.#deliverInOrder(batch);
  }

  /**
   * A copy of a delivered (or skipped) step: its notes only. A step below
   * `heardSince` was taken never to reach this node, so the first batch of
   * its key may have gone out without waiting for it. When one comes all the
   * same (Redis' clock stepped back after this node read it, a primary that
   * took over runs behind, or on a Redis Cluster a broadcast published just
   * before the subscription crossed the cluster bus after it), whoever shows
   * the key reads it again (`gaveUp`), as after a predecessor given up on.
   */
  #dropCopy(batch: Batch): void {
    this.#options.deliver(batch, false);
    if (batch.v < this.#heardSince) this.#options.gaveUp?.(batch.encoded);
  }

  /**
   * `true` when every step of the key up to `version` was delivered, else a
   * promise of that: true once they are, false after twice `gapWait` (a
   * message is late or lost). A key with nothing delivered yet is `true` at
   * once: nothing of the key before the caller's step concerns this node's
   * answer. With `start` the key's order also starts at `version` (the
   * caller's own reply is authoritative, so what waited for an earlier step
   * goes out now); earlier steps' events still on their way are then dropped,
   * so a caller passes it only when no watcher wants them. So `true` does
   * not say the node heard the key's steps: `delivered` does.
   */
  reach(encoded: string, version: number, start: boolean): true | Promise<boolean> {
    if (version <= 0) return true;
    const last = this.#last.get(encoded);
    if (last === undefined) {
      if (!start) return true;
      this.#setLast(encoded, version);
      this.#drainHeld(encoded);
      return true;
    }
    if (last >= version) return true;
    return this.#until(encoded, version);
  }

  /**
   * The key's last delivered version: every step of the key up to it was
   * delivered here (or given up on, see `gaveUp`). Null when the node records
   * none: nothing of the key was delivered yet, only a `reach` without
   * `start` asked about it, or it was forgotten past the tracked keys' bound.
   */
  delivered(encoded: string): number | null {
    return this.#last.get(encoded) ?? null;
  }

  /**
   * Resolves true once the key's last delivered version is at least
   * `version` (at once when it is), false after twice `gapWait`. For a key
   * the node records no version of, a batch that arrives now is held for its
   * predecessor for `gapWait` (not at all when that predecessor ran before
   * `heardSince`) and then delivered all the same, so the wait ends true
   * when the step at `version` reaches this node in time.
   */
  until(encoded: string, version: number): Promise<boolean> {
    return this.#until(encoded, version);
  }

  /**
   * Resolves once every batch held now (waiting for a predecessor) of a key
   * `matters` accepts (every key by default) was delivered, or given up on:
   * then every note of those keys that reached this node before the call has
   * been delivered.
   */
  async heard(matters: (key: string) => boolean = () => true): Promise<void> {
    const due: Promise<boolean>[] = [];
    for (const [encoded, held] of this.#held) {
      const first = held.batches[0];
      if (first && matters(first.key)) due.push(this.#until(encoded, Math.max(...held.batches.map((b) => b.v))));
    }
    await Promise.all(due);
  }

  /** True once the key's last delivered version is at least `version`; false after twice `gapWait`. */
  #until(encoded: string, version: number): Promise<boolean> {
    if ((this.#last.get(encoded) ?? 0) >= version) return Promise.resolve(true);
    return new Promise((resolve) => {
      let waiters = this.#reaching.get(encoded);
      if (!waiters) {
        waiters = new Set();
        this.#reaching.set(encoded, waiters);
      }
      const waiter = {
        version,
        done: (reached: boolean) => {
          clearTimeout(timer);
          waiters.delete(waiter);
          if (waiters.size === 0 && this.#reaching.get(encoded) === waiters) this.#reaching.delete(encoded);
          resolve(reached);
        },
      };
      const timer = setTimeout(() => waiter.done(false), this.#options.gapWait * 2);
      timer.unref?.();
      waiters.add(waiter);
    });
  }

  /**
   * Learns a key's version from a read (a watch snapshot) when nothing was
   * delivered for it yet; what waited for a step the read shows goes out. The
   * events of steps up to `version` still on their way are then dropped, so a
   * caller seeds only when no watcher wants them.
   */
  seed(encoded: string, version: number): void {
    if (version <= 0 || this.#last.has(encoded)) return;
    this.#setLast(encoded, version);
    this.#drainHeld(encoded);
  }

  /** Forgets held batches and timers. */
  close(): void {
    for (const held of this.#held.values()) clearTimeout(held.timer);
    this.#held.clear();
    for (const waiters of [...this.#reaching.values()]) for (const waiter of [...waiters]) waiter.done(false);
    this.#inflight.clear();
    this.#failed.clear();
  }

  #deliverInOrder(batch: Batch): void {
    this.#setLast(batch.encoded, batch.v);
    this.#options.deliver(batch, true);
    this.#drainHeld(batch.encoded);
  }

  /** Delivers the held batches of a key that now follow its last delivered one. */
  #drainHeld(encoded: string): void {
    const held = this.#held.get(encoded);
    if (!held) return;
    for (;;) {
      const last = this.#last.get(encoded) ?? 0;
      // Held batches at or below `last` are copies of delivered steps.
      const index = held.batches.findIndex((b) => b.pv <= last);
      if (index < 0) break;
      const [next] = held.batches.splice(index, 1);
      if (!next) break;
      if (next.v <= last) this.#dropCopy(next);
      else {
        this.#setLast(next.encoded, next.v);
        this.#options.deliver(next, true);
      }
    }
    if (held.batches.length === 0) {
      clearTimeout(held.timer);
      this.#held.delete(encoded);
    }
  }

  #hold(batch: Batch): void {
    const existing = this.#held.get(batch.encoded);
    if (existing) {
      existing.batches.push(batch);
      return;
    }
    const timer = setTimeout(() => this.#giveUp(batch.encoded), this.#options.gapWait);
    timer.unref?.();
    this.#held.set(batch.encoded, { batches: [batch], timer });
  }

  /** The predecessor never came (a missed message): deliver what waited, in version order. */
  #giveUp(encoded: string): void {
    const held = this.#held.get(encoded);
    if (!held) return;
    this.#held.delete(encoded);
    held.batches.sort((a, b) => a.v - b.v);
    for (const batch of held.batches) {
      const last = this.#last.get(encoded);
      if (last !== undefined && batch.v <= last) this.#dropCopy(batch);
      else {
        this.#setLast(encoded, batch.v);
        this.#options.deliver(batch, true);
      }
    }
    this.#options.gaveUp?.(encoded);
  }

  #setLast(encoded: string, v: number): void {
    this.#last.delete(encoded);
    this.#last.set(encoded, v);
    const waiters = this.#reaching.get(encoded);
    if (waiters) for (const waiter of [...waiters]) if (waiter.version <= v) waiter.done(true);
    if (this.#last.size > MAX_TRACKED_KEYS) {
      let drop = this.#last.size >> 1;
      for (const key of this.#last.keys()) {
        if (drop-- <= 0) break;
        if (!this.#held.has(key) && !this.#reaching.has(key)) this.#last.delete(key);
      }
    }
  }
}
