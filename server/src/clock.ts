/** An opaque handle of a timer set with a `Clock`. */
export type TimerHandle = unknown;

/**
 * Where the server reads time and sets its timers. Injected so that tests
 * drive timeouts with a manual clock instead of waiting.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * How far `now()` may lag the true time, in ms: 1 for `Date.now()`, which
   * truncates to a whole millisecond; 0 (the default) for a clock that reads
   * exact times, such as the manual clock.
   */
  readonly resolution?: number;
  /** Calls `fn` once, no earlier than `ms` milliseconds from `now()`. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `Date.now()` and the runtime's timers, which never fire early. */
export const systemClock: Clock = {
  now: () => Date.now(),
  resolution: 1,
  setTimeout(fn, ms) {
    // Node's timers may run up to ~1 ms before `Date.now()` reaches the
    // deadline (they use a monotonic, truncated clock), so re-arm on an
    // early wake-up: a hold must never expire before its `expiresAt`.
    const deadline = Date.now() + ms;
    const handle: { timer: ReturnType<typeof setTimeout> | undefined } = { timer: undefined };
    const arm = (delay: number) => {
      handle.timer = setTimeout(() => {
        const left = deadline - Date.now();
        if (left > 0) arm(Math.min(left, 2_147_483_647));
        else fn();
      }, delay);
      handle.timer.unref?.();
    };
    arm(Math.min(ms, 2_147_483_647));
    return handle;
  },
  clearTimeout(handle) {
    const h = handle as { timer: ReturnType<typeof setTimeout> | undefined };
    if (h.timer !== undefined) clearTimeout(h.timer);
  },
};

/** A clock that moves only when told: for tests of timeouts. */
export interface ManualClock extends Clock {
  /** Moves time forward by `ms`, running every timer that falls due, in deadline order. */
  advance(ms: number): void;
  /** Moves time to `at` (never backwards). */
  set(at: number): void;
  /** Number of timers still pending. */
  pending(): number;
}

/** Creates a manual clock starting at `start` ms since the epoch. */
export function createManualClock(start = 1_700_000_000_000): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; seq: number; fn: () => void }>();
  const runDue = (until: number) => {
    for (;;) {
      let next: { id: number; at: number; seq: number; fn: () => void } | undefined;
      for (const [id, t] of timers) {
        if (t.at <= until && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = { id, ...t };
        }
      }
      if (!next) break;
      timers.delete(next.id);
      now = Math.max(now, next.at);
      next.fn();
    }
    now = Math.max(now, until);
  };
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), seq: id, fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    advance(ms) {
      runDue(now + ms);
    },
    set(at) {
      runDue(Math.max(now, at));
    },
    pending: () => timers.size,
  };
}

/**
 * How long after `now` a hold of `holdTimeout` ms ends. A fractional
 * duration is rounded up to a whole millisecond. `now` read from a clock
 * that truncates (`Date.now()`) may be up to `resolution` ms before the
 * grant really happened, so that much is added: a client that sent its
 * acquire before the grant and counts `holdTimeout` from then never
 * outlives the hold, even by a fraction of a millisecond.
 */
export function holdDuration(clock: Pick<Clock, 'resolution'>, holdTimeout: number): number {
  return Math.ceil(holdTimeout) + (clock.resolution ?? 0);
}
