/** An opaque handle of a timer set with a `Clock`. */
export type TimerHandle = unknown;

/**
 * Where the server reads time and sets its timers. Injected so that tests
 * drive timeouts with a manual clock instead of waiting.
 *
 * Two readings: `now()` is the wall clock, which a machine may step
 * forwards or backwards at any moment (an NTP correction, a VM resumed, an
 * operator's `date -s`); it is for what is reported and stored as a point
 * in time (`expiresAt`, a token's `exp`). `monotonic()` only moves forward,
 * at the rate of real time; every deadline and duration the server keeps
 * is measured on it (and its timers run on it), so a step of the wall
 * clock neither ends a hold early nor keeps it past its timeout.
 */
export interface Clock {
  /** Milliseconds since the epoch, as the machine's wall clock reads now. */
  now(): number;
  /** Milliseconds from an arbitrary origin, on a clock that never jumps. */
  monotonic(): number;
  /**
   * How far `now()` may lag the true time, in ms: 1 for `Date.now()`, which
   * truncates to a whole millisecond; 0 (the default) for a clock that reads
   * exact times, such as the manual clock.
   */
  readonly resolution?: number;
  /** Calls `fn` once, no earlier than `ms` milliseconds of `monotonic()` time from now. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/**
 * A moment as both readings of a `Clock` give it. The wall clock may be
 * stepped between two moments, so it only dates what is reported (`since`,
 * `expiresAt`, an event's `at`) and seeds tokens; every deadline is kept on
 * the monotonic reading, so a step of the wall clock neither ends a hold
 * early nor keeps it past its timeout.
 */
export interface Instant {
  /** Epoch ms on the wall clock (`Clock.now()`). */
  readonly wall: number;
  /** ms on the clock that never jumps (`Clock.monotonic()`). */
  readonly monotonic: number;
}

/** Reads both of `clock`'s readings at once. */
export function instantOf(clock: Pick<Clock, 'now' | 'monotonic'>): Instant {
  return { wall: clock.now(), monotonic: clock.monotonic() };
}

/** The real clock: `Date.now()`, `performance.now()` and the runtime's timers, which never fire early. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  resolution: 1,
  setTimeout(fn, ms) {
    // Node's timers may run up to ~1 ms early (they count whole ms from the
    // event loop's cached time), so re-arm on an early wake-up: a hold must
    // never expire before its timeout.
    const deadline = performance.now() + ms;
    const handle: { timer: ReturnType<typeof setTimeout> | undefined } = { timer: undefined };
    const arm = (delay: number) => {
      handle.timer = setTimeout(() => {
        const left = deadline - performance.now();
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
  /** Moves time forward by `ms` (both readings), running every timer that falls due, in deadline order. */
  advance(ms: number): void;
  /** Moves the wall clock to `at` (never backwards), and monotonic time by as much, running the timers due. */
  set(at: number): void;
  /**
   * Steps the wall clock alone by `ms` (negative: backwards), as NTP or an
   * operator may: `monotonic()` does not move and no timer runs.
   */
  stepWall(ms: number): void;
  /** Number of timers still pending. */
  pending(): number;
}

/** Creates a manual clock whose wall clock starts at `start` ms since the epoch (monotonic time at 0). */
export function createManualClock(start = 1_700_000_000_000): ManualClock {
  // The wall clock is monotonic time plus an offset that only stepWall() changes.
  let mono = 0;
  let offset = start;
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
      mono = Math.max(mono, next.at);
      next.fn();
    }
    mono = Math.max(mono, until);
  };
  return {
    now: () => mono + offset,
    monotonic: () => mono,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: mono + Math.max(0, ms), seq: id, fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    advance(ms) {
      runDue(mono + ms);
    },
    set(at) {
      runDue(mono + Math.max(0, at - (mono + offset)));
    },
    stepWall(ms) {
      offset += ms;
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
