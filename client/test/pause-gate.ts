/** One wait the gate holds: it ends on `resume()` or when its signal aborts, as the real wait does. */
export interface HeldPause {
  readonly ms: number;
  readonly signal: AbortSignal;
  /** Ends the wait as if its time had run out. */
  resume(): void;
}

type Pause = (ms: number, signal: AbortSignal) => Promise<void>;

/**
 * (It imports nothing of the client: the mocked module's factory loads it,
 * and the client's modules wait for that factory.)
 *
 * Stands in for the client's `pause` (its timer for backoff waits and for
 * an acquire's timeout while a hold of its key is let go of) in tests that
 * mock `../src/reconnect.js`: while `holding`, each wait is held until the
 * test resumes it or its signal aborts, so a test decides when a retry's
 * (or a timeout's) time has come instead of sleeping through it. Otherwise
 * waits are real.
 */
export class PauseGate {
  holding = false;
  readonly #held: HeldPause[] = [];
  readonly #arrivals: (() => void)[] = [];

  /** `real` while not holding, held waits while holding. */
  wrap(real: Pause): Pause {
    return (ms, signal) => (this.holding ? this.#hold(ms, signal) : real(ms, signal));
  }

  /** Resolves with the next held wait not yet taken; rejects after `ms` (real time) without one. */
  next(ms = 2000): Promise<HeldPause> {
    return new Promise<HeldPause>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for a backoff wait`)), ms);
      const check = () => {
        const held = this.#held.shift();
        if (!held) {
          this.#arrivals.push(check);
          return;
        }
        clearTimeout(timer);
        resolve(held);
      };
      check();
    });
  }

  /** Held waits not yet taken by `next()`. */
  get waiting(): number {
    return this.#held.length;
  }

  /** Stops holding and forgets waits not taken (between tests). */
  reset(): void {
    this.holding = false;
    this.#held.length = 0;
    this.#arrivals.length = 0;
  }

  #hold(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      if (signal.aborted) {
        resolve();
        return;
      }
      signal.addEventListener('abort', done, { once: true });
      this.#held.push({ ms, signal, resume: done });
      for (const arrive of this.#arrivals.splice(0)) arrive();
    });
  }
}

/** The gate the mocked `pause` of a test file goes through. */
export const pauseGate = new PauseGate();

/**
 * The client's reconnect module `actual` with its `pause` going through
 * {@link pauseGate}: what a test file's `vi.mock('../src/reconnect.js')`
 * factory returns, given the original module.
 */
export function withGatedPause<T extends { pause: Pause }>(actual: T): T {
  return { ...actual, pause: pauseGate.wrap(actual.pause) };
}

/** Resolves after everything already queued (the microtasks a woken retry runs) has run: one macrotask turn. */
export function settled(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
