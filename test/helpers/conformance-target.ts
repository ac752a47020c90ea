import type { Clock, LockServerOptions } from '@lockwire/server';

/** Server limits a conformance suite may set; absent fields keep the server's defaults. */
export interface TargetLimits {
  maxPayload?: number;
  maxKeyLength?: number;
  maxLocksPerSession?: number;
  maxWaitersPerKey?: number;
}

export interface TargetStartOptions {
  /** The clock the target's stores must read time and set timers with (when `manualClock`). */
  clock: Clock;
  limits: TargetLimits;
  /** Credentials every node requires; absent, connections need none and may do everything. */
  auth?: LockServerOptions['auth'];
}

/** A running deployment: one or more nodes serving one lock table. */
export interface TargetInstance {
  /** WebSocket URLs (`ws://host:port/v1`) of the nodes; all the same for a single node. */
  urls: string[];
  /** Stops every node; idempotent. */
  close(): Promise<void>;
}

/**
 * What the conformance suite runs against: the memory store on one node, or
 * a shared store behind several nodes. Contending clients are connected to
 * different nodes (client i uses `urls[i % urls.length]`).
 *
 * `start()` must give an empty lock table (no holds, no queues) whose fencing
 * tokens are still greater than every token an earlier `start()` on the same
 * clock issued: the suite uses two starts as a server restart.
 */
export interface ConformanceTarget {
  name: string;
  /**
   * True when the target drives every timeout with the clock it is given, so
   * the suite advances a manual clock instead of waiting. False: the target
   * runs on real time and the suite uses short real timeouts.
   */
  manualClock: boolean;
  /**
   * False when a watcher may see events of two different keys in another
   * order than they happened: on a Redis Cluster, keys live on different
   * shards and their broadcasts travel separately. The order of one key's
   * events always holds. Default true.
   */
  crossKeyEventOrder?: boolean;
  start(options: TargetStartOptions): Promise<TargetInstance>;
}

/** The HTTP base URL (`http://host:port`) of a node's WebSocket URL. */
export function httpUrlOf(wsUrl: string): string {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = '';
  url.search = '';
  return url.toString().replace(/\/$/, '');
}
