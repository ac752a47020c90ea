import { ErrorCode, type Limits } from '@lockwire/protocol';
import { LockError } from './errors.js';
import type { Lease } from './lease.js';
import { pause } from './reconnect.js';

/** The first wait after a refusal other than `rate_limited`, in ms; it doubles per refusal. */
const FIRST_RETRY_MS = 100;
/** The longest wait between two releases of one hold, in ms. */
const MAX_RETRY_MS = 10_000;

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
  return new Promise((answered) => {
    const run = async () => {
      for (let refusals = 1; ; refusals += 1) {
        const refusal = await lease.release().then(
          () => undefined,
          (error: unknown) => ({ error }),
        );
        if (!refusal || !lease.held) return;
        answered(refusal);
        // A loss aborts the lease's signal, which ends the wait early: nothing is left to release then.
        await pause(retryDelay(refusal.error, refusals, limits), lease.signal);
        if (!lease.held) return;
      }
    };
    void run().finally(() => {
      try {
        onGone();
      } finally {
        answered(undefined);
      }
    });
  });
}

/** The wait before asking again after the `refusals`-th refusal (1-based). */
export function retryDelay(error: unknown, refusals: number, limits: Limits): number {
  const rateLimited = error instanceof LockError && error.code === ErrorCode.RateLimited;
  const first = rateLimited ? frameInterval(limits) : FIRST_RETRY_MS;
  return Math.min(MAX_RETRY_MS, first * 2 ** (refusals - 1));
}

/** The time one frame's worth of the server's rate budget takes to refill, from the announced `rateLimit`. */
function frameInterval(limits: Limits): number {
  const rate: unknown = limits.rateLimit;
  return typeof rate === 'number' && rate > 0 ? Math.min(MAX_RETRY_MS, 1000 / rate) : FIRST_RETRY_MS;
}
