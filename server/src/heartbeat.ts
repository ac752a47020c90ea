/**
 * The connection heartbeat: every interval each live connection is judged
 * (cut if nothing was heard from it since the previous ping) and pinged
 * again.
 *
 * A heartbeat must only ever cut a connection for the peer's silence, never
 * for the server's own: a GC pause or a starved process delays the timer and
 * the reading of sockets alike, and judging then would cut healthy holders
 * and hand their locks on. So a tick runs after the event loop has read the
 * input that already arrived, and a tick that fires late (the loop was
 * stalled for more than half an interval) judges nobody: it only pings, and
 * the next on-time tick judges.
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
  let expectedAt = performance.now() + intervalMs;
  let pending: ReturnType<typeof setImmediate> | null = null;
  const timer = setInterval(() => {
    const now = performance.now();
    const onTime = now - expectedAt <= intervalMs / 2;
    expectedAt = now + intervalMs;
    // Run after this turn's poll phase: a pong or frame already in the
    // socket buffers is read before anyone is judged.
    pending = setImmediate(() => {
      pending = null;
      for (const target of targets()) target.heartbeat(onTime);
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
