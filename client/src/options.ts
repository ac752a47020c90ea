import type { LockMode, LostReason } from '@lockwire/protocol';
import type { CloseInfo } from './errors.js';
import type { TransportFactory } from './transport.js';

/** Options of `LockClient.connect()`. */
export interface ConnectOptions {
  /** How to open the socket. Default: the runtime's WebSocket (`ws` under the Node entry). */
  transport?: TransportFactory;
  /** HTTP headers for the upgrade request, e.g. `Authorization`. Node only: browsers cannot set them. */
  headers?: Record<string, string>;
  /** Aborts connecting; `connect()` then rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** Options of `acquire()`. Durations are milliseconds; `null`/absent means no limit. */
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
  /** Gives up while queued: sends `cancel` and rejects with `signal.reason`. Ignored once granted. */
  signal?: AbortSignal;
  /** Called once, with the queue position (1 = next), if the request had to wait. */
  onQueued?: (position: number) => void;
}

/** Connection state; reconnecting clients add `connecting`. */
export type ClientState = 'open' | 'closed';

/** Events of a `LockClient`, for `client.on()`. */
export interface ClientEvents {
  /** A lock this session held was taken away (also aborts the lease's signal). */
  lost: { key: string; token: number; reason: LostReason };
  /** The connection ended; every lease was lost with `connection_lost`. */
  close: CloseInfo;
  /** The connection state changed. */
  state: ClientState;
}
