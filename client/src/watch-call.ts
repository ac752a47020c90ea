/**
 * How `LockClient` watches a prefix and stops watching it: a watch is
 * registered before it is sent, and the server's watch of a prefix no watch
 * uses any more is ended with an unwatch, asked again while the server
 * refuses it.
 */
import type { Limits } from '@lockwire/protocol';
import type { ConnectionKeeper } from './connection-keeper.js';
import { ClientErrorCode, LockError } from './errors.js';
import type { WatchOptions } from './options.js';
import { RefusalRetries } from './refusal-retry.js';
import { Watch, type LockEvent, type WatchRegistry, type WatchSubscription } from './watch.js';

/** What a watch needs from its client. */
export interface WatchHost {
  /** The connection, its reconnects and the client's state. */
  readonly keeper: ConnectionKeeper;
  /** The client's watches, by prefix: an event goes to each watch of its prefix. */
  readonly watches: WatchRegistry;
  /** The server's announced limits (their `rateLimit` paces a refused unwatch asked again). */
  limits(): Limits;
}

/** The watches of one client; see `LockClient.watch()` for what the caller sees. */
export class WatchCalls {
  readonly #host: WatchHost;
  /** Unwatches of prefixes no watch uses any more, asked again while refused. */
  readonly #unwatches: RefusalRetries;

  constructor(host: WatchHost) {
    this.#host = host;
    this.#unwatches = new RefusalRetries(() => host.limits());
  }

  /**
   * `watch()`: registers the watch before it is sent, so no event the server
   * pushes after its snapshot is missed, and resolves with a {@link Watch}
   * once the server answered with that snapshot. Closing the watch ends the
   * server's watch of the prefix when no other watch uses it.
   *
   * @throws LockError `connection_lost` or `connection_closed` when the
   * client is not connected, or the watch's own error (the server's refusal,
   * the connection ending before the reply); an unwatch that refusal leaves
   * to send (nobody uses the prefix any more) goes on in the background.
   */
  async watch(prefix: string, onEvent: (event: LockEvent) => void, options: WatchOptions): Promise<Watch> {
    const connection = this.#host.keeper.live();
    // Before the watch is sent: an unwatch of this prefix still being asked again would end the new watch.
    this.#unwatches.stop(prefix);
    const subscription: WatchSubscription = {
      prefix,
      limit: options.limit,
      onEvent,
      onResync: options.onResync,
      live: false,
      snapshot: { locks: [], truncated: false },
      controller: new AbortController(),
    };
    this.#host.watches.add(subscription);
    try {
      await connection.request(
        'watch',
        { prefix, limit: options.limit },
        {
          onResult: (result) => {
            subscription.snapshot = result;
            subscription.live = true;
          },
        },
      ).result;
      return new Watch(subscription, () => this.#unwatch(subscription));
    } catch (error) {
      // The other watches of the prefix closed while this one was in flight, leaving the server watch to it:
      // nobody uses it now. The caller needs the watch's own error; a refused unwatch goes on in the background.
      if (this.#host.watches.remove(subscription)) await this.#sendUnwatch(prefix);
      throw error;
    }
  }

  async #unwatch(subscription: WatchSubscription): Promise<void> {
    subscription.controller.abort(new LockError(ClientErrorCode.ConnectionClosed, 'watch closed'));
    if (this.#host.watches.remove(subscription)) await this.#sendUnwatch(subscription.prefix);
  }

  /**
   * Stops the server's watch of `prefix`; a connection that is gone took it
   * along. Resolves once the first unwatch was answered, never rejects.
   * While the server refuses it (`rate_limited`, `store_unavailable`, ...)
   * it is asked again with backoff: the server would otherwise go on
   * streaming the prefix's events (which no callback gets: the registry no
   * longer lists the prefix) and count the watch against
   * `maxWatchesPerSession`. Asking again stops once the prefix is watched
   * again (`watch()` stops it before it sends its own request, so no later
   * unwatch can end the new watch) or the connection closes.
   */
  async #sendUnwatch(prefix: string): Promise<void> {
    const connection = this.#host.keeper.connection;
    if (!connection?.isOpen) return;
    await this.#unwatches.run(prefix, connection, (live) =>
      live.request('unwatch', { prefix }, { onResult: () => undefined }).result,
    );
  }
}
