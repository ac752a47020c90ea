/**
 * The connection heartbeat: every interval each live connection is judged
 * (cut if nothing was heard from it since the previous ping) and pinged
 * again.
 *
 * A heartbeat must only ever cut a connection for the peer's silence, never
 * for the server's own: a GC pause or a starved process delays the timer and
 * the reading of sockets alike, and judging then would cut healthy holders
 * and hand their locks on. So a tick runs after the event loop has read the
 * input that already arrived, and a tick that fires late, or whose pings
 * go out late (the loop was stalled for more than half an interval), judges
 * nobody: it only pings, and a later tick judges once every peer had at
 * least half an interval to answer.
 */
import { performance } from 'node:perf_hooks';

/** What the heartbeat needs of a connection. */
export interface HeartbeatTarget {
  /**
   * One heartbeat step: when `judge` is true, cut the connection if nothing
   * was heard from it since the last ping; if it stays, ping it again.
   */
  heartbeat(judge: boolean): void;
}

/** A running heartbeat; `stop()` is idempotent. */
export interface Heartbeat {
  stop(): void;
}

/**
 * Starts a heartbeat over `targets()` every `intervalMs` ms of real time.
 * The timer does not keep the process alive.
 */
export function startHeartbeat(intervalMs: number, targets: () => Iterable<HeartbeatTarget>): Heartbeat {
  const half = intervalMs / 2;
  let expectedAt = performance.now() + intervalMs;
  let pingedAt = performance.now();
  let pending: ReturnType<typeof setImmediate> | null = null;
  const timer = setInterval(() => {
    const fired = performance.now();
    const onTime = fired - expectedAt <= half;
    expectedAt = fired + intervalMs;
    // Run after this turn's poll phase: a pong or frame already in the
    // socket buffers is read before anyone is judged.
    pending = setImmediate(() => {
      pending = null;
      const at = performance.now();
      // Judge only when the loop kept time from the timer to here, and the
      // last pings went out at least half an interval ago: a stall that
      // delayed them must not shorten the peers' time to answer.
      const judge = onTime && at - fired <= half && at - pingedAt >= half;
      for (const target of targets()) target.heartbeat(judge);
      pingedAt = performance.now();
    });
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      if (pending) clearImmediate(pending);
      pending = null;
    },
  };
}
