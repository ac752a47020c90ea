import { describe, expect, it } from 'vitest';
import type { Clock } from '../src/clock.js';
import { createManualClock } from '../src/clock.js';
import { LockError } from '../src/errors.js';
import { createMemoryStore } from '../src/memory-store.js';
import type { AcquireInput, LockEvent, LostLock } from '../src/store.js';
import { quietListener } from './server-harness.js';

const T0 = 1_700_000_000_000;

const input = (ticket: number, key: string, holdTimeout: number | null, acquireTimeout: number | null = null): AcquireInput => ({
  ticket,
  key,
  mode: 'exclusive',
  acquireTimeout,
  holdTimeout,
  steal: false,
  meta: null,
});

/** Time moves on its own; timers run only when `fire()` is called, as under a busy event loop. */
function lateClock() {
  let now = T0;
  let seq = 0;
  const timers = new Map<number, () => void>();
  const clock: Clock = {
    now: () => now,
    monotonic: () => now - T0,
    setTimeout: (fn) => {
      timers.set(++seq, fn);
      return seq;
    },
    clearTimeout: (handle) => void timers.delete(handle as number),
  };
  return {
    clock,
    set: (at: number) => {
      now = at;
    },
    fire: () => {
      for (const [id, fn] of [...timers]) {
        timers.delete(id);
        fn();
      }
    },
  };
}

describe('memory store re-entry', () => {
  it('a session ended from inside a delivery keeps every watcher’s view of the step whole and in order', async () => {
    const store = createMemoryStore({ clock: createManualClock(T0), tokenSeed: () => 1 });
    const events: string[] = [];
    // As a session that is cut while its grant is being sent: the listener ends it synchronously.
    await store.start(quietListener({ granted: (session) => void store.closeSession(session) }));
    await store.watch('', 1000, null, (e: LockEvent) => events.push(`${e.event}:${e.session}:h${e.holders}`));
    await store.acquire('A', input(1, 'k', null));
    await store.acquire('W', input(2, 'k', null));
    events.length = 0;

    await store.release('A', 'k');

    expect((await store.status('k', null)).locked).toBe(false);
    expect(events).toEqual(['released:A:h0', 'acquired:W:h1', 'released:W:h0']);
  });
});

describe('memory store with a late timer', () => {
  it('an extend after expiresAt finds the hold expired and the holder is told, even before the timer runs', async () => {
    const t = lateClock();
    const store = createMemoryStore({ clock: t.clock, tokenSeed: () => 1 });
    const lost: LostLock[] = [];
    await store.start(quietListener({ lost: (_session, l) => void lost.push(l) }));
    const granted = await store.acquire('A', input(1, 'k', 100));
    expect(granted.status).toBe('granted');

    t.set(T0 + 500);
    const error = await store.extend('A', 'k', 10_000).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).code).toBe('not_holder');
    expect(lost).toEqual([{ key: 'k', token: granted.status === 'granted' ? granted.token : 0, reason: 'expired' }]);
    t.fire();
    expect(lost).toHaveLength(1);
  });

  it('a try-once acquire after expiresAt is granted although the expiry timer has not run yet', async () => {
    const t = lateClock();
    const store = createMemoryStore({ clock: t.clock, tokenSeed: () => 1 });
    await store.start(quietListener());
    await store.acquire('A', input(1, 'k', 100));
    t.set(T0 + 101);

    const other = await store.acquire('B', input(2, 'k', null, 0));

    expect(other.status).toBe('granted');
    expect((await store.status('k', null)).holders.map((h) => h.session)).toEqual(['B']);
  });

  it('status taken after expiresAt does not report the expired hold', async () => {
    const t = lateClock();
    const store = createMemoryStore({ clock: t.clock, tokenSeed: () => 1 });
    await store.start(quietListener());
    await store.acquire('A', input(1, 'k', 100));
    t.set(T0 + 100);

    expect((await store.status('k', null)).locked).toBe(false);
  });
});
