import { ErrorCode, type Limits, type WelcomeMessage } from '@lockwire/protocol';
import type { Connection } from './connection.js';
import { isConnectionError, LockError, type CloseInfo } from './errors.js';
import type { LeaseBook } from './lease-book.js';
import { keptHolds } from './reconnect.js';
import { isFinal, retryRefused, type RefusalRetries } from './refusal-retry.js';
import type { WatchRegistry } from './watch.js';

/** What a new connection settles of the leases after a drop (see `settleLeases`). */
export interface LeaseSettling {
  /** The new connection, open. */
  connection: Connection;
  /** Its welcome. */
  welcome: WelcomeMessage;
  /** The welcome of the connection that dropped. */
  previous: WelcomeMessage;
  /** The welcome resumed the dropped session. */
  resumed: boolean;
  leases: LeaseBook;
  /** The releases of kept holds that no lease stands for, asked again while refused. */
  keptReleases: RefusalRetries;
  /** The close of the last drop, read when the leases are reconciled. */
  lastClose(): CloseInfo | undefined;
  /** The server's announced limits, read at each wait after a refusal. */
  limits(): Limits;
  /** The client's connection now (`undefined` while down): a later resume settles its own leases. */
  current(): Connection | undefined;
}

/**
 * A new connection is open: keeps the leases a resume gave back, loses the
 * rest (each with its reason, see `awaitLossReasons`), and releases the
 * holds the server kept that no lease stands for. A lease's abort listener
 * may close the client meanwhile: the caller checks before it goes on.
 */
export function settleLeases(settling: LeaseSettling): void {
  const { connection, welcome, previous, resumed, leases } = settling;
  const kept = keptHolds(welcome, previous.session);
  // Holds the server kept that no lease stands for (released while offline, or granted in a lost reply) are
  // released before any lease is lost: a Web Lock that such a loss wakes asks for the key again at once, and
  // a release (which names only the key) sent after that acquire would drop the new hold. A refused release
  // is asked again with backoff (else the key stays locked for the session's life), but only until the client
  // acquires the key again (`ConnectionKeeper.claim`) or this connection ends: a drop with a resume reports in
  // `held` what is still kept, and the next resume starts over from that.
  for (const key of leases.orphans(kept)) {
    void settling.keptReleases.run(key, connection, releaseKey(key), isNotHolder);
  }
  if (leases.reconcile(kept, settling.lastClose(), resumed) > 0) awaitLossReasons(settling);
  else if (resumed) confirmWelcome(connection);
}

/**
 * Sends a ping on a resumed connection that would otherwise send nothing
 * yet. The server cannot tell a welcome its client read from one lost on
 * the way, so the secret a resume presented keeps working beside the new
 * welcome's until the client sends on that connection: this frame spends it
 * at once. Its answer, or a refusal, tells nothing more.
 */
function confirmWelcome(connection: Connection): void {
  connection.request('ping', {}, { onResult: () => undefined }).result.catch(() => undefined);
}

/**
 * Watches every prefix of `watches` again on the new `connection`; each
 * snapshot resyncs its watch. A watch the server refuses fails; one cut by
 * another drop is watched again by the next reconnect.
 */
export function watchAgain(connection: Connection, watches: WatchRegistry): void {
  for (const [prefix, limit] of watches.prefixes()) {
    connection
      .request('watch', { prefix, limit }, { onResult: (snapshot) => watches.resync(prefix, snapshot) })
      .result.catch((error: unknown) => {
        // Dropped again: the next reconnect watches it again.
        if (!isConnectionError(error)) watches.fail(prefix, error);
      });
  }
}

/**
 * A resume did not give back some leases. The server sends a `lost`, with
 * its reason, for each lock the session lost while it had no connection,
 * and every such `lost` comes before its answer to a ping (a ping is a
 * barrier for `lost`): once the pong is in, the leases no `lost` named are
 * lost with `connection_lost` (also when the connection ends first).
 *
 * A refused ping is no barrier: the server refuses at intake
 * (`rate_limited`), before it waited for what the session is owed, so a
 * `lost` may still follow. It is asked again with the backoff of
 * {@link retryRefused} for as long as the connection lives. Only a refusal
 * that asking again cannot change (`bad_request`, `forbidden`,
 * `unauthorized`) ends the
 * wait early: no barrier will come on this connection.
 */
function awaitLossReasons(settling: LeaseSettling): void {
  const { connection, leases } = settling;
  const close = settling.lastClose();
  const signal = connection.closedSignal;
  void retryRefused({
    send: () => connection.request('ping', {}, { onResult: () => undefined }).result,
    over: () => signal.aborted,
    final: (error) => isConnectionError(error) || isFinal(error),
    signal,
    limits: () => settling.limits(),
    ended: () => {
      // A later resume (on another connection) has settled these already and waits for its own.
      const current = settling.current();
      if (current === undefined || current === connection) leases.settleUnconfirmed(close);
    },
  });
}

/** Sends `release` of `key`: the request a kept hold's retry repeats. */
function releaseKey(key: string): (connection: Connection) => Promise<void> {
  return (connection) => connection.request('release', { key }, { onResult: () => undefined }).result;
}

/** `not_holder`: the hold is gone already (expired, revoked), so there is nothing left to release. */
function isNotHolder(error: unknown): boolean {
  return error instanceof LockError && error.code === ErrorCode.NotHolder;
}
