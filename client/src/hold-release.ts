import { MAX_DURATION_MS, type Limits } from '@lockwire/protocol';
import type { Lease } from './lease.js';
import { pause } from './reconnect.js';
import { retryRefused } from './refusal-retry.js';

/**
 * Releases a hold nobody stands for any more (a Web Lock whose callbacks
 * are done, a grant that came after its caller gave up), so that it never
 * outlives its use while the session lasts. While the server refuses the
 * release (`rate_limited`, `store_unavailable`, ...) it asks again, waiting
 * longer each time (doubling, at most 10 s; after `rate_limited` first the
 * time the server's announced `rateLimit` takes to allow one more frame),
 * until the release is accepted or the lease is lost (expired, stolen,
 * revoked, or its connection gone: the server let go of it then).
 *
 * Resolves once the first release was answered: with the server's refusal
 * as `{ error }` (the release then goes on in the background), or
 * `undefined` when the hold is gone. `onGone` runs once the hold is gone
 * (before the returned promise resolves when the first release took it).
 * Never rejects.
 */
export function releaseHold(
  lease: Lease,
  limits: Limits,
  onGone: () => void = () => undefined,
): Promise<{ error: unknown } | undefined> {
  return retryRefused({
    send: () => lease.release(),
    over: () => !lease.held,
    final: () => !lease.held,
    // A loss aborts the lease's signal, which ends the wait early: nothing is left to release then.
    signal: lease.signal,
    limits: () => limits,
    ended: onGone,
  });
}

/**
 * {@link releaseHold}, resolving only once the hold is gone: the release
 * was accepted (also after refusals), or the lease was lost (its
 * connection gone included). Never rejects.
 */
export function releaseHoldUntilGone(lease: Lease, limits: Limits): Promise<void> {
  return new Promise<void>((gone) => void releaseHold(lease, limits, gone));
}

/** How a wait for the holds of a key let go of in the background ended (see {@link waitForLetGo}). */
export type LetGoOutcome =
  /** The holds are gone, `left` ms of the timeout remain (one that was not timed: as given). */
  | { ended: 'gone'; left: number | null | undefined }
  /** The connection ended first. */
  | { ended: 'closed'; left: number | null | undefined }
  /** The timeout ran out first. */
  | { ended: 'timeout' };

/**
 * Waits for `settled` ({@link HoldReleases.pending} of a key, which never
 * rejects), for the connection's end (`closed` aborts), or for `timeout` ms
 * to run out (`null`/absent, or not a positive duration the server could
 * accept: as long as it takes), whichever comes first; with what is left of
 * `timeout` then (none left: `timeout`, also when the holds went or the
 * connection ended after the time ran out, before the timer fired). Rejects with `signal.reason` if `signal` aborts first.
 * The timer is the client's `pause`, ended with the wait.
 */
export function waitForLetGo(
  settled: Promise<void>,
  options: { timeout?: number | null | undefined; signal?: AbortSignal | undefined; closed: AbortSignal },
): Promise<LetGoOutcome> {
  const { timeout, signal, closed } = options;
  const timed = typeof timeout === 'number' && timeout > 0 && timeout <= MAX_DURATION_MS;
  const started = performance.now();
  const timer = new AbortController();
  return new Promise<LetGoOutcome>((resolve, reject) => {
    let done = false;
    const end = (): boolean => {
      if (done) return false;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      closed.removeEventListener('abort', onClosed);
      timer.abort();
      return true;
    };
    // What is left; none (the time ran out before the timer's callback ran): the wait timed out.
    const after = (ended: 'gone' | 'closed'): LetGoOutcome => {
      if (!timed) return { ended, left: timeout };
      const left = Math.ceil(timeout - (performance.now() - started));
      return left > 0 ? { ended, left } : { ended: 'timeout' };
    };
    const onAbort = () => {
      if (end()) reject(signal?.reason);
    };
    const onClosed = () => {
      if (end()) resolve(after('closed'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    closed.addEventListener('abort', onClosed, { once: true });
    if (closed.aborted) onClosed();
    void settled.then(() => {
      if (end()) resolve(after('gone'));
    });
    if (timed) {
      void pause(timeout, timer.signal).then(() => {
        if (end()) resolve({ ended: 'timeout' });
      });
    }
  });
}

/**
 * The holds this client lets go of in the background, by key: a release
 * asked again while the server refuses it, and the fate of an acquire given
 * up before the server answered it. Until such a hold is gone the session
 * still holds the key, so an acquire of the key sent meanwhile would be
 * answered with that very hold (the same token, the lease the client
 * already has), which the release asked again then drops: the new holder
 * would believe it holds a lock the server released. `LockClient` sends a
 * new acquire of a key only once {@link pending} resolved.
 */
export class HoldReleases {
  readonly #going = new Map<string, Set<Promise<void>>>();
  readonly #limits: () => Limits;

  /** `limits`: the server's announced limits (their `rateLimit` paces a refused release). */
  constructor(limits: () => Limits) {
    this.#limits = limits;
  }

  /**
   * {@link releaseHold}, with the key recorded from now until the hold is
   * gone (also an acquire made while the first release is out waits for
   * its answer: refused, it leaves the hold). The key is no longer recorded
   * by the time `onGone` runs, so an acquire it starts is sent at once.
   */
  release(lease: Lease, onGone: () => void = () => undefined): Promise<{ error: unknown } | undefined> {
    let gone: () => void = () => undefined;
    const hold = new Promise<void>((resolve) => {
      gone = resolve;
    });
    this.#add(lease.key, hold);
    return releaseHold(lease, this.#limits(), () => {
      this.#remove(lease.key, hold);
      gone();
      onGone();
    });
  }

  /** Records a hold of `key` let go of elsewhere, until `settled` resolves (it must never reject). */
  track(key: string, settled: Promise<void>): void {
    this.#add(key, settled);
    void settled.then(() => this.#remove(key, settled));
  }

  /** Resolves once every hold of `key` let go of now is gone; `undefined` when none is. Never rejects. */
  pending(key: string): Promise<void> | undefined {
    const going = this.#going.get(key);
    return going ? Promise.all(going).then(() => undefined) : undefined;
  }

  #add(key: string, hold: Promise<void>): void {
    const going = this.#going.get(key) ?? new Set<Promise<void>>();
    going.add(hold);
    this.#going.set(key, going);
  }

  #remove(key: string, hold: Promise<void>): void {
    const going = this.#going.get(key);
    if (!going?.delete(hold)) return;
    if (going.size === 0) this.#going.delete(key);
  }
}
