import { performance } from 'node:perf_hooks';
import type { StoreContext } from './store-context.js';

/** Start of a barrier a node publishes to its own channel (`sync` then its number). */
export const BARRIER = 'sync ';

/** ms between tries of a marker that found no subscriber, unless the subscriber is back sooner. */
const RETRY_MS = 100;

/**
 * How one marker ended: it came back; it could not be sent or no subscriber
 * heard it; it was out when the pub/sub connection came back after a break
 * (it may have gone to the broken one); or the wait ran out.
 */
type MarkerOutcome = 'back' | 'lost' | 'resent' | 'timeout';

export interface SyncBarrierOptions {
  ctx: StoreContext;
  /** ms a whole `sync` may take before it gives up (the command timeout). */
  timeout: number;
  /** Resolves once no reconciliation is under way (one may settle notes missed in a pub/sub break). */
  settled: () => Promise<void>;
}

/**
 * The store's `sync`: a marker through this node's own pub/sub channel,
 * behind which every note of an earlier step has been delivered.
 */
export class SyncBarrier {
  readonly #o: SyncBarrierOptions;
  /** Markers published to this node's own channel that have not come back, by number. */
  readonly #markers = new Map<number, (outcome: MarkerOutcome) => void>();
  #markerCount = 0;
  /** Syncs waiting to try their marker again once the pub/sub connection is back. */
  readonly #retries = new Set<() => void>();

  constructor(options: SyncBarrierOptions) {
    this.#o = options;
  }

  /**
   * A barrier: publishes a marker to this node's own channel and waits until
   * it comes back. Redis sends a node's messages in the order it ran the
   * steps, so every note of a step Redis ran before the marker has then
   * arrived. A marker that cannot be sent or that no subscriber hears (the
   * node's pub/sub connection is down) is tried again once the connection is
   * back, and then the reconciliation that follows a break (which settles
   * the notes it missed) is waited out too. The wait ends once those notes
   * are delivered: a batch held for a missing predecessor, of a key
   * `matters` accepts; a note held for an answer in flight. Gives up after
   * the timeout, and when the store closes.
   */
  async sync(matters: (key: string) => boolean): Promise<void> {
    const deadline = performance.now() + this.#o.timeout;
    for (;;) {
      const outcome = await this.#marker(deadline);
      if (outcome === 'back') break;
      if (outcome === 'timeout') return;
      if (outcome === 'lost' && !(await this.#retryPause(deadline))) return;
    }
    await this.#within(this.#o.settled(), deadline);
    const { sequencer } = this.#o.ctx;
    if (sequencer) await sequencer.heard(matters);
    // Notes held for a request's answer go out right after it, in a `setImmediate` (see `NoteSettler#sent`).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Marker `n` came back: so did every earlier one (a subscriber gets messages in order). */
  pass(n: number): void {
    for (const [number, settle] of this.#markers) {
      if (number > n) continue;
      this.#markers.delete(number);
      settle('back');
    }
  }

  /**
   * This node's pub/sub connection is back after a break: markers still out
   * may have gone to the broken connection and never come back, so every
   * sync waiting on one, or waiting to retry, tries again now.
   */
  resubscribed(): void {
    for (const [number, settle] of this.#markers) {
      this.#markers.delete(number);
      settle('resent');
    }
    for (const retry of [...this.#retries]) retry();
  }

  /** The store is closing: every sync gives up at once. */
  release(): void {
    for (const [number, settle] of this.#markers) {
      this.#markers.delete(number);
      settle('timeout');
    }
    for (const retry of [...this.#retries]) retry();
  }

  async #marker(deadline: number): Promise<MarkerOutcome> {
    const { ctx } = this.#o;
    const { link, liveness } = ctx;
    if (!link || !liveness || ctx.closing) return 'timeout';
    const n = ++this.#markerCount;
    const outcome = new Promise<MarkerOutcome>((resolve) => this.#markers.set(n, resolve));
    const timer = setTimeout(() => this.#settle(n, 'timeout'), Math.max(0, deadline - performance.now()));
    timer.unref?.();
    try {
      const channel = ctx.names.nodeChannel(liveness.id);
      const receivers = Number(await link.command(channel, ['PUBLISH', channel, `${BARRIER}${n}`]));
      // On a Redis Cluster, PUBLISH counts only the subscribers of the
      // primary it ran on, which need not hold this node's subscription:
      // there only the marker's return tells.
      if (receivers === 0 && link.mode === 'single') this.#settle(n, 'lost');
    } catch {
      this.#settle(n, 'lost');
    }
    const result = await outcome;
    clearTimeout(timer);
    return result;
  }

  /**
   * Ends marker `n` alone: a marker that was not sent or not heard says
   * nothing of the markers before it, which may still come back.
   */
  #settle(n: number, outcome: MarkerOutcome): void {
    const settle = this.#markers.get(n);
    if (!settle) return;
    this.#markers.delete(n);
    settle(outcome);
  }

  /** Waits until the pub/sub connection is back or `RETRY_MS` passed; false once the deadline or a close came. */
  #retryPause(deadline: number): Promise<boolean> {
    const left = deadline - performance.now();
    if (left <= 0 || this.#o.ctx.closing) return Promise.resolve(false);
    return new Promise((resolve) => {
      const retry = () => {
        clearTimeout(timer);
        this.#retries.delete(retry);
        resolve(!this.#o.ctx.closing && performance.now() < deadline);
      };
      const timer = setTimeout(retry, Math.min(RETRY_MS, left));
      timer.unref?.();
      this.#retries.add(retry);
    });
  }

  /** Resolves as `promise` does, or at the deadline. */
  async #within(promise: Promise<void>, deadline: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - performance.now()));
      timer.unref?.();
    });
    await Promise.race([promise.catch(() => {}), late]);
    clearTimeout(timer);
  }
}
