/**
 * Where fencing tokens come from: one counter for the whole store, so every
 * token is greater than every token issued before it, for any key.
 *
 * A memory store forgets everything when its process ends, yet tokens must
 * keep rising across a restart, or a holder from before the restart could
 * present a token larger than its successor's. Instead of persisting a
 * high-water mark, the counter is seeded from the clock: each grant takes
 * `max(last + 1, now * 1000)`. A restarted process therefore starts above
 * every token of the previous one as long as (a) the clock has not gone back
 * and (b) the previous process issued, on average, fewer than 1000 tokens per
 * millisecond of its life (each burst above that borrows from the future and
 * is repaid as soon as the rate drops). `now * 1000` stays a safe integer
 * until the year 2255.
 */
export interface TokenSource {
  /** The next token, strictly greater than every earlier one from this source. */
  next(now: number): number;
}

/** Tokens per millisecond of clock the seed reserves. */
const TOKENS_PER_MS = 1000;

/**
 * Creates the store's token counter. `seed` replaces the clock seeding: the
 * first token is `seed()` and each next one is one more (tests use it for
 * small, predictable tokens).
 */
export function createTokenSource(seed?: () => number): TokenSource {
  if (seed) {
    let last = seed() - 1;
    return { next: () => ++last };
  }
  let last = 0;
  return {
    next(now) {
      last = Math.max(last + 1, Math.floor(now) * TOKENS_PER_MS);
      return last;
    },
  };
}
