import { DEFAULT_LIMITS } from '@lockwire/protocol';
import type { LockStore } from './store.js';

/** The limits a server enforces and announces in `welcome.limits`. */
export interface ServerLimits {
  /** Largest frame in bytes; a larger one closes the connection with 1009. Default 64 KiB. */
  maxPayload: number;
  /** Longest key or prefix in UTF-16 code units. Default 256. */
  maxKeyLength: number;
  /** Keys a session may hold or wait for at once (`too_many_locks`). Default 1000. */
  maxLocksPerSession: number;
  /** Waiters one key's queue may hold (`too_many_waiters`). Default 10,000. */
  maxWaitersPerKey: number;
  /** Prefixes a session may watch at once; one more `watch` is `bad_request`. Default 100. */
  maxWatchesPerSession: number;
  /**
   * Requests of a session unanswered at once: pending waits and requests in
   * flight; acquires waiting in a queue are not counted (`maxLocksPerSession`
   * bounds them). One more is `rate_limited` (a `cancel` is always
   * accepted). Default 1000.
   */
  maxPendingPerSession: number;
  /** Open connections; further upgrades are refused with 503. Default 10,000. */
  maxConnections: number;
  /** Bytes queued for one connection that its reader has not taken; past it the connection is cut. Default 4 MiB. */
  maxBufferedBytes: number;
  /** Frames per second a session may send on average (token bucket refill). Default 1000. */
  rateLimit: number;
  /**
   * Frames a session may send at once after a quiet spell (token bucket
   * size). A streak of this many refused frames, but never fewer than
   * `RATE_ABUSE_MIN_FRAMES`, closes the connection with 1008. Default 2000.
   */
  rateBurst: number;
}

/** Every limit's default. */
export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = {
  ...DEFAULT_LIMITS,
  maxWatchesPerSession: 100,
  maxPendingPerSession: 1000,
  maxConnections: 10_000,
  maxBufferedBytes: 4 * 1024 * 1024,
  rateLimit: 1000,
  rateBurst: 2000,
};

/**
 * A streak of rate limiting (refusals less than a second apart, whether or
 * not frames get through in between) this long is abuse: closed with 1008.
 */
export const RATE_ABUSE_MS = 3000;

/**
 * The fewest refusals in one streak that are abuse, whatever `rateBurst`:
 * with a small bucket, a sender that is one frame over the rate is refused
 * that frame, not closed.
 */
export const RATE_ABUSE_MIN_FRAMES = 100;

/** Fills in defaults and checks every limit is a positive integer (`RangeError` naming the bad one). */
export function resolveLimits(given: Partial<ServerLimits> = {}): ServerLimits {
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS };
  for (const [name, value] of Object.entries(given)) {
    if (value === undefined) continue;
    if (!(name in limits)) throw new RangeError(`limits.${name} is not a limit`);
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`limits.${name} must be a positive integer, got ${String(value)}`);
    }
    limits[name as keyof ServerLimits] = value;
  }
  return limits;
}

/**
 * The limits a server enforces and announces with `store`: the store's own
 * `maxLocksPerSession` and `maxWaitersPerKey`, since it is the store that
 * refuses past them. Throws a `RangeError` when `given` sets either to
 * another value than the store enforces: a server must not announce a
 * limit nothing enforces.
 */
export function limitsWithStore(limits: ServerLimits, given: Partial<ServerLimits>, store: LockStore): ServerLimits {
  for (const name of ['maxLocksPerSession', 'maxWaitersPerKey'] as const) {
    const value = given[name];
    if (value !== undefined && value !== store.limits[name]) {
      throw new RangeError(
        `limits.${name} is ${value}, but the ${store.kind} store passed as \`store\` enforces ${store.limits[name]}: ` +
          `set it in that store's own limits option, and here to the same value or not at all`,
      );
    }
  }
  return { ...limits, maxLocksPerSession: store.limits.maxLocksPerSession, maxWaitersPerKey: store.limits.maxWaitersPerKey };
}
