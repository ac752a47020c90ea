import { DEFAULT_LIMITS } from '@lockwire/protocol';
import { createManualClock, instantOf, type Instant } from '../src/clock.js';
import type { Effect } from '../src/engine/effects.js';
import { LockEngine } from '../src/engine/lock-engine.js';
import { createTokenSource } from '../src/engine/token-source.js';
import type { AcquireInput, StoreLimits, WaitInput } from '../src/store.js';
import { acquireInput } from './server-harness.js';

/** One effect as a short line, so tests can assert order at a glance. */
export function line(effect: Effect): string {
  switch (effect.type) {
    case 'lost':
      return `lost ${effect.session} ${effect.lost.key} t${effect.lost.token} ${effect.lost.reason}`;
    case 'granted':
      return `granted ${effect.session} #${effect.ticket} ${effect.grant.key} t${effect.grant.token}`;
    case 'acquireTimedOut':
      return `timedOut ${effect.session} #${effect.ticket}`;
    case 'waitDone':
      return `waitDone ${effect.session} #${effect.ticket} ${effect.free ? 'free' : 'timeout'}`;
    case 'event': {
      const e = effect.event;
      const token = e.token === undefined ? '' : ` t${e.token}`;
      return `${e.event} ${e.key} ${e.session}${token} h${e.holders} w${e.waiters}`;
    }
  }
}

export const lines = (effects: Effect[]) => effects.map(line);

/** An engine with tokens 1, 2, 3... and a manual clock that gives `now` (both its readings). */
export function engineHarness(limits: Partial<StoreLimits> = {}) {
  const clock = createManualClock(1_000);
  const engine = new LockEngine({
    limits: {
      maxLocksPerSession: DEFAULT_LIMITS.maxLocksPerSession,
      maxWaitersPerKey: DEFAULT_LIMITS.maxWaitersPerKey,
      ...limits,
    },
    tokens: createTokenSource(() => 1),
  });
  let tickets = 0;
  const now = (): Instant => instantOf(clock);
  const h = {
    clock,
    engine,
    now,
    /** The ticket the next acquire or wait gets. */
    nextTicket: () => tickets + 1,
    acquire(session: string, key: string, input: Partial<Omit<AcquireInput, 'key'>> = {}) {
      return engine.acquire(session, acquireInput(++tickets, key, input), now());
    },
    /** Acquires and expects an immediate grant; returns its token. */
    hold(session: string, key: string, input: Partial<Omit<AcquireInput, 'key'>> = {}): number {
      const { outcome } = h.acquire(session, key, input);
      if (outcome.status !== 'granted') throw new Error(`expected a grant of ${key} to ${session}, got ${outcome.status}`);
      return outcome.token;
    },
    wait(session: string, key: string, input: Partial<Omit<WaitInput, 'key'>> = {}) {
      return engine.wait(session, { ticket: ++tickets, key, timeout: null, ...input }, now());
    },
    release: (session: string, key: string) => lines(engine.release(session, key, now())),
    tick: () => lines(engine.tick(now())),
    holders: (key: string) => engine.status(key, null).holders.map((holder) => holder.session),
    queue: (key: string) => engine.status(key, null).queue.map((waiter) => `${waiter.session}:${waiter.mode}`),
  };
  return h;
}
