import { describe, expect, it } from 'vitest';
import { LockEngine } from '../src/engine/lock-engine.js';
import { createTokenSource } from '../src/engine/token-source.js';
import { createManualClock } from '../src/clock.js';
import { engineHarness, lines } from './engine-harness.js';

describe('wait', () => {
  it('answers free at once when nobody holds the key, without creating anything', () => {
    const h = engineHarness();
    expect(h.wait('w', 'k')).toBe('free');
    expect(h.engine.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });

  it('settles when the holds present at its arrival end, before the next waiter is granted', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    h.acquire('b', 'k');
    const ticket = h.nextTicket();
    expect(h.wait('w', 'k')).toBe('pending');
    expect(h.release('a', 'k')).toEqual([
      'released k a t1 h0 w1',
      `waitDone w #${ticket} free`,
      'granted b #2 k t2',
      'acquired k b t2 h1 w0',
    ]);
    // It never acquired anything.
    expect(h.holders('k')).toEqual(['b']);
    expect(h.engine.inspect().sessions).toBe(1);
  });

  it('ignores holds granted after its arrival and waits for every earlier one', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    h.hold('b', 'k', { mode: 'shared' });
    const ticket = h.nextTicket();
    h.wait('w', 'k');
    h.hold('c', 'k', { mode: 'shared' });
    expect(h.release('a', 'k')).toEqual(['released k a t1 h2 w0']);
    expect(h.release('b', 'k')).toEqual(['released k b t2 h1 w0', `waitDone w #${ticket} free`]);
  });

  it('settles when the holds end by expiry, steal, revoke or disconnect', () => {
    const h = engineHarness();
    h.hold('a', 'e', { holdTimeout: 10 });
    h.hold('a', 's');
    h.hold('a', 'r');
    h.hold('a', 'd');
    const [e, s, r, d] = ['e', 's', 'r', 'd'].map((key) => {
      const ticket = h.nextTicket();
      h.wait('w', key);
      return ticket;
    });
    h.clock.advance(10);
    expect(h.tick()).toContain(`waitDone w #${e} free`);
    expect(lines(h.acquire('x', 's', { steal: true }).effects)).toContain(`waitDone w #${s} free`);
    expect(lines(h.engine.revoke('r', h.now()).effects)).toContain(`waitDone w #${r} free`);
    expect(lines(h.engine.closeSession('a', h.now()))).toContain(`waitDone w #${d} free`);
  });

  it('answers not free when its timeout passes first, then never again', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    const ticket = h.nextTicket();
    h.wait('w', 'k', { timeout: 30 });
    h.clock.advance(29);
    expect(h.tick()).toEqual([]);
    h.clock.advance(1);
    expect(h.tick()).toEqual([`waitDone w #${ticket} timeout`]);
    expect(h.release('a', 'k')).toEqual(['released k a t1 h0 w0']);
    expect(h.engine.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });
});

describe('cancel', () => {
  it('removes a queued acquire, reports it dequeued and grants what it blocked', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    const ticket = h.nextTicket();
    h.acquire('x', 'k', { acquireTimeout: 100 });
    h.acquire('r', 'k', { mode: 'shared' });
    const { cancelled, effects } = h.engine.cancel('x', ticket, h.now());
    expect(cancelled).toBe(true);
    expect(lines(effects)).toEqual(['dequeued k x h1 w1', 'granted r #3 k t2', 'acquired k r t2 h2 w0']);
    expect(h.engine.inspect().pendingDeadlines).toBe(0);
  });

  it('removes a pending wait, which is then never settled', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    const ticket = h.nextTicket();
    h.wait('w', 'k', { timeout: 10 });
    expect(h.engine.cancel('w', ticket, h.now())).toEqual({ cancelled: true, effects: [] });
    expect(h.release('a', 'k')).toEqual(['released k a t1 h0 w0']);
    h.clock.advance(10);
    expect(h.tick()).toEqual([]);
  });

  it('answers false for a ticket that is not pending or belongs to another session', () => {
    const h = engineHarness();
    h.hold('a', 'k');
    const ticket = h.nextTicket();
    h.acquire('b', 'k');
    expect(h.engine.cancel('c', ticket, h.now()).cancelled).toBe(false);
    expect(h.engine.cancel('b', 999, h.now()).cancelled).toBe(false);
    h.release('a', 'k');
    expect(h.engine.cancel('b', ticket, h.now()).cancelled).toBe(false);
    expect(h.holders('k')).toEqual(['b']);
  });
});

describe('revoke', () => {
  it('takes the key from every holder, then grants the queue', () => {
    const h = engineHarness();
    h.hold('a', 'k', { mode: 'shared' });
    h.hold('b', 'k', { mode: 'shared' });
    h.acquire('x', 'k');
    const { revoked, effects } = h.engine.revoke('k', h.now());
    expect(revoked).toBe(2);
    expect(lines(effects)).toEqual([
      'lost a k t1 revoked',
      'revoked k a t1 h1 w1',
      'lost b k t2 revoked',
      'revoked k b t2 h0 w1',
      'granted x #3 k t3',
      'acquired k x t3 h1 w0',
    ]);
    expect(h.engine.revoke('free', h.now())).toEqual({ revoked: 0, effects: [] });
  });
});

describe('closeSession', () => {
  it('removes the queued requests first, then releases the holds, granting next waiters in the same step', () => {
    const h = engineHarness();
    h.hold('o', 'q');
    h.hold('a', 'h1');
    h.hold('a', 'h2', { holdTimeout: 100 });
    h.acquire('a', 'q', { acquireTimeout: 100 });
    h.wait('a', 'q', { timeout: 100 });
    h.acquire('b', 'h1');
    expect(lines(h.engine.closeSession('a', h.now()))).toEqual([
      'dequeued q a h1 w0',
      'released h1 a t2 h0 w1',
      'granted b #6 h1 t4',
      'acquired h1 b t4 h1 w0',
      'released h2 a t3 h0 w0',
    ]);
    expect(h.engine.inspect()).toEqual({ keys: 2, sessions: 2, pendingDeadlines: 0 });
    h.clock.advance(100);
    expect(h.tick()).toEqual([]);
    h.engine.closeSession('o', h.now());
    h.engine.closeSession('b', h.now());
    expect(h.engine.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });

  it('ends the holds as revoked when asked, each lost before the grant it makes room for, after the queued requests left', () => {
    const h = engineHarness();
    h.hold('o', 'q');
    h.hold('a', 'h1');
    h.acquire('a', 'q');
    h.acquire('b', 'h1');
    expect(lines(h.engine.closeSession('a', h.now(), 'revoked'))).toEqual([
      'dequeued q a h1 w0',
      'lost a h1 t2 revoked',
      'revoked h1 a t2 h0 w1',
      'granted b #4 h1 t3',
      'acquired h1 b t3 h1 w0',
    ]);
    expect(h.engine.inspect()).toEqual({ keys: 2, sessions: 2, pendingDeadlines: 0 });
  });

  it('does nothing for an unknown or already closed session', () => {
    const h = engineHarness();
    expect(h.engine.closeSession('nobody', h.now())).toEqual([]);
    h.hold('a', 'k');
    h.engine.closeSession('a', h.now());
    expect(h.engine.closeSession('a', h.now())).toEqual([]);
  });
});

describe('events', () => {
  it('carry the meta of the hold or request, the counts after the change and the time', () => {
    const h = engineHarness();
    const at = h.clock.now();
    const first = h.acquire('a', 'k', { meta: { user: 'ana' } }).effects;
    const queued = h.acquire('b', 'k', { mode: 'shared' }).effects;
    expect([...first, ...queued]).toEqual([
      {
        type: 'event',
        event: {
          key: 'k',
          event: 'acquired',
          session: 'a',
          token: 1,
          mode: 'exclusive',
          meta: { user: 'ana' },
          holders: 1,
          waiters: 0,
          at,
        },
      },
      {
        type: 'event',
        event: { key: 'k', event: 'queued', session: 'b', mode: 'shared', meta: null, holders: 1, waiters: 1, at },
      },
    ]);
    h.clock.advance(5);
    const [released] = h.engine.release('a', 'k', h.now());
    expect(released).toEqual({
      type: 'event',
      event: {
        key: 'k',
        event: 'released',
        session: 'a',
        token: 1,
        mode: 'exclusive',
        meta: { user: 'ana' },
        holders: 0,
        waiters: 1,
        at: at + 5,
      },
    });
  });
});

describe('status and list', () => {
  it('describes holders and the queue in grant order, and heldByYou for a viewer', () => {
    const h = engineHarness();
    const since = h.clock.now();
    h.hold('a', 'k', { mode: 'shared', holdTimeout: 100, meta: { n: 1 } });
    h.clock.advance(1);
    h.acquire('x', 'k');
    h.acquire('r', 'k', { mode: 'shared', meta: { n: 2 } });
    expect(h.engine.status('k', 'a')).toEqual({
      key: 'k',
      locked: true,
      mode: 'shared',
      holders: [{ session: 'a', mode: 'shared', token: 1, since, expiresAt: since + 100, meta: { n: 1 } }],
      queue: [
        { session: 'x', mode: 'exclusive', since: since + 1, meta: null, seq: 1 },
        { session: 'r', mode: 'shared', since: since + 1, meta: { n: 2 }, seq: 2 },
      ],
      heldByYou: true,
    });
    expect(h.engine.status('k', 'x').heldByYou).toBe(false);
    expect('heldByYou' in h.engine.status('k', null)).toBe(false);
  });

  it('shows a free key as unlocked without creating an entry', () => {
    const h = engineHarness();
    expect(h.engine.status('nope', 'a')).toEqual({
      key: 'nope',
      locked: false,
      mode: null,
      holders: [],
      queue: [],
      heldByYou: false,
    });
    expect(h.engine.inspect().keys).toBe(0);
  });

  it('lists locked keys with the prefix in UTF-16 code-unit order, up to the limit', () => {
    const h = engineHarness();
    // U+1F600 is the surrogate pair d83d de00, which sorts before U+FFFF by code unit.
    for (const key of ['doc:\uffff', 'doc:b', 'doc:\u{1F600}', 'doc:a', 'doc:B', 'other', 'doc']) h.hold('a', key);
    const keys = (prefix: string, limit: number) => {
      const result = h.engine.list(prefix, limit, null);
      return { keys: result.locks.map((lock) => lock.key), truncated: result.truncated };
    };
    expect(keys('doc:', 10)).toEqual({ keys: ['doc:B', 'doc:a', 'doc:b', 'doc:\u{1F600}', 'doc:\uffff'], truncated: false });
    expect(keys('doc:', 2)).toEqual({ keys: ['doc:B', 'doc:a'], truncated: true });
    expect(keys('doc:', 5).truncated).toBe(false);
    expect(keys('', 100).keys).toHaveLength(7);
    expect(h.engine.list('doc:a', 1, 'a').locks[0]?.heldByYou).toBe(true);
  });
});

describe('keys', () => {
  it('treats __proto__, constructor, the empty key, NUL and lone surrogates as ordinary, distinct keys', () => {
    const h = engineHarness();
    const keys = ['__proto__', 'constructor', 'toString', '', '\u0000', '\ud800', '\ufffd', 'hasOwnProperty'];
    for (const key of keys) h.hold('a', key);
    for (const key of keys) expect(h.acquire('b', key, { acquireTimeout: 0 }).outcome.status).toBe('not_granted');
    expect(h.engine.list('', 100, null).locks.map((lock) => lock.key).sort()).toEqual([...keys].sort());
    expect(h.engine.status('__proto__', 'a')).toMatchObject({ key: '__proto__', locked: true, heldByYou: true });
    h.engine.closeSession('a', h.now());
    expect(h.engine.inspect()).toEqual({ keys: 0, sessions: 0, pendingDeadlines: 0 });
  });
});

describe('fencing tokens', () => {
  it('keep rising across a restart when seeded from the clock', () => {
    const clock = createManualClock(1_700_000_000_000);
    const limits = { maxLocksPerSession: 10_000, maxWaitersPerKey: 10 };
    const engine = () => new LockEngine({ limits, tokens: createTokenSource() });
    const grant = (e: LockEngine, key: string, ticket: number) => {
      const input = { ticket, key, mode: 'exclusive', acquireTimeout: null, holdTimeout: null, steal: false, meta: null } as const;
      const { outcome } = e.acquire('s', input, { wall: clock.now(), monotonic: clock.monotonic() });
      if (outcome.status !== 'granted') throw new Error('expected a grant');
      return outcome.token;
    };
    const before = engine();
    let last = 0;
    // A burst of 999 grants in one millisecond stays within that millisecond's share.
    for (let i = 0; i < 999; i++) {
      const token = grant(before, `k${i}`, i);
      expect(token).toBeGreaterThan(last);
      last = token;
    }
    clock.advance(1);
    const after = engine();
    expect(grant(after, 'k0', 1)).toBeGreaterThan(last);
    expect(Number.isSafeInteger(last)).toBe(true);
  });
});
