import { DEFAULT_LIMITS } from '@lockwire/protocol';
import { instantOf, systemClock, type Clock, type Instant, type TimerHandle } from './clock.js';
import type { Effect } from './engine/effects.js';
import { LockEngine } from './engine/lock-engine.js';
import { createTokenSource } from './engine/token-source.js';
import type {
  AcquireInput,
  AcquireOutcome,
  LockEvent,
  LockStore,
  SessionId,
  StoreLimits,
  StoreListener,
  Ticket,
  WaitInput,
  WatchHandle,
} from './store.js';

export interface MemoryStoreOptions {
  /** Time and timers; `systemClock` by default. */
  clock?: Clock;
  /** Defaults: `maxLocksPerSession` 1000, `maxWaitersPerKey` 10,000. */
  limits?: Partial<StoreLimits>;
  /** The first fencing token (then +1 per grant) instead of seeding from the clock; for tests. */
  tokenSeed?: () => number;
  /**
   * Called with anything a listener or watch sink throws. The store delivers
   * the rest of the step's effects regardless, so one failing delivery cannot
   * leave others unaware of a change. By default the error is rethrown from a
   * microtask, where it surfaces as an uncaught exception.
   */
  onError?: (error: unknown) => void;
}

/** The sizes of the store's tables: all zero and no timer once every session has closed. */
export interface MemoryStoreInspection {
  keys: number;
  sessions: number;
  pendingDeadlines: number;
  timerArmed: boolean;
}

/** The in-memory `LockStore`: the default store of a single lockwire server. */
export interface MemoryStore extends LockStore {
  readonly kind: 'memory';
  inspect(): MemoryStoreInspection;
}

interface WatchRegistration {
  readonly sink: (event: LockEvent) => void;
  active: boolean;
}

const rethrowLater = (error: unknown) => {
  queueMicrotask(() => {
    throw error;
  });
};

/**
 * Creates the in-memory lock table. Every method runs one synchronous engine
 * step, delivers its effects in order (to the listener and to watchers), and
 * resolves with the step's result; failures reject with `LockError` and change
 * nothing. Exactly one clock timer is armed, for the earliest deadline, so
 * hold, acquire and wait timeouts run on time and never early. Deadlines are
 * kept on the clock's monotonic reading: a step of the wall clock moves none
 * of them; it only dates what is reported (`expiresAt`, `since`, events'
 * `at`) and the fencing tokens' seed.
 *
 * `close()` stops the timer (idempotent). Calls after it still work on the
 * table, so a draining server can end its sessions, but no deadline runs.
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const clock = options.clock ?? systemClock;
  const onError = options.onError ?? rethrowLater;
  const limits: Readonly<StoreLimits> = {
    maxLocksPerSession: options.limits?.maxLocksPerSession ?? DEFAULT_LIMITS.maxLocksPerSession,
    maxWaitersPerKey: options.limits?.maxWaitersPerKey ?? DEFAULT_LIMITS.maxWaitersPerKey,
  };
  const engine = new LockEngine({
    clockResolution: clock.resolution ?? 0,
    limits: { ...limits },
    tokens: createTokenSource(options.tokenSeed),
  });
  // Watches by prefix, so an event costs one check per distinct prefix.
  const watches = new Map<string, Set<WatchRegistration>>();
  let listener: StoreListener | null = null;
  let timer: { at: number; handle: TimerHandle } | null = null;
  let closed = false;

  const publish = (event: LockEvent) => {
    for (const [prefix, registrations] of watches) {
      if (!event.key.startsWith(prefix)) continue;
      // A sink may start or stop watches; iterate a copy, skip stopped ones.
      for (const registration of [...registrations]) {
        if (!registration.active) continue;
        try {
          registration.sink(event);
        } catch (error) {
          onError(error);
        }
      }
    }
  };

  // A listener or sink may call back into the store (a session closed while
  // a grant is being sent to it ends up in closeSession). Effects of such a
  // nested step are queued and delivered after the current batch, so every
  // watcher sees each step's events whole and in the order the steps ran.
  const queue: Effect[][] = [];
  let delivering = false;

  const deliver = (effects: Effect[]) => {
    if (effects.length === 0) return;
    queue.push(effects);
    if (delivering) return;
    delivering = true;
    try {
      for (let batch = queue.shift(); batch; batch = queue.shift()) deliverBatch(batch);
    } finally {
      delivering = false;
    }
  };

  const deliverBatch = (effects: Effect[]) => {
    for (const effect of effects) {
      if (effect.type === 'event') {
        publish(effect.event);
        continue;
      }
      if (!listener) continue;
      try {
        if (effect.type === 'lost') listener.lost(effect.session, effect.lost);
        else if (effect.type === 'granted') listener.granted(effect.session, effect.ticket, effect.grant);
        else if (effect.type === 'acquireTimedOut') listener.acquireTimedOut(effect.session, effect.ticket);
        else listener.waitDone(effect.session, effect.ticket, effect.free);
      } catch (error) {
        onError(error);
      }
    }
  };

  const instant = (): Instant => instantOf(clock);

  const arm = () => {
    if (closed) return;
    const next = engine.nextDeadline();
    if (timer?.at === next) return;
    if (timer) clock.clearTimeout(timer.handle);
    timer = null;
    if (next === null) return;
    timer = { at: next, handle: clock.setTimeout(onTimer, Math.max(0, next - clock.monotonic())) };
  };

  function onTimer() {
    timer = null;
    deliver(engine.tick(instant()));
    arm();
  }

  /**
   * Runs whatever fell due before the timer got to it. Real timers run late
   * under load; without this an `extend` or `release` arriving after
   * `expiresAt` would act on a hold that has already expired, and a try-once
   * acquire would see a lock that is no longer held.
   */
  const catchUp = (now: Instant) => {
    if (closed) return;
    const next = engine.nextDeadline();
    if (next !== null && next <= now.monotonic) deliver(engine.tick(now));
  };

  /** Runs one engine step, delivers its effects, re-arms the timer. */
  const step = <T>(run: (now: Instant) => { result: T; effects: Effect[] }): T => {
    const now = instant();
    catchUp(now);
    const { result, effects } = run(now);
    deliver(effects);
    arm();
    return result;
  };

  return {
    kind: 'memory',
    limits,

    async start(next) {
      listener = next;
    },

    async acquire(session: SessionId, input: AcquireInput): Promise<AcquireOutcome> {
      return step((now) => {
        const { outcome, effects } = engine.acquire(session, input, now);
        return { result: outcome, effects };
      });
    },

    async release(session, key) {
      step((now) => ({ result: undefined, effects: engine.release(session, key, now) }));
    },

    async extend(session, key, holdTimeout) {
      return step((now) => ({ result: engine.extend(session, key, holdTimeout, now), effects: [] }));
    },

    async wait(session: SessionId, input: WaitInput) {
      return step((now) => ({ result: engine.wait(session, input, now), effects: [] }));
    },

    async cancel(session: SessionId, ticket: Ticket) {
      return step((now) => {
        const { cancelled, effects } = engine.cancel(session, ticket, now);
        return { result: cancelled, effects };
      });
    },

    async status(key, viewer) {
      catchUp(instant());
      arm();
      return engine.status(key, viewer);
    },

    async list(prefix, limit, viewer) {
      catchUp(instant());
      arm();
      return engine.list(prefix, limit, viewer);
    },

    async watch(prefix, limit, viewer, sink): Promise<WatchHandle> {
      // Snapshot and registration happen in one synchronous step: no event
      // can fall between them.
      catchUp(instant());
      arm();
      const snapshot = engine.list(prefix, limit, viewer);
      const registration: WatchRegistration = { sink, active: true };
      let registrations = watches.get(prefix);
      if (!registrations) {
        registrations = new Set();
        watches.set(prefix, registrations);
      }
      registrations.add(registration);
      const stop = () => {
        if (!registration.active) return;
        registration.active = false;
        const current = watches.get(prefix);
        current?.delete(registration);
        if (current?.size === 0) watches.delete(prefix);
      };
      return { snapshot, stop };
    },

    async revoke(key) {
      return step((now) => {
        const { revoked, effects } = engine.revoke(key, now);
        return { result: revoked, effects };
      });
    },

    async closeSession(session, end) {
      step((now) => ({ result: undefined, effects: engine.closeSession(session, now, end) }));
    },

    async close() {
      closed = true;
      if (timer) clock.clearTimeout(timer.handle);
      timer = null;
    },

    inspect() {
      return { ...engine.inspect(), timerArmed: timer !== null };
    },
  };
}
