import { performance } from 'node:perf_hooks';
import type { StoreContext } from './store-context.js';

/** Start of a barrier a node publishes to its own channel (`sync` then its number). */
export const BARRIER = 'sync ';

/** ms between rounds of retries of markers that found no subscriber, unless the subscriber is back sooner. */
const RETRY_MS = 100;

/**
 * How one marker ended: it came back; it could not be sent or no subscriber
 * heard it; it was out when the pub/sub connection came back after a break
 * (it may have gone to the broken one); or the wait ran out.
 */
type MarkerOutcome = 'back' | 'lost' | 'resent' | 'timeout';

/** One marker, shared by every sync that asked for one in the turn it was formed. */
interface Marker {
  readonly n: number;
  readonly outcome: Promise<MarkerOutcome>;
  readonly settle: (outcome: MarkerOutcome) => void;
  readonly formedAt: number;
  /** Copies published: one, or on a Redis Cluster one per primary. */
  copies: number;
  /** Copies that came back. */
  back: number;
}

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
 *
 * On a Redis Cluster each primary sends the notes of its own keys' steps to
 * this node's subscription over a path of its own (the cluster bus to the
 * node the subscription is on, in the order it ran them), and a marker
 * published on one primary says nothing of another's notes. There a copy
 * of the marker goes to every primary, and the marker is back once every
 * copy is (it alone: its copies say nothing of another marker's).
 */
export class SyncBarrier {
  readonly #o: SyncBarrierOptions;
  /** Markers published (or about to be) that have not come back, by number. */
  readonly #markers = new Map<number, Marker>();
  #markerCount = 0;
  /**
   * The marker being formed in this turn. It is published at the end of the
   * turn, after every sync that joined it began, so its return covers every
   * step Redis ran before any of them: syncs asked for in one turn (the pings
   * of one poll phase, or one round of retries) cost one PUBLISH.
   */
  #forming: Marker | null = null;
  /** Syncs waiting to retry; one timer wakes them all together, or the connection coming back. */
  readonly #retries = new Set<() => void>();
  #retryTimer: ReturnType<typeof setTimeout> | null = null;

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
   * `matters` accepts; a note held for an answer in flight. Every step is
   * bounded by one deadline, the timeout after the call; at the deadline,
   * and when the store closes, the sync gives up.
   */
  async sync(matters: (key: string) => boolean): Promise<void> {
    const deadline = performance.now() + this.#o.timeout;
    for (;;) {
      const outcome = await this.#marker(deadline);
      if (outcome === 'back') break;
      if (outcome === 'timeout') return;
      if (outcome === 'lost' && !(await this.#retryPause(deadline))) return;
    }
    await within(this.#o.settled(), deadline, undefined);
    const { sequencer } = this.#o.ctx;
    if (sequencer) await within(sequencer.heard(matters), deadline, undefined);
    // Notes held for a request's answer go out right after it, in a `setImmediate` (see `NoteSettler#sent`).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /**
   * Marker `n` came back: so did every earlier one (a subscriber gets
   * messages in order). Markers pass after the promise jobs of the read that
   * brought this one: a marker can arrive in the same read as the replies of
   * the subscriber's resubscription, and the connection is reported back
   * (`resubscribed`, which starts the reconciliation of what the break
   * missed) in those jobs; the marker waits for that reconciliation too.
   */
  pass(n: number): void {
    if (this.#o.ctx.link?.mode === 'cluster') {
      // Each copy tells only of its own primary: a marker is back once all its own copies are (a copy of
      // one already given up on tells nothing).
      const marker = this.#markers.get(n);
      if (marker === undefined || ++marker.back < marker.copies) return;
      setImmediate(() => this.#settle(marker, 'back'));
      return;
    }
    setImmediate(() => {
      for (const [number, marker] of this.#markers) {
        if (number <= n) this.#settle(marker, 'back');
      }
    });
  }

  /**
   * This node's pub/sub connection is back after a break: markers still out
   * may have gone to the broken connection and never come back, so every
   * sync waiting on one, or waiting to retry, tries again now.
   */
  resubscribed(): void {
    for (const marker of this.#markers.values()) {
      if (marker !== this.#forming) this.#settle(marker, 'resent');
    }
    this.#wakeRetries();
  }

  /** The store is closing: every sync gives up at once. */
  release(): void {
    for (const marker of this.#markers.values()) this.#settle(marker, 'timeout');
    this.#wakeRetries();
  }

  /** The outcome of a marker published after this call, or `timeout` at the deadline. */
  #marker(deadline: number): Promise<MarkerOutcome> {
    const { link, liveness, closing } = this.#o.ctx;
    if (!link || !liveness || closing) return Promise.resolve('timeout');
    const marker = this.#forming ?? this.#form();
    return within(marker.outcome, deadline, 'timeout');
  }

  #form(): Marker {
    const now = performance.now();
    // A marker that never came back (a silent path) is forgotten once every
    // sync that joined it has given up.
    for (const marker of this.#markers.values()) {
      if (now - marker.formedAt > this.#o.timeout) this.#settle(marker, 'timeout');
    }
    let settle: (outcome: MarkerOutcome) => void = () => {};
    const outcome = new Promise<MarkerOutcome>((resolve) => (settle = resolve));
    const marker: Marker = { n: ++this.#markerCount, outcome, settle, formedAt: now, copies: 1, back: 0 };
    this.#markers.set(marker.n, marker);
    this.#forming = marker;
    setImmediate(() => {
      if (this.#forming === marker) this.#forming = null;
      this.#publish(marker);
    });
    return marker;
  }

  /**
   * Publishes a marker. Its outcome does not wait for the PUBLISH's reply
   * (that may take the whole command timeout): the reply only tells when
   * nobody can hear the marker.
   */
  #publish(marker: Marker): void {
    const { ctx } = this.#o;
    const { link, liveness } = ctx;
    if (!link || !liveness || ctx.closing) return this.#settle(marker, 'timeout');
    const channel = ctx.names.nodeChannel(liveness.id);
    const text = `${BARRIER}${marker.n}`;
    if (link.mode === 'cluster') {
      // PUBLISH counts only the subscribers of the primary it ran on: only the copies' return tells.
      link.shards().then(
        (shards) => {
          marker.copies = shards.length;
          return Promise.all(shards.map((shard) => shard.command(['PUBLISH', channel, text]))).then(
            () => {},
            () => this.#settle(marker, 'lost'),
          );
        },
        () => this.#settle(marker, 'lost'),
      );
      return;
    }
    Promise.resolve()
      .then(() => link.command(channel, ['PUBLISH', channel, text]))
      .then(
        (receivers) => {
          if (Number(receivers) === 0) this.#settle(marker, 'lost');
        },
        () => this.#settle(marker, 'lost'),
      );
  }

  /** Ends one marker alone: a marker that was not sent or not heard says nothing of earlier ones. */
  #settle(marker: Marker, outcome: MarkerOutcome): void {
    if (this.#markers.get(marker.n) !== marker) return;
    this.#markers.delete(marker.n);
    marker.settle(outcome);
  }

  /** Waits for the next round of retries or the connection's return; false at the deadline or a close. */
  #retryPause(deadline: number): Promise<boolean> {
    const left = deadline - performance.now();
    if (left <= 0 || this.#o.ctx.closing) return Promise.resolve(false);
    return new Promise((resolve) => {
      const retry = () => {
        clearTimeout(ownTimer);
        this.#retries.delete(retry);
        resolve(!this.#o.ctx.closing && performance.now() < deadline);
      };
      // The shared round comes after the deadline: this sync's own timer ends its wait then.
      const ownTimer = left < RETRY_MS ? setTimeout(retry, left) : undefined;
      ownTimer?.unref?.();
      this.#retries.add(retry);
      if (!this.#retryTimer) {
        this.#retryTimer = setTimeout(() => this.#wakeRetries(), RETRY_MS);
        this.#retryTimer.unref?.();
      }
    });
  }

  #wakeRetries(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    for (const retry of [...this.#retries]) retry();
  }
}

/** Resolves as `promise` does, or with `fallback` at the deadline (`performance.now()` ms). */
function within<T>(promise: Promise<T>, deadline: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), Math.max(0, deadline - performance.now()));
    timer.unref?.();
  });
  return Promise.race([promise.catch(() => fallback), late]).finally(() => clearTimeout(timer));
}
