import type { Logger } from './logger.js';
import type { LockMetrics } from './metrics.js';
import type { LockStore, SessionId } from './store.js';

/** What ending a session in the store needs from the server. */
export interface SessionEndHost {
  readonly store: LockStore;
  readonly metrics: LockMetrics;
  readonly logger: Logger;
}

/**
 * Ends `session` in the store: its queued requests leave their queues, then
 * its locks are released. Each of `keys` (the locks it held) is a hold
 * ending, so the handoff to the waiter it makes room for is recorded once
 * the store is done. `started` is a `closeSession` of the session already in
 * progress (credentials expiry revokes the locks), waited on instead of a
 * second one.
 *
 * The one way a session ends in the store, with a connection (`Session.end`)
 * or without one (its grace over, or claimed by a resume while the server
 * closes). Never rejects: a store failure is logged.
 */
export function endSessionInStore(
  host: SessionEndHost,
  session: SessionId,
  keys: Iterable<string>,
  started?: Promise<void>,
): Promise<void> {
  const handoffs = [...keys].map((key) => host.metrics.holdEnding(key));
  return (started ?? host.store.closeSession(session))
    .catch((error: unknown) => {
      host.logger.error({ err: error, session }, 'store failed to close the session');
    })
    .finally(() => {
      for (const done of handoffs) done();
    });
}
