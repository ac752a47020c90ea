/**
 * The events of a recorded lock history, Jepsen style: every request a
 * client invoked, every answer and push it received, every close of its
 * connection and every write it made to the fenced resource, each stamped
 * with the time it was observed.
 *
 * Timestamps are milliseconds on one monotonic clock shared by everything
 * that records into a history. Within one process `performance.now()` will
 * do; across processes use `performance.timeOrigin + performance.now()` (the
 * recorder's default), so that a parent killing a child and the child's own
 * events land on the same axis.
 *
 * `at` is always what the recording side could observe: for an invoke, the
 * moment the request was sent (the server cannot have acted on it earlier);
 * for a reply or push, the moment it was received (the server acted on it
 * earlier). The checker relies on exactly these two directions.
 */
import type { LostReason, LockMode } from '@lockwire/protocol';

/** A request id as sent on the wire. */
export type HistoryRequestId = number | string;

interface EventBase {
  /** Names the connection (one connection = one session = one client). */
  client: string;
  /** Observation time, ms on the history's monotonic clock. */
  at: number;
}

/** An `acquire` was sent. */
export interface AcquireInvoked extends EventBase {
  type: 'acquire';
  id: HistoryRequestId;
  key: string;
  mode: LockMode;
  /** As sent; `null` waits indefinitely, `0` tries once. */
  acquireTimeout: number | null;
  /** As sent; `null` holds until released or the connection ends. */
  holdTimeout: number | null;
  steal: boolean;
}

/** The `queued` acknowledgement of an acquire was received. */
export interface AcquireQueued extends EventBase {
  type: 'queued';
  id: HistoryRequestId;
  key: string;
  position: number;
}

/** An acquire was answered `acquired: true`. */
export interface AcquireGranted extends EventBase {
  type: 'granted';
  id: HistoryRequestId;
  key: string;
  token: number;
}

/** An acquire was answered `acquired: false` (its acquire timeout elapsed). */
export interface AcquireNotGranted extends EventBase {
  type: 'not-granted';
  id: HistoryRequestId;
  key: string;
}

/** An acquire was answered with an error (`cancelled`, `shutting_down`, ...). */
export interface AcquireFailed extends EventBase {
  type: 'acquire-failed';
  id: HistoryRequestId;
  key: string;
  code: string;
}

/** A request's connection ended before its answer: it may or may not have taken effect. */
export interface RequestUnknown extends EventBase {
  type: 'unknown';
  id: HistoryRequestId;
}

/** A `release` was sent. */
export interface ReleaseInvoked extends EventBase {
  type: 'release';
  id: HistoryRequestId;
  key: string;
}

/** A release was answered `released: true`. */
export interface ReleaseDone extends EventBase {
  type: 'released';
  id: HistoryRequestId;
  key: string;
}

/** A release was answered with an error, typically `not_holder`. */
export interface ReleaseFailed extends EventBase {
  type: 'release-failed';
  id: HistoryRequestId;
  key: string;
  code: string;
}

/** A `cancel` of the pending request `target` was sent. */
export interface CancelInvoked extends EventBase {
  type: 'cancel';
  id: HistoryRequestId;
  target: HistoryRequestId;
}

/** A cancel was answered; `cancelled` says whether the target was still pending. */
export interface CancelAnswered extends EventBase {
  type: 'cancel-reply';
  id: HistoryRequestId;
  target: HistoryRequestId;
  cancelled: boolean;
}

/** A `ping` was sent; its answer is evidence of what the server did after it arrived. */
export interface PingInvoked extends EventBase {
  type: 'ping';
  id: HistoryRequestId;
}

/** A ping was answered. */
export interface PingAnswered extends EventBase {
  type: 'pong';
  id: HistoryRequestId;
}

/** A `lost` push was received. */
export interface LockLost extends EventBase {
  type: 'lost';
  key: string;
  token: number;
  reason: LostReason;
}

/**
 * How a connection ended, as far as the bound on releasing its locks goes:
 * `clean` - the client closed it, or its process died and the OS closed the
 *   socket (the server sees the close at once);
 * `half-open` - the path stopped carrying packets without a close (the server
 *   finds out by heartbeat);
 * `crash` - the server node holding the connection died (the store's node TTL
 *   releases the locks);
 * `server` - the server closed it (drain, superseded, policy).
 */
export const CloseKind = {
  Clean: 'clean',
  HalfOpen: 'half-open',
  Crash: 'crash',
  Server: 'server',
} as const;
export type CloseKind = (typeof CloseKind)[keyof typeof CloseKind];

/**
 * The connection ended. For every kind but `server`, `at` is when the ending
 * was set off on the client's side of the wire (close called, process killed,
 * proxy cut, node killed), so the server cannot have released the
 * connection's locks earlier. For `server`, `at` is when the client saw the
 * close. Only the first `closed` event of a client counts.
 */
export interface ConnectionClosed extends EventBase {
  type: 'closed';
  kind: CloseKind;
  /**
   * How long after `at` a waiter may go without each key the connection held
   * before the hand-off counts as lost (rule 5); absent: not checked. On the
   * real clock this is a hang guard (`handoffGuardMs`), never the server's
   * promised latency: a loaded machine may take any time short of a hang.
   * On a simulated clock it may be the promise itself.
   */
  boundMs?: number;
}

/** A write to the fenced resource, and whether the resource accepted it. */
export interface ResourceWrite extends EventBase {
  type: 'write';
  key: string;
  token: number;
  accepted: boolean;
}

/** One observation in a history. */
export type HistoryEvent =
  | AcquireInvoked
  | AcquireQueued
  | AcquireGranted
  | AcquireNotGranted
  | AcquireFailed
  | RequestUnknown
  | ReleaseInvoked
  | ReleaseDone
  | ReleaseFailed
  | CancelInvoked
  | CancelAnswered
  | PingInvoked
  | PingAnswered
  | LockLost
  | ConnectionClosed
  | ResourceWrite;

/** The least hang guard of a hand-off on the real clock. */
const HANDOFF_GUARD_FLOOR_MS = 2000;

/**
 * The `boundMs` to record with a close on the real clock, for a server that
 * promises to hand the connection's locks on within `promisedMs`: a hang
 * guard far above any scheduling delay of a loaded machine, so rule 5 flags
 * only a hand-off that never comes, yet well short of a soak epoch, so that
 * waiters without a timeout still catch one there.
 */
export function handoffGuardMs(promisedMs: number): number {
  return Math.max(HANDOFF_GUARD_FLOOR_MS, 5 * promisedMs);
}

/** A history: events in the order they were recorded. */
export type History = readonly HistoryEvent[];

/** An event as handed to `record()`: `at` defaults to the recorder's clock. */
export type UnstampedEvent = HistoryEvent extends infer E
  ? E extends HistoryEvent
    ? Omit<E, 'at'> & { at?: number }
    : never
  : never;

export interface HistoryRecorderOptions {
  /**
   * The clock stamping events without an `at`. Default
   * `performance.timeOrigin + performance.now()`: monotonic, and comparable
   * across processes on one machine.
   */
  now?: () => number;
}

/**
 * Collects the events of one history, in the order they are recorded. Any
 * number of clients (and the fenced resource) may feed one recorder; the
 * checker splits the history per client.
 */
export class HistoryRecorder {
  readonly #events: HistoryEvent[] = [];
  readonly #now: () => number;

  constructor(options: HistoryRecorderOptions = {}) {
    this.#now = options.now ?? (() => performance.timeOrigin + performance.now());
  }

  /** The current time on this history's clock. */
  now(): number {
    return this.#now();
  }

  /** Appends one event, stamping it with `now()` unless it carries `at`. Returns the stored event. */
  record(event: UnstampedEvent): HistoryEvent {
    const stamped = { ...event, at: event.at ?? this.#now() } as HistoryEvent;
    this.#events.push(stamped);
    return stamped;
  }

  /** Appends events recorded elsewhere (e.g. by a child process), keeping their stamps. */
  append(events: Iterable<HistoryEvent>): void {
    for (const event of events) this.#events.push(event);
  }

  /** A snapshot of the history so far. */
  history(): History {
    return [...this.#events];
  }
}
