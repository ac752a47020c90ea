import type { Duplex } from 'node:stream';
import type { RequestId } from '@lockwire/protocol';
import type { Clock } from './clock.js';
import type { LockError } from './errors.js';
import type { DetachedSession } from './grace-registry.js';
import type { ServerLimits } from './limits.js';
import type { Logger } from './logger.js';
import type { LockMetrics } from './metrics.js';
import type { Permissions } from './permissions.js';
import type { ServerCloses } from './server-closes.js';
import type { Session } from './session.js';
import type { Grant, LockEvent, LockStore, Ticket } from './store.js';
import type { WriteTurns } from './write-turns.js';

/** How a pending `acquire` or `wait` ended, as the store's listener reported it. */
export type Settlement =
  | { kind: 'granted'; grant: Grant }
  | { kind: 'acquireTimedOut' }
  | { kind: 'waitDone'; free: boolean }
  /** The store could not settle it (lost contact): answered with the error. */
  | { kind: 'failed'; error: LockError };

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly store: LockStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: LockMetrics;
  readonly maxKeyLength: number;
  readonly limits: ServerLimits;
  /** The server's write turns, which gather each connection's frames of one event-loop turn into one write. */
  readonly writeTurns: WriteTurns;
  /** Every close or cut the server starts goes through here, for the `connection closed` line. */
  readonly closes: ServerCloses;
  /** True when a session that loses its connection now keeps its locks for a resume (grace on, not closing). */
  keepsLocks(): boolean;
  /** Called once when a session lost its connection and keeps its locks; its pending requests are being cancelled. */
  sessionDetached(session: Session, detached: DetachedSession, cancelling: Promise<void>): void;
  /** Allocates a server-wide ticket whose settlements are routed to `session`'s request `id`. */
  openTicket(session: Session, id: RequestId): Ticket;
  /** Forgets a ticket's route; later settlements of it are dropped. */
  closeTicket(ticket: Ticket): void;
  /**
   * The wire `event` for `event` as UTF-8 JSON, built once however many
   * watchers get it: the same bytes are sent to each of them as a text frame.
   */
  encodeEvent(event: LockEvent): Buffer;
  /** Called once when the session ends, with the store's `closeSession` in progress. */
  sessionEnded(session: Session, closing: Promise<void>): void;
}

/** Who a session is and what it may do, fixed when its connection opens. */
export interface SessionOptions {
  /** What the connection's credentials allow (everything with auth off). */
  permissions: Permissions;
  /** The resume secret of this session's welcome, or null with session grace off. */
  resume: string | null;
  /**
   * The secret a resume presented to open this connection: it works beside
   * `resume` until the client sends its first frame (see `acceptsSecret`).
   */
  resumedWith?: string | null;
  /** Keys a resumed session holds from before. */
  held?: Iterable<string>;
  /** The connection's socket: a dropped peer is noticed on it before `ws` emits 'close'. */
  socket?: Duplex;
}
