import type { Limits } from '@lockwire/protocol';
import type { Lease } from './lease.js';
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
