import { ErrorCode, type ClientMessage, type WireError } from '@lockwire/protocol';
import type { Clock } from './clock.js';
import { RATE_ABUSE_MIN_FRAMES, RATE_ABUSE_MS, type ServerLimits } from './limits.js';
import { allowsEverything, maySee, refusal, type Permissions } from './permissions.js';
import type { LockEvent } from './store.js';
import { RateLimiter, type RateVerdict } from './rate-limit.js';

/** A session's unanswered requests, as `maxPendingPerSession` counts them. */
export interface PendingCounts {
  /** Requests unanswered now: in flight, queued acquires, pending waits. */
  readonly size: number;
  /** Of those, the acquires waiting in a queue. */
  readonly waitingCount: number;
}

/**
 * What one session may send: its message rate, its credentials'
 * permissions, and its per-session limits. The session asks before it
 * processes a frame; a refused frame changes nothing.
 */
export class SessionGuard {
  readonly #rate: RateLimiter;
  /** Set when the permissions allow everything: no request is `forbidden` and every event may be seen. */
  readonly #everything: boolean;

  constructor(
    readonly permissions: Permissions,
    private readonly limits: ServerLimits,
    clock: Clock,
  ) {
    this.#everything = allowsEverything(permissions);
    this.#rate = new RateLimiter(
      {
        rate: limits.rateLimit,
        burst: limits.rateBurst,
        abuseAfterMs: RATE_ABUSE_MS,
        abuseAfterFrames: Math.max(limits.rateBurst, RATE_ABUSE_MIN_FRAMES),
      },
      clock,
    );
  }

  /** Takes one frame from the rate budget: `refuse` answers `rate_limited`, `abuse` closes 1008. */
  frame(): RateVerdict {
    return this.#rate.take();
  }

  /**
   * The error a decoded request is refused with, or null to process it:
   * `forbidden` outside the permissions (a `release` of a key in `held`
   * always passes: giving a lock up is never forbidden), `rate_limited`
   * while `maxPendingPerSession` requests are unanswered apart from the
   * acquires waiting in a queue (a `cancel` always passes: it is how a
   * client gets below the limit), `bad_request` for a new watch past
   * `maxWatchesPerSession`.
   */
  check(
    message: ClientMessage,
    pending: PendingCounts,
    watches: ReadonlyMap<string, unknown>,
    held: ReadonlySet<string>,
  ): WireError | null {
    const forbidden = this.#everything ? null : refusal(this.permissions, message, held);
    if (forbidden) return forbidden;
    if (message.op !== 'cancel' && this.pendingFull(pending)) {
      return {
        code: ErrorCode.RateLimited,
        message: `this session already has ${this.limits.maxPendingPerSession} requests pending (maxPendingPerSession)`,
      };
    }
    if (
      message.op === 'watch' &&
      !watches.has(message.prefix ?? '') &&
      watches.size >= this.limits.maxWatchesPerSession
    ) {
      return {
        code: ErrorCode.BadRequest,
        message: `prefix: this session already watches ${this.limits.maxWatchesPerSession} prefixes (maxWatchesPerSession)`,
      };
    }
    return null;
  }

  /**
   * True when the session's unanswered requests, acquires waiting in a
   * queue aside, are at `maxPendingPerSession`. Those acquires are bounded
   * by `maxLocksPerSession` in the store, which answers one more with
   * `too_many_locks`; counted here too, a session waiting for as many keys
   * as the pending limit would be refused everything but `cancel`.
   */
  private pendingFull(pending: PendingCounts): boolean {
    const limit = this.limits.maxPendingPerSession;
    return pending.size - pending.waitingCount >= limit;
  }

  /** True when this session may see `event` (a watch's events are filtered to the `watch` patterns). */
  maySee(event: LockEvent): boolean {
    return this.#everything || maySee(this.permissions, event);
  }
}
