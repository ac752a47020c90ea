import { describe, expect, it } from 'vitest';
import { LockError } from '../src/errors.js';
import { engineHarness, lines } from './engine-harness.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    if (error instanceof LockError) return error.code;
    throw error;
  }
  throw new Error('expected a LockError');
};

describe('acquire and release', () => {
  it('grants a free key at once with a token and an expiry from holdTimeout', () => {
    const h = engineHarness();
    const now = h.clock.now();
    expect(h.acquire('a', 'k', { holdTimeout: 5000 }).outcome).toEqual({
      status: 'granted',
      key: 'k',
      token: 1,
      expiresAt: now + 5000,
    });
    expect(h.acquire('b', 'j').outcome).toEqual({ status: 'granted', key: 'j', token: 2, expiresAt: null });
  });

  it('queues later requests in FIFO order and grants the head on release in the same step', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    expect(h.acquire('b', 'k').outcome).toEqual({ status: 'queued', position: 1 });
    expect(h.acquire('c', 'k').outcome).toEqual({ status: 'queued', position: 2 });
    expect(h.release('a', 'k')).toEqual(['released k a t1 h0 w2', 'granted b #2 k t2', 'acquired k b t2 h1 w1']);
    expect(h.release('b', 'k')).toEqual(['released k b t2 h0 w1', 'granted c #3 k t3', 'acquired k c t3 h1 w0']);
    expect(h.holders('k')).toEqual(['c']);
  });

  it('lets no newcomer overtake the queue', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    h.acquire('w', 'k');
    // The key is held shared, yet a new reader waits behind the queued writer.
    expect(h.acquire('r', 'k', { mode: 'shared' }).outcome).toEqual({ status: 'queued', position: 2 });
    h.release('a', 'k');
    expect(h.acquire('x', 'k').outcome).toEqual({ status: 'queued', position: 2 });
    expect(h.queue('k')).toEqual(['r:shared', 'x:exclusive']);
  });

  it('grants a run of shared requests together and stops at the first exclusive', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('s1', 'k', { mode: 'shared' });
    h.acquire('s2', 'k', { mode: 'shared' });
    h.acquire('x', 'k');
    h.acquire('s3', 'k', { mode: 'shared' });
    expect(h.release('a', 'k')).toEqual([
      'released k a t1 h0 w4',
      'granted s1 #2 k t2',
      'acquired k s1 t2 h1 w3',
      'granted s2 #3 k t3',
      'acquired k s2 t3 h2 w2',
    ]);
    expect(h.engine.status('k', null).mode).toBe('shared');
    expect(h.queue('k')).toEqual(['x:exclusive', 's3:shared']);
    h.release('s1', 'k');
    expect(h.release('s2', 'k')).toEqual(['released k s2 t3 h0 w2', 'granted x #4 k t4', 'acquired k x t4 h1 w1']);
  });

  it('grants shared requests alongside shared holders while nothing is queued', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    expect(h.acquire('b', 'k', { mode: 'shared', acquireTimeout: 0 }).outcome.status).toBe('granted');
    expect(h.holders('k')).toEqual(['a', 'b']);
  });

  it('answers acquireTimeout 0 with not_granted when held incompatibly or when anything is queued', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    expect(h.acquire('b', 'k', { acquireTimeout: 0 }).outcome).toEqual({ status: 'not_granted' });
    h.hold('a', 's', { mode: 'shared' });
    h.acquire('w', 's');
    // Compatible with the shared holder, but a writer is queued.
    expect(h.acquire('b', 's', { mode: 'shared', acquireTimeout: 0 })).toEqual({
      outcome: { status: 'not_granted' },
      effects: [],
    });
    expect(h.queue('s')).toEqual(['w:exclusive']);
    expect(h.engine.inspect().sessions).toBe(2);
  });

  it('does not create a key entry for a try-once acquire that fails', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('b', 'k', { acquireTimeout: 0 });
    expect(h.engine.inspect()).toEqual({ keys: 1, sessions: 1, pendingDeadlines: 0 });
  });

  it('answers a re-acquire by the holder with the same grant and changes nothing', () => {
    const h = engineHarness();
    h.hold('a', 'k', { holdTimeout: 1000, meta: { v: 1 } });
    const before = h.engine.status('k', 'a');
    h.clock.advance(400);
    for (const steal of [false, true]) {
      const again = h.acquire('a', 'k', { holdTimeout: 9000, meta: { v: 2 }, steal });
      expect(again).toEqual({ outcome: { status: 'granted', key: 'k', token: 1, expiresAt: 2000 }, effects: [] });
    }
    expect(h.engine.status('k', 'a')).toEqual(before);
    expect(h.engine.nextDeadline()).toBe(h.clock.monotonic() + 600);
  });

  it('refuses a re-acquire in the other mode with bad_request, with or without steal', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    h.hold('a', 'x');
    const before = [h.engine.status('k', 'a'), h.engine.status('x', 'a')];
    expect(code(() => h.acquire('a', 'k'))).toBe('bad_request');
    expect(code(() => h.acquire('a', 'k', { steal: true }))).toBe('bad_request');
    expect(code(() => h.acquire('a', 'x', { mode: 'shared' }))).toBe('bad_request');
    expect([h.engine.status('k', 'a'), h.engine.status('x', 'a')]).toEqual(before);
  });

  it('refuses a second queued acquire of the same key by one session', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('b', 'k');
    expect(code(() => h.acquire('b', 'k'))).toBe('bad_request');
    expect(code(() => h.acquire('b', 'k', { mode: 'shared', acquireTimeout: 0 }))).toBe('bad_request');
    expect(h.queue('k')).toEqual(['b:exclusive']);
  });

  it('refuses steal with a shared mode or with acquireTimeout 0', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    expect(code(() => h.acquire('b', 'k', { steal: true, mode: 'shared' }))).toBe('bad_request');
    expect(code(() => h.acquire('b', 'k', { steal: true, acquireTimeout: 0 }))).toBe('bad_request');
    expect(h.holders('k')).toEqual(['a']);
  });

  it('refuses durations outside 0..2147483647 ms', () => {
    const h = engineHarness();
    expect(code(() => h.acquire('a', 'k', { holdTimeout: -1 }))).toBe('bad_request');
    expect(code(() => h.acquire('a', 'k', { acquireTimeout: 2_147_483_648 }))).toBe('bad_request');
    expect(code(() => h.acquire('a', 'k', { holdTimeout: Number.NaN }))).toBe('bad_request');
    expect(h.engine.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });

  it('answers release of a key not held with not_holder and changes nothing', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('b', 'k');
    expect(code(() => h.engine.release('b', 'k', h.now()))).toBe('not_holder');
    expect(code(() => h.engine.release('b', 'nothing', h.now()))).toBe('not_holder');
    expect(h.holders('k')).toEqual(['a']);
    expect(h.queue('k')).toEqual(['b:exclusive']);
  });

  it('issues tokens that rise across every key', () => {
    const h = engineHarness();
    const tokens = [h.hold('a', 'x'), h.hold('a', 'y'), h.hold('b', 'x', { steal: true }), h.hold('c', 'z')];
    expect(tokens).toEqual([1, 2, 3, 4]);
  });
});

describe('steal', () => {
  it('takes the key from every holder and is granted ahead of the queue, which stays', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    h.hold('b', 'k', { mode: 'shared' });
    h.acquire('w', 'k');
    const { outcome, effects } = h.acquire('s', 'k', { steal: true, meta: { who: 's' } });
    expect(outcome).toEqual({ status: 'granted', key: 'k', token: 3, expiresAt: null });
    expect(lines(effects)).toEqual([
      'lost a k t1 stolen',
      'stolen k a t1 h1 w1',
      'lost b k t2 stolen',
      'stolen k b t2 h0 w1',
      'acquired k s t3 h1 w1',
    ]);
    expect(h.queue('k')).toEqual(['w:exclusive']);
    expect(h.engine.status('k', null).holders[0]?.meta).toEqual({ who: 's' });
  });

  it('lets the last of two steals win', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.hold('s1', 'k', { steal: true });
    const { effects } = h.acquire('s2', 'k', { steal: true });
    expect(lines(effects)).toEqual(['lost s1 k t2 stolen', 'stolen k s1 t2 h0 w0', 'acquired k s2 t3 h1 w0']);
    expect(h.holders('k')).toEqual(['s2']);
  });

  it('grants a steal of a free key like a plain acquire', () => {
    const h = engineHarness();
    expect(lines(h.acquire('s', 'k', { steal: true }).effects)).toEqual(['acquired k s t1 h1 w0']);
  });
});

describe('limits', () => {
  it('answers too_many_locks when held plus queued reaches maxLocksPerSession', () => {
    const h = engineHarness({ maxLocksPerSession: 2 });
    h.hold('o', 'q');
    h.hold('a', 'x');
    h.acquire('a', 'q');
    expect(code(() => h.acquire('a', 'y'))).toBe('too_many_locks');
    expect(code(() => h.acquire('a', 'y', { acquireTimeout: 0 }))).toBe('too_many_locks');
    expect(code(() => h.acquire('a', 'z', { steal: true }))).toBe('too_many_locks');
    // A re-acquire adds nothing, so it is still answered.
    expect(h.acquire('a', 'x').outcome.status).toBe('granted');
    // A try-once that is not granted adds nothing either: it is answered not_granted.
    h.hold('o', 'p');
    expect(h.acquire('a', 'p', { acquireTimeout: 0 }).outcome).toEqual({ status: 'not_granted' });
  });

  it('counts queued acquires toward maxLocksPerSession and frees the slot when they leave', () => {
    const h = engineHarness({ maxLocksPerSession: 1 });
    h.hold('o', 'k');
    const ticket = h.nextTicket();
    h.acquire('a', 'k');
    expect(code(() => h.acquire('a', 'free'))).toBe('too_many_locks');
    h.engine.cancel('a', ticket, h.now());
    expect(h.acquire('a', 'free').outcome.status).toBe('granted');
  });

  it('answers too_many_waiters when the queue is full, but never to a try-once acquire', () => {
    const h = engineHarness({ maxWaitersPerKey: 2 });
    h.hold('a', 'k');
    h.acquire('b', 'k');
    h.acquire('c', 'k');
    expect(code(() => h.acquire('d', 'k'))).toBe('too_many_waiters');
    expect(h.acquire('d', 'k', { acquireTimeout: 0 }).outcome).toEqual({ status: 'not_granted' });
    expect(h.queue('k')).toEqual(['b:exclusive', 'c:exclusive']);
    expect(h.engine.inspect().sessions).toBe(3);
  });
});
