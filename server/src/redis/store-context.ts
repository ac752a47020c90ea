import { ErrorCode } from '@lockwire/protocol';
import type { Clock } from '../clock.js';
import { LockError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { StoreLimits, StoreListener } from '../store.js';
import type { BatchSequencer } from './batch-sequencer.js';
import type { KeyNames } from './key-codec.js';
import type { NodeLiveness } from './node-liveness.js';
import type { RedisLink } from './redis-link.js';

/**
 * What the parts of one Redis store share: its settings, and what `start`
 * and `close` set. The parts read the connection from here on every use, so
 * a call before `start` fails as it always did (`store_unavailable`, "not
 * started") rather than on a missing part.
 */
export interface StoreContext {
  /** Clock of hold, acquire and wait timeouts. */
  readonly clock: Clock;
  readonly logger: Logger;
  readonly limits: StoreLimits;
  readonly names: KeyNames;
  /**
   * The namespace of the table's pub/sub channels (`names.channelPrefix()`:
   * the namespace, and the database when not 0); passed to every script,
   * which publishes under it. Keys are named by `names`.
   */
  readonly namespace: string;
  /** The connection to Redis; null until `start`. */
  link: RedisLink | null;
  /** This node's membership in the table; null until `start`. */
  liveness: NodeLiveness | null;
  /** Puts the batches of each key in Redis' order; null until `start`. */
  sequencer: BatchSequencer | null;
  /** Where grants, losses and settled requests go; null until `start`. */
  listener: StoreListener | null;
  /** Set once `close` began: retries stop and barriers pass. */
  closing: Promise<void> | null;
}

/** The node's liveness; throws `store_unavailable` before `start`. */
export function live(ctx: StoreContext): NodeLiveness {
  if (!ctx.liveness) throw new LockError(ErrorCode.StoreUnavailable, 'the Redis store is not started');
  return ctx.liveness;
}

/** Runs `fn` again in 100 ms (real time), unless the store is closing. */
export function retrySoon(ctx: StoreContext, fn: () => void): void {
  if (ctx.closing) return;
  const timer = setTimeout(fn, 100);
  timer.unref?.();
}
