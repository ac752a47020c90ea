import { describe, expect, it } from 'vitest';
import { DeadlineHeap } from '../src/engine/deadline-heap.js';
import { engineHarness, lines } from './engine-harness.js';

const MAX = 2_147_483_647;

describe('hold timeouts', () => {
  it('expires a hold exactly at its deadline, never a millisecond early', () => {
    const h = engineHarness();
    h.hold('a', 'k', { holdTimeout: 500 });
    h.clock.advance(499);
    expect(h.tick()).toEqual([]);
    expect(h.holders('k')).toEqual(['a']);
    h.clock.advance(1);
    expect(h.tick()).toEqual(['lost a k t1 expired', 'expired k a t1 h0 w0']);
    expect(h.engine.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });

  it('keeps timers exact for the largest duration, 2147483647 ms', () => {
    const h = engineHarness();
    const start = h.clock.now();
    h.hold('a', 'k', { holdTimeout: MAX });
    h.hold('c', 'j');
    h.acquire('b', 'j', { acquireTimeout: MAX });
    expect(h.engine.nextDeadline()).toBe(h.clock.monotonic() + MAX);
    h.clock.set(start + MAX - 1);
    expect(h.tick()).toEqual([]);
    h.clock.set(start + MAX);
    expect(h.tick()).toEqual(['lost a k t1 expired', 'expired k a t1 h0 w0', 'timedOut b #3', 'dequeued j b h1 w0']);
  });

  it('sends lost expired to the holder before granting the next waiter', () => {
    const h = engineHarness();
    h.hold('a', 'k', { holdTimeout: 100 });
    h.acquire('b', 'k', { holdTimeout: 50 });
    h.clock.advance(100);
    expect(h.tick()).toEqual(['lost a k t1 expired', 'expired k a t1 h0 w1', 'granted b #2 k t2', 'acquired k b t2 h1 w0']);
    // The new hold's expiry counts from its grant.
    expect(h.engine.status('k', null).holders[0]?.expiresAt).toBe(h.clock.now() + 50);
  });

  it('expires a holdTimeout 0 hold on the next run, after its grant was delivered', () => {
    const h = engineHarness();
    h.hold('a', 'k', { holdTimeout: 10 });
    h.acquire('b', 'k', { holdTimeout: 0 });
    h.clock.advance(10);
    expect(h.tick()).toEqual(['lost a k t1 expired', 'expired k a t1 h0 w1', 'granted b #2 k t2', 'acquired k b t2 h1 w0']);
    expect(h.engine.nextDeadline()).toBe(h.clock.monotonic());
    expect(h.tick()).toEqual(['lost b k t2 expired', 'expired k b t2 h0 w0']);
  });

  it('processes everything due in one run in deadline order', () => {
    const h = engineHarness();
    h.hold('a', 'x', { holdTimeout: 30 });
    h.hold('b', 'y', { holdTimeout: 10 });
    h.hold('c', 'z', { holdTimeout: 20 });
    h.clock.advance(100);
    expect(h.tick()).toEqual([
      'lost b y t2 expired',
      'expired y b t2 h0 w0',
      'lost c z t3 expired',
      'expired z c t3 h0 w0',
      'lost a x t1 expired',
      'expired x a t1 h0 w0',
    ]);
  });

  it('moves the expiry on extend, and removes it with null', () => {
    const h = engineHarness();
    h.hold('a', 'k', { holdTimeout: 100 });
    h.clock.advance(60);
    expect(h.engine.extend('a', 'k', 100, h.now())).toBe(h.clock.now() + 100);
    h.clock.advance(99);
    expect(h.tick()).toEqual([]);
    h.clock.advance(1);
    expect(h.tick()).toEqual(['lost a k t1 expired', 'expired k a t1 h0 w0']);
    h.hold('a', 'j', { holdTimeout: 5 });
    expect(h.engine.extend('a', 'j', null, h.now())).toBeNull();
    expect(h.engine.nextDeadline()).toBeNull();
    expect(() => h.engine.extend('b', 'j', 5, h.now())).toThrow(expect.objectContaining({ code: 'not_holder' }));
  });
});

describe('acquire timeouts', () => {
  it('times out a queued acquire and reports it dequeued', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('b', 'k', { acquireTimeout: 200 });
    h.clock.advance(199);
    expect(h.tick()).toEqual([]);
    h.clock.advance(1);
    expect(h.tick()).toEqual(['timedOut b #2', 'dequeued k b h1 w0']);
    expect(h.engine.inspect()).toEqual({ keys: 1, sessions: 1, pendingDeadlines: 0 });
  });

  it('grants the shared requests a timed-out exclusive head was blocking', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    h.acquire('x', 'k', { acquireTimeout: 50 });
    h.acquire('r', 'k', { mode: 'shared' });
    h.clock.advance(50);
    expect(h.tick()).toEqual(['timedOut x #2', 'dequeued k x h1 w1', 'granted r #3 k t2', 'acquired k r t2 h2 w0']);
  });

  it('cancels the acquire deadline when the request is granted first', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('b', 'k', { acquireTimeout: 50 });
    h.release('a', 'k');
    expect(h.engine.inspect().pendingDeadlines).toBe(0);
    h.clock.advance(100);
    expect(h.tick()).toEqual([]);
  });
});

describe('DeadlineHeap', () => {
  it('pops live deadlines in time order, ties in push order, skipping cancelled ones', () => {
    const heap = new DeadlineHeap<number>();
    const slots = [];
    // A fixed pseudo-random sequence, so the test is repeatable.
    let seed = 7;
    for (let i = 0; i < 500; i++) {
      seed = (seed * 48271) % 2147483647;
      slots.push(heap.push(seed % 100, i));
    }
    for (let i = 0; i < 500; i += 3) {
      const slot = slots[i];
      if (slot) heap.cancel(slot);
    }
    const live = slots.filter((_, i) => i % 3 !== 0);
    expect(heap.size).toBe(live.length);
    const expected = [...live].sort((a, b) => a.at - b.at || a.seq - b.seq).map((slot) => slot.item);
    const popped: number[] = [];
    for (let item = heap.pop(); item !== undefined; item = heap.pop()) popped.push(item);
    expect(popped).toEqual(expected);
    expect(heap.size).toBe(0);
  });

  it('stays ordered after compacting away cancelled slots, and cancelling twice is harmless', () => {
    const heap = new DeadlineHeap<number>();
    const slots = Array.from({ length: 1000 }, (_, i) => heap.push(1000 - i, i));
    for (const slot of slots.slice(0, 990)) heap.cancel(slot);
    for (const slot of slots.slice(0, 990)) heap.cancel(slot);
    expect(heap.size).toBe(10);
    heap.push(5, -1);
    const popped: number[] = [];
    for (let item = heap.pop(); item !== undefined; item = heap.pop()) popped.push(item);
    expect(popped).toEqual([999, 998, 997, 996, 995, -1, 994, 993, 992, 991, 990]);
  });
});
