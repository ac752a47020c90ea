import type { Clock } from './clock.js';

export interface RateLimitOptions {
  /** Frames per second refilled. */
  rate: number;
  /** Bucket size: frames that may arrive at once after a quiet spell. */
  burst: number;
  /** Limited this long without a single accepted frame: the sender is abusive. */
  abuseAfterMs: number;
  /** Or this many frames refused in a row: the sender is abusive. */
  abuseAfterFrames: number;
}

/** What the limiter says about one incoming frame. */
export type RateVerdict = 'accept' | 'refuse' | 'abuse';

/**
 * A token bucket per session: each frame takes one token, tokens refill at
 * `rate` per second up to `burst`. A frame without a token is refused (and
 * answered `rate_limited`); a sender refused `abuseAfterFrames` times in a
 * row, or for `abuseAfterMs` without a frame getting through, is `abuse`
 * (closed 1008). Time comes from the injected clock.
 */
export class RateLimiter {
  #tokens: number;
  #refilledAt: number;
  #refusedInARow = 0;
  #refusingSince: number | null = null;

  constructor(
    private readonly options: RateLimitOptions,
    private readonly clock: Clock,
  ) {
    this.#tokens = options.burst;
    this.#refilledAt = clock.now();
  }

  /** Takes a token for one frame. */
  take(): RateVerdict {
    const now = this.clock.now();
    const elapsed = Math.max(0, now - this.#refilledAt);
    this.#tokens = Math.min(this.options.burst, this.#tokens + (elapsed * this.options.rate) / 1000);
    this.#refilledAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      this.#refusedInARow = 0;
      this.#refusingSince = null;
      return 'accept';
    }
    this.#refusedInARow++;
    this.#refusingSince ??= now;
    const abusive =
      this.#refusedInARow >= this.options.abuseAfterFrames || now - this.#refusingSince >= this.options.abuseAfterMs;
    return abusive ? 'abuse' : 'refuse';
  }
}
