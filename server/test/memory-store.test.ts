import { describe, expect, it } from 'vitest';
import { createManualClock } from '../src/clock.js';
import { LockError } from '../src/errors.js';
import { createMemoryStore, type MemoryStoreOptions } from '../src/memory-store.js';
import type { AcquireInput, LockEvent, StoreListener } from '../src/store.js';
import { acquireInput, quietListener } from './server-harness.js';

const MAX = 2_147_483_647;

/** A memory store on a manual clock whose listener writes every call as a line. */
async function storeHarness(options: MemoryStoreOptions = {}) {
  const clock = createManualClock(1_000);
  const store = createMemoryStore({ clock, tokenSeed: () => 1, ...options });
  const calls: string[] = [];
  const listener: StoreListener = {
    granted: (session, ticket, grant) => calls.push(`granted ${session} #${ticket} t${grant.token} exp=${grant.expiresAt}`),
    acquireTimedOut: (session, ticket) => calls.push(`timedOut ${session} #${ticket}`),
    waitDone: (session, ticket, free) => calls.push(`waitDone ${session} #${ticket} ${free}`),
    lost: (session, lost) => calls.push(`lost ${session} ${lost.key} t${lost.token} ${lost.reason}`),
  };
  await store.start(listener);
  let tickets = 0;
  const acquire = (session: string, key: string, input: Partial<Omit<AcquireInput, 'key'>> = {}) =>
    store.acquire(session, acquireInput(++tickets, key, input));
  /** Returns and forgets the listener calls so far. */
  const take = () => calls.splice(0);
  return { clock, store, acquire, take, nextTicket: () => tickets + 1, ticket: () => ++tickets };
}

describe('memory store', () => {
  it('is the memory kind', async () => {
    const { store } = await storeHarness();
    expect(store.kind).toBe('memory');
  });

  it("adds its clock's resolution to a hold's length, so a hold never ends before holdTimeout has passed since its grant", async () => {
    // A clock like Date.now(): now() may lag the true time by up to 1 ms.
    const manual = createManualClock(1_000);
    const truncating = {
      now: () => manual.now(),
      monotonic: () => manual.monotonic(),
      setTimeout: (fn: () => void, ms: number) => manual.setTimeout(fn, ms),
      clearTimeout: (handle: unknown) => manual.clearTimeout(handle),
      resolution: 1,
    };
    const h = await storeHarness({ clock: truncating });
    expect(await h.acquire('a', 'k', { holdTimeout: 100 })).toMatchObject({ status: 'granted', expiresAt: 1_101 });
    manual.advance(100);
    expect(h.take()).toEqual([]);
    manual.advance(1);
    expect(h.take()).toEqual(['lost a k t1 expired']);
  });

  it('grants a queued acquire through the listener in the step that releases the key', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k');
    expect(await h.acquire('b', 'k', { holdTimeout: 10 })).toEqual({ status: 'queued', position: 1 });
    expect(h.take()).toEqual([]);
    await h.store.release('a', 'k');
    expect(h.take()).toEqual(['granted b #2 t2 exp=1010']);
  });

  it('expires a hold on its timer exactly at the deadline, lost before the next grant', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k', { holdTimeout: 100 });
    await h.acquire('b', 'k');
    h.clock.advance(99);
    expect(h.take()).toEqual([]);
    h.clock.advance(1);
    expect(h.take()).toEqual(['lost a k t1 expired', 'granted b #2 t2 exp=null']);
    expect(h.store.inspect()).toEqual({ keys: 1, sessions: 1, pendingDeadlines: 0, timerArmed: false });
  });

  it('runs a 2147483647 ms hold timeout on time', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k', { holdTimeout: MAX });
    h.clock.advance(MAX - 1);
    expect(h.take()).toEqual([]);
    h.clock.advance(1);
    expect(h.take()).toEqual(['lost a k t1 expired']);
  });

  it('answers a holdTimeout 0 acquire with its grant, then expires it on the next timer run', async () => {
    const h = await storeHarness();
    const now = h.clock.now();
    expect(await h.acquire('a', 'k', { holdTimeout: 0 })).toEqual({ status: 'granted', key: 'k', token: 1, expiresAt: now });
    expect(h.take()).toEqual([]);
    h.clock.advance(0);
    expect(h.take()).toEqual(['lost a k t1 expired']);
  });

  it('keeps exactly one timer armed, for the earliest deadline', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'x', { holdTimeout: 500 });
    await h.acquire('a', 'y', { holdTimeout: 300 });
    await h.acquire('b', 'x', { acquireTimeout: 400 });
    expect(h.clock.pending()).toBe(1);
    await h.store.extend('a', 'y', 50);
    expect(h.clock.pending()).toBe(1);
    h.clock.advance(50);
    expect(h.take()).toEqual(['lost a y t2 expired']);
    expect(h.clock.pending()).toBe(1);
    h.clock.advance(350);
    expect(h.take()).toEqual(['timedOut b #3']);
    await h.store.extend('a', 'x', null);
    expect(h.clock.pending()).toBe(0);
    expect(h.store.inspect().timerArmed).toBe(false);
  });

  it('settles a wait as free when the holds end and as not free on timeout', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k');
    const first = h.ticket();
    expect(await h.store.wait('w', { ticket: first, key: 'k', timeout: null })).toBe('pending');
    const second = h.ticket();
    expect(await h.store.wait('v', { ticket: second, key: 'k', timeout: 20 })).toBe('pending');
    h.clock.advance(20);
    expect(h.take()).toEqual([`waitDone v #${second} false`]);
    await h.store.release('a', 'k');
    expect(h.take()).toEqual([`waitDone w #${first} true`]);
    expect(await h.store.wait('w', { ticket: h.ticket(), key: 'k', timeout: 0 })).toBe('free');
  });

  it('rejects failures with LockError and changes nothing', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k', { holdTimeout: 100 });
    const before = await h.store.status('k', 'a');
    await expect(h.store.release('b', 'k')).rejects.toMatchObject({ code: 'not_holder' });
    await expect(h.store.extend('b', 'k', 10)).rejects.toBeInstanceOf(LockError);
    await expect(h.acquire('a', 'k', { mode: 'shared' })).rejects.toMatchObject({ code: 'bad_request' });
    await expect(h.acquire('b', 'k', { steal: true, acquireTimeout: 0 })).rejects.toMatchObject({ code: 'bad_request' });
    expect(await h.store.status('k', 'a')).toEqual(before);
    expect(h.store.inspect()).toEqual({ keys: 1, sessions: 1, pendingDeadlines: 1, timerArmed: true });
  });

  it('answers too_many_locks and too_many_waiters from its limits', async () => {
    const h = await storeHarness({ limits: { maxLocksPerSession: 1, maxWaitersPerKey: 1 } });
    await h.acquire('a', 'k');
    await expect(h.acquire('a', 'j')).rejects.toMatchObject({ code: 'too_many_locks' });
    await h.acquire('b', 'k');
    await expect(h.acquire('c', 'k')).rejects.toMatchObject({ code: 'too_many_waiters' });
  });

  it('cancels a queued acquire, which is then never settled', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k');
    const ticket = h.nextTicket();
    await h.acquire('b', 'k', { acquireTimeout: 50 });
    expect(await h.store.cancel('b', ticket)).toBe(true);
    expect(await h.store.cancel('b', ticket)).toBe(false);
    h.clock.advance(100);
    await h.store.release('a', 'k');
    expect(h.take()).toEqual([]);
    expect(h.store.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0, timerArmed: false });
  });

  it('revokes every holder with lost revoked and grants the queue', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k', { mode: 'shared' });
    await h.acquire('b', 'k', { mode: 'shared' });
    await h.acquire('c', 'k');
    expect(await h.store.revoke('k')).toBe(2);
    expect(h.take()).toEqual(['lost a k t1 revoked', 'lost b k t2 revoked', 'granted c #3 t3 exp=null']);
  });

  it('sends lost stolen to the holder before the stealer is answered', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k');
    const answered: string[] = [];
    await h.acquire('s', 'k', { steal: true }).then((outcome) => {
      answered.push(...h.take(), `answered t${'token' in outcome ? outcome.token : '-'}`);
    });
    expect(answered).toEqual(['lost a k t1 stolen', 'answered t2']);
  });

  it('leaves nothing behind once a session closes: no entries, no deadlines, no timer', async () => {
    const h = await storeHarness();
    await h.acquire('o', 'q');
    await h.acquire('a', 'h', { holdTimeout: 1000 });
    await h.acquire('a', 'q', { acquireTimeout: 1000 });
    await h.store.wait('a', { ticket: h.ticket(), key: 'q', timeout: 1000 });
    await h.acquire('b', 'h');
    await h.store.closeSession('a');
    // The next waiter was granted in the same step; nothing went to the closed session.
    expect(h.take()).toEqual(['granted b #5 t3 exp=null']);
    // Checked before the clock moves, so deadlines left to fire harmlessly later cannot pass for cleared ones.
    expect(h.store.inspect().pendingDeadlines).toBe(0);
    h.clock.advance(2000);
    expect(h.take()).toEqual([]);
    await h.store.closeSession('o');
    await h.store.closeSession('b');
    expect(h.store.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0, timerArmed: false });
    expect(h.clock.pending()).toBe(0);
  });

  it('does not create entries when looking at keys', async () => {
    const h = await storeHarness();
    const free = { key: '__proto__', locked: false, mode: null, holders: [], queue: [] };
    expect(await h.store.status('__proto__', null)).toEqual(free);
    expect(await h.store.list('', 10, 'a')).toEqual({ locks: [], truncated: false });
    expect(h.store.inspect().keys).toBe(0);
  });

  it('keeps the remaining deliveries going when a listener throws', async () => {
    const errors: unknown[] = [];
    const h = await storeHarness({ onError: (error) => errors.push(error) });
    const events: string[] = [];
    await h.store.watch('', 10, null, (event) => events.push(event.event));
    await h.store.start(
      quietListener({
        lost: () => {
          throw new Error('listener failed');
        },
      }),
    );
    await h.acquire('a', 'k');
    await h.acquire('b', 'k');
    await h.store.revoke('k');
    expect(events).toEqual(['acquired', 'queued', 'revoked', 'acquired']);
    expect(errors).toEqual([new Error('listener failed')]);
  });

  it('stops running deadlines after close, and close is idempotent', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'k', { holdTimeout: 10 });
    await h.store.close();
    await h.store.close();
    expect(h.clock.pending()).toBe(0);
    h.clock.advance(100);
    expect(h.take()).toEqual([]);
    expect(h.store.inspect().timerArmed).toBe(false);
  });

  it('issues rising fencing tokens across a restart on the same clock', async () => {
    const clock = createManualClock(1_700_000_000_000);
    const first = createMemoryStore({ clock });
    const a = await first.acquire('s', acquireInput(1, 'k'));
    const b = await first.acquire('s', acquireInput(2, 'j'));
    await first.close();
    clock.advance(1);
    const second = createMemoryStore({ clock });
    const c = await second.acquire('s', acquireInput(1, 'k'));
    const tokens = [a, b, c].map((outcome) => (outcome.status === 'granted' ? outcome.token : 0));
    expect(tokens[0]).toBeGreaterThan(0);
    expect(tokens[1]).toBeGreaterThan(tokens[0] ?? 0);
    expect(tokens[2]).toBeGreaterThan(tokens[1] ?? 0);
  });
});

describe('memory store watch', () => {
  it('starts with the list snapshot, then streams every event under the prefix', async () => {
    const h = await storeHarness();
    await h.acquire('a', 'doc:1', { meta: { user: 'ana' } });
    await h.acquire('a', 'img:1');
    const seen: LockEvent[] = [];
    const watch = await h.store.watch('doc:', 10, 'a', (event) => seen.push(event));
    expect(watch.snapshot).toEqual(await h.store.list('doc:', 10, 'a'));
    expect(watch.snapshot.locks.map((lock) => lock.key)).toEqual(['doc:1']);
    await h.acquire('b', 'doc:1');
    await h.acquire('b', 'img:1');
    await h.store.release('a', 'doc:1');
    expect(seen.map((event) => `${event.event} ${event.key} ${event.session}`)).toEqual([
      'queued doc:1 b',
      'released doc:1 a',
      'acquired doc:1 b',
    ]);
  });

  it('hands the same event object to every sink', async () => {
    const h = await storeHarness();
    const seen: LockEvent[] = [];
    await h.store.watch('d', 10, null, (event) => seen.push(event));
    await h.store.watch('doc', 10, null, (event) => seen.push(event));
    await h.store.watch('x', 10, null, (event) => seen.push(event));
    await h.acquire('a', 'doc');
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(seen[1]);
  });

  it('stops delivering after stop, which is idempotent', async () => {
    const h = await storeHarness();
    const seen: string[] = [];
    const first = await h.store.watch('', 10, null, (event) => seen.push(`1 ${event.event}`));
    const second = await h.store.watch('', 10, null, (event) => seen.push(`2 ${event.event}`));
    await h.acquire('a', 'k');
    first.stop();
    first.stop();
    await h.store.release('a', 'k');
    second.stop();
    await h.acquire('a', 'k');
    expect(seen).toEqual(['1 acquired', '2 acquired', '2 released']);
  });
});
