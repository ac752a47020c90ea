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

/** A refusal this long or longer after the last starts a new streak of limiting. */
const STREAK_GAP_MS = 1000;

/**
 * A token bucket per session: each frame takes one token, tokens refill at
 * `rate` per second up to `burst`. A frame without a token is refused (and
 * answered `rate_limited`). Refusals less than a second apart form a
 * streak, which frames let through in between do not end: a sender whose
 * streak lasts `abuseAfterMs`, or reaches `abuseAfterFrames` refusals, is
 * `abuse` (closed 1008). A short burst over the limit is only refused.
 * Time comes from the injected clock's monotonic reading: a step of the wall
 * clock neither refills the bucket nor puts off an abuse verdict.
 */
export class RateLimiter {
  #tokens: number;
  #refilledAt: number;
  #streak: { start: number; last: number; refused: number } | null = null;

  constructor(
    private readonly options: RateLimitOptions,
    private readonly clock: Clock,
  ) {
    this.#tokens = options.burst;
    this.#refilledAt = clock.monotonic();
  }

  /** Takes a token for one frame. */
  take(): RateVerdict {
    const now = this.clock.monotonic();
    const elapsed = Math.max(0, now - this.#refilledAt);
    this.#tokens = Math.min(this.options.burst, this.#tokens + (elapsed * this.options.rate) / 1000);
    this.#refilledAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 'accept';
    }
    if (!this.#streak || now - this.#streak.last >= STREAK_GAP_MS) this.#streak = { start: now, last: now, refused: 0 };
    const streak = this.#streak;
    streak.last = now;
    streak.refused++;
    const abusive = streak.refused >= this.options.abuseAfterFrames || now - streak.start >= this.options.abuseAfterMs;
    return abusive ? 'abuse' : 'refuse';
  }
}
