import type { ListResult, LockMode, LostReason } from '@lockwire/protocol';
import type { CloseInfo } from './errors.js';
import type { KeepaliveOptions } from './keepalive.js';
import type { ReconnectOptions } from './reconnect.js';
import type { TransportFactory } from './transport.js';

/** Options of `LockClient.connect()`. */
export interface ConnectOptions {
  /** How to open the socket. Default: the runtime's WebSocket (`ws` under the Node entry). */
  transport?: TransportFactory;
  /** HTTP headers for the upgrade request, e.g. `Authorization`. Node only: browsers cannot set them. */
  headers?: Record<string, string>;
  /** Aborts connecting; `connect()` then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Reconnecting after the connection drops: on by default (with the
   * defaults of {@link ReconnectOptions}); `false` turns it off, so the
   * first drop closes the client. Only drops of an established connection
   * are retried: `connect()` itself rejects when the first connection fails.
   */
  reconnect?: ReconnectOptions | boolean;
  /**
   * Noticing a network path that went silent (half-open: nothing arrives,
   * nothing closes), which no socket event reports: after `interval` ms
   * (default 10000) with nothing from the server the client sends a `ping`,
   * and when nothing arrives within `timeout` ms (default 5000) of it, the
   * connection is taken for dead and handled as a drop (pending calls
   * reject with `connection_lost`, the leases end or wait for the resume,
   * and the client reconnects). A connect that gets no welcome within
   * `interval + timeout` fails too. On by default; `false` turns it off.
   *
   * @throws RangeError (from `connect()`) unless both are numbers of ms from
   * 1 to 2147483647.
   */
  keepalive?: KeepaliveOptions | boolean;
}

/**
 * Options of `acquire()`. Durations are milliseconds from 0 to 2147483647;
 * `null`/absent means no limit. Any other value (`NaN`, `Infinity`, a
 * negative number) rejects with `bad_request`, sending nothing.
 */
export interface AcquireOptions {
  /** `exclusive` (default) or `shared`. */
  mode?: LockMode;
  /** How long to wait in the queue; `0` tries once. Default: wait until granted. */
  acquireTimeout?: number | null;
  /** The lock expires this long after the grant (the lease's signal then aborts with `expired`). */
  holdTimeout?: number | null;
  /** Exclusive only: take the lock from its holders at once (they lose it as `stolen`). */
  steal?: boolean;
  /** A JSON object of at most 1024 bytes, shown to watchers and in `status`. */
  meta?: Record<string, unknown> | null;
  /**
   * Gives up while queued: sends `cancel` and rejects with `signal.reason` at once (a grant that raced the
   * cancel is released when it arrives). Ignored once granted.
   */
  signal?: AbortSignal;
  /** Called once, with the queue position (1 = next), if the request had to wait. */
  onQueued?: (position: number) => void;
}

/** Options of `watch()`. */
export interface WatchOptions {
  /** At most this many locked keys in the snapshot, also in each resync's (1 to 10000, default 1000). */
  limit?: number;
  /**
   * Called with a fresh snapshot after a reconnect re-established the
   * watch: events of the time offline are not replayed, the snapshot is the
   * state to start from again. `watch.snapshot` is updated too.
   */
  onResync?: (snapshot: ListResult) => void;
}

/**
 * Connection state: `connecting` (a socket is being opened), `open`,
 * `reconnecting` (the connection dropped; waiting before the next attempt),
 * `closed` (for good: `close()` was called or reconnecting is off or gave up).
 */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Events of a `LockClient`, for `client.on()`. */
export interface ClientEvents {
  /** A lock this session held was taken away by the server (also aborts the lease's signal). */
  lost: { key: string; token: number; reason: LostReason };
  /** The connection state changed. */
  state: ClientState;
  /**
   * An open connection ended. Leases the server released are lost with
   * `connection_lost` (with session grace, they wait for the resume);
   * `reconnecting` says whether the client tries again.
   */
  disconnect: CloseInfo & { reconnecting: boolean };
  /** A reconnect succeeded; `resumed` when the server gave the old session (and its kept locks) back. */
  reconnect: { session: string; previousSession: string; resumed: boolean; attempts: number };
  /** The client closed for good; every lease was lost with `connection_lost`. Emitted once. */
  close: CloseInfo;
}
