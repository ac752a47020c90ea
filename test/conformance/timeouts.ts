import { describe, expect, it } from 'vitest';
import { MAX_DURATION_MS } from '@lockwire/protocol';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { acquire, enqueue, hold, holdersOf, num, queueOf, status, table, useConformance, watch } from '../helpers/conformance-context.js';

/** Hold timeouts, acquire timeouts and `extend`. */
export function describeTimeouts(target: ConformanceTarget): void {
  describe(`timeouts (${target.name})`, () => {
    const ctx = useConformance(target);

    it('expires a hold after holdTimeout with lost expired, and not a millisecond before', async () => {
      const a = await ctx().connect();
      const { unit } = ctx();
      const token = await hold(a, 'k', { holdTimeout: 2 * unit });
      if (ctx().manual) {
        ctx().elapse(2 * unit - 1);
        expect(await holdersOf(a, 'k')).toEqual([a.session]);
        expect(a.received('lost')).toEqual([]);
      }
      ctx().elapse(unit);
      expect(await a.nextLost('k')).toEqual({ type: 'lost', key: 'k', token, reason: 'expired' });
      expect(await status(a, 'k')).toMatchObject({ locked: false, heldByYou: false });
    });

    it('tells the expired holder before the next waiter is granted, and watchers see expired then acquired', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const w = await ctx().connect();
      const { unit } = ctx();
      // The holder watches its own key, so one socket shows the order of its loss and the grant.
      await watch(a, 'k');
      await watch(w, 'k');
      const token = await hold(a, 'k', { holdTimeout: unit });
      const qb = await enqueue(b, 'k');
      ctx().elapse(unit);
      const granted = await b.reply(qb.id, { timeout: 2000 + unit });
      expect(granted).toMatchObject({ acquired: true });
      const lost = await a.nextLost('k');
      const grantSeenByHolder = await a.next((m) => m.type === 'event' && m.event === 'acquired' && m.session === b.session);
      expect(a.indexOf(lost)).toBeLessThan(a.indexOf(grantSeenByHolder));
      await w.nextEvent('k', 'acquired');
      await w.nextEvent('k', 'queued');
      const expired = await w.nextEvent('k');
      const acquired = await w.nextEvent('k');
      expect(expired).toMatchObject({ event: 'expired', session: a.session, token, holders: 0, waiters: 1 });
      expect(acquired).toMatchObject({ event: 'acquired', session: b.session, token: granted.token, holders: 1, waiters: 0 });
    });

    it('keeps a hold of the largest holdTimeout until its full duration has passed', async () => {
      const a = await ctx().connect();
      const t = ctx().now();
      const reply = await acquire(a, 'k', { holdTimeout: MAX_DURATION_MS });
      ctx().expectTime(reply.expiresAt, t + MAX_DURATION_MS);
      if (ctx().manual) {
        ctx().elapse(MAX_DURATION_MS - 1);
        expect(await holdersOf(a, 'k')).toEqual([a.session]);
        ctx().elapse(1);
        expect(await a.nextLost('k')).toMatchObject({ reason: 'expired' });
      }
    });

    it('rounds a fractional holdTimeout up to the next whole millisecond, on grant and on extend', async () => {
      const a = await ctx().connect();
      const t = ctx().now();
      const reply = await acquire(a, 'k', { holdTimeout: 1000.25 });
      expect(Number.isInteger(reply.expiresAt)).toBe(true);
      ctx().expectTime(reply.expiresAt, t + 1001);
      const extended = await a.request({ op: 'extend', key: 'k', holdTimeout: 2000.5 });
      expect(Number.isInteger(extended.expiresAt)).toBe(true);
      ctx().expectTime(extended.expiresAt, ctx().now() + 2001);
      expect((await status(a, 'k')).holders).toEqual([expect.objectContaining({ expiresAt: extended.expiresAt })]);
    });

    it('answers acquired false when acquireTimeout passes in the queue, and takes the request out of the queue', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      const w = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'k');
      await watch(w, 'k');
      const qb = await enqueue(b, 'k', { acquireTimeout: 2 * unit, meta: { who: 'b' } });
      const qc = await enqueue(c, 'k');
      if (ctx().manual) {
        ctx().elapse(2 * unit - 1);
        expect(await queueOf(a, 'k')).toEqual([b.session, c.session]);
      }
      ctx().elapse(unit);
      const reply = await b.reply(qb.id, { timeout: 2000 + 2 * unit });
      expect(reply).toEqual({ type: 'reply', id: qb.id, ok: true, acquired: false });
      expect(await queueOf(a, 'k')).toEqual([c.session]);
      const dequeued = await w.nextEvent('k', 'dequeued');
      expect(dequeued).toMatchObject({ session: b.session, mode: 'exclusive', meta: { who: 'b' }, holders: 1, waiters: 1 });
      expect(dequeued).not.toHaveProperty('token');
      await a.request({ op: 'release', key: 'k' });
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
    });

    it('extend moves expiresAt to holdTimeout from now, and the hold lasts until then', async () => {
      const a = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'k', { holdTimeout: 2 * unit });
      ctx().elapse(unit);
      const t = ctx().now();
      const reply = await a.request({ op: 'extend', key: 'k', holdTimeout: 3 * unit });
      expect(reply).toEqual({ type: 'reply', id: reply.id, ok: true, expiresAt: reply.expiresAt });
      ctx().expectTime(reply.expiresAt, t + 3 * unit);
      expect((await status(a, 'k')).holders).toEqual([expect.objectContaining({ expiresAt: reply.expiresAt })]);
      if (ctx().manual) {
        ctx().elapse(3 * unit - 1);
        expect(await holdersOf(a, 'k')).toEqual([a.session]);
      }
      ctx().elapse(unit);
      expect(await a.nextLost('k', { timeout: 2000 + 3 * unit })).toMatchObject({ reason: 'expired' });
    });

    it('an extend after the hold\'s deadline, before its timer ran, is not_holder: the hold expires first and the next waiter is granted', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const { unit } = ctx();
      const token = await hold(a, 'k', { holdTimeout: unit });
      const qb = await enqueue(b, 'k');
      ctx().elapseLate(unit);
      const reply = await a.request({ op: 'extend', key: 'k', holdTimeout: 5 * unit });
      expect(reply).toMatchObject({ ok: false, error: { code: 'not_holder' } });
      const lost = await a.nextLost('k');
      expect(lost).toEqual({ type: 'lost', key: 'k', token, reason: 'expired' });
      expect(a.indexOf(lost)).toBeLessThan(a.indexOf(reply));
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      // The timer, run late, finds nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(a, 'k')).toEqual([b.session]);
      expect(a.received('lost')).toHaveLength(1);
      expect(b.received('lost')).toEqual([]);
    });

    it('a release, status or re-acquire by the holder after the hold\'s deadline, before its timer ran, finds the hold expired', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const { unit } = ctx();
      const t1 = await hold(a, 'k1', { holdTimeout: unit });
      const t2 = await hold(a, 'k2', { holdTimeout: unit });
      const t3 = await hold(a, 'k3', { holdTimeout: unit });
      const qb = await enqueue(b, 'k2');
      ctx().elapseLate(unit);

      const released = await a.request({ op: 'release', key: 'k1' });
      expect(released).toMatchObject({ ok: false, error: { code: 'not_holder' } });
      const lost1 = await a.nextLost('k1');
      expect(lost1).toEqual({ type: 'lost', key: 'k1', token: t1, reason: 'expired' });
      expect(a.indexOf(lost1)).toBeLessThan(a.indexOf(released));

      const seen = await status(a, 'k2');
      expect(seen).toMatchObject({ locked: true, heldByYou: false });
      expect((seen.holders as { session: unknown }[]).map((h) => h.session)).toEqual([b.session]);
      const lost2 = await a.nextLost('k2');
      expect(lost2).toEqual({ type: 'lost', key: 'k2', token: t2, reason: 'expired' });
      expect(a.indexOf(lost2)).toBeLessThan(a.indexOf(seen));
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });

      const again = await acquire(a, 'k3', { acquireTimeout: 0 });
      expect(again).toMatchObject({ ok: true, acquired: true, expiresAt: null });
      expect(num(again.token)).toBeGreaterThan(t3);
      const lost3 = await a.nextLost('k3');
      expect(lost3).toEqual({ type: 'lost', key: 'k3', token: t3, reason: 'expired' });
      expect(a.indexOf(lost3)).toBeLessThan(a.indexOf(again));

      // The timers, run late, find nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(a, 'k3')).toEqual([a.session]);
      expect(await holdersOf(a, 'k2')).toEqual([b.session]);
      expect(a.received('lost')).toHaveLength(3);
    });

    it('a list or watch snapshot by the holder after the hold\'s deadline, before its timer ran, shows the hold expired', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const { unit } = ctx();
      const t1 = await hold(a, 'p/k1', { holdTimeout: unit });
      const t2 = await hold(a, 'q/k2', { holdTimeout: unit });
      const qb = await enqueue(b, 'p/k1');
      ctx().elapseLate(unit);

      const listed = await a.request({ op: 'list', prefix: 'p/' });
      const lost1 = await a.nextLost('p/k1');
      expect(lost1).toEqual({ type: 'lost', key: 'p/k1', token: t1, reason: 'expired' });
      expect(a.indexOf(lost1)).toBeLessThan(a.indexOf(listed));
      expect((listed.locks as { key: string; holders: { session: unknown }[] }[]).map((l) => [l.key, l.holders.map((h) => h.session)])).toEqual([
        ['p/k1', [b.session]],
      ]);
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });

      const watched = await watch(a, 'q/');
      const lost2 = await a.nextLost('q/k2');
      expect(lost2).toEqual({ type: 'lost', key: 'q/k2', token: t2, reason: 'expired' });
      expect(a.indexOf(lost2)).toBeLessThan(a.indexOf(watched));
      expect(watched.locks).toEqual([]);

      // The timers, run late, find nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(a, 'p/k1')).toEqual([b.session]);
      expect(a.received('lost')).toHaveLength(2);
      // The expiry came before the snapshot: the watch shows no event of it.
      expect(a.received('event')).toEqual([]);
    });

    /**
     * Shared holds of `k` by `a` and by `b`, a session of a's node (a node ends
     * the due holds of its own sessions before its step of the key), b's
     * deadline first; both passed with their timers held back. `w` watches.
     */
    async function twoDueSharedHolds() {
      const w = await ctx().connect();
      const a = await ctx().connect();
      let b = await ctx().connect();
      while (b.url !== a.url) b = await ctx().connect();
      const { unit } = ctx();
      await watch(w, 'k');
      const ta = await hold(a, 'k', { mode: 'shared', holdTimeout: 2 * unit });
      const tb = await hold(b, 'k', { mode: 'shared', holdTimeout: unit });
      await w.nextEvent('k', 'acquired');
      await w.nextEvent('k', 'acquired');
      ctx().elapseLate(2 * unit);
      return { w, a, b, ta, tb };
    }

    it('ends the holds of a key whose deadlines passed before their timers ran in the order of their deadlines', async () => {
      const { w, a, b, ta, tb } = await twoDueSharedHolds();
      expect(await status(a, 'k')).toMatchObject({ locked: false });
      expect(await w.nextEvent('k')).toMatchObject({ event: 'expired', session: b.session, token: tb, holders: 1 });
      expect(await w.nextEvent('k')).toMatchObject({ event: 'expired', session: a.session, token: ta, holders: 0 });
      // The timers, run late, find nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(w, 'k')).toEqual([]);
    });

    it('a holder that disconnects after its hold\'s deadline, before its timer ran, ends it before a due hold of the key with a later deadline', async () => {
      const { w, a, b, ta, tb } = await twoDueSharedHolds();
      b.terminate();
      expect(await w.nextEvent('k')).toMatchObject({ event: 'expired', session: b.session, token: tb, holders: 1 });
      expect(await a.nextLost('k')).toEqual({ type: 'lost', key: 'k', token: ta, reason: 'expired' });
      expect(await w.nextEvent('k')).toMatchObject({ event: 'expired', session: a.session, token: ta, holders: 0 });
      // The timers, run late, find nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(w, 'k')).toEqual([]);
    });

    it('a release after a waiter\'s acquireTimeout passed, before its timer ran, times the waiter out first: it is not granted', async () => {
      const a = await ctx().connect();
      // A client of a's node: a node times out its own sessions' requests before its step of the key.
      let b = await ctx().connect();
      while (b.url !== a.url) b = await ctx().connect();
      const c = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k', { acquireTimeout: unit });
      const qc = await enqueue(c, 'k');
      ctx().elapseLate(unit);
      expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
      expect(await b.reply(qb.id)).toMatchObject({ ok: true, acquired: false });
      expect(await c.reply(qc.id)).toMatchObject({ ok: true, acquired: true });
      // The timer, run late, finds nothing left to time out.
      ctx().elapse(0);
      expect(await holdersOf(a, 'k')).toEqual([c.session]);
      expect(b.received('reply').filter((r) => r.id === qb.id)).toHaveLength(1);
    });

    it('a release after a wait\'s timeout passed, before its timer ran, ends the wait first: it is answered free false', async () => {
      const a = await ctx().connect();
      // A client of a's node: a node times out its own sessions' requests before its step of the key.
      let b = await ctx().connect();
      while (b.url !== a.url) b = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'k');
      b.send({ op: 'wait', id: 'w', key: 'k', timeout: unit });
      // Read after the wait: it waits on a's hold.
      expect(await holdersOf(b, 'k')).toEqual([a.session]);
      ctx().elapseLate(unit);
      expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
      expect(await b.reply('w')).toMatchObject({ ok: true, free: false });
      // The timer, run late, finds nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(b, 'k')).toEqual([]);
      expect(b.received('reply').filter((r) => r.id === 'w')).toHaveLength(1);
    });

    it('a holder that disconnects after its hold\'s deadline, before its timer ran, ends it expired, not released', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const w = await ctx().connect();
      const { unit } = ctx();
      await watch(w, 'k');
      const token = await hold(a, 'k', { holdTimeout: unit });
      const qb = await enqueue(b, 'k');
      ctx().elapseLate(unit);
      a.terminate();

      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      await w.nextEvent('k', 'acquired');
      await w.nextEvent('k', 'queued');
      const ended = await w.nextEvent('k');
      const acquired = await w.nextEvent('k');
      expect(ended).toMatchObject({ event: 'expired', session: a.session, token, holders: 0, waiters: 1 });
      expect(acquired).toMatchObject({ event: 'acquired', session: b.session, holders: 1, waiters: 0 });
      // The timer, run late, finds nothing left to end.
      ctx().elapse(0);
      expect(await holdersOf(w, 'k')).toEqual([b.session]);
    });

    it('extend with holdTimeout null removes the expiry', async () => {
      const a = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'k', { holdTimeout: 2 * unit });
      expect(await a.request({ op: 'extend', key: 'k', holdTimeout: null })).toMatchObject({ ok: true, expiresAt: null });
      ctx().elapse(3 * unit);
      if (!ctx().manual) {
        // On real time, an expiry would have fired by the time this round trip returns after the old deadline.
        const b = await ctx().connect();
        expect(await acquire(b, 'k', { acquireTimeout: 3 * unit })).toMatchObject({ acquired: false });
      }
      expect(await holdersOf(a, 'k')).toEqual([a.session]);
      expect(a.received('lost')).toEqual([]);
    });

    it('extend without holdTimeout is bad_request, and by a non-holder is not_holder; neither changes anything', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k', { holdTimeout: 5 * ctx().unit });
      await enqueue(b, 'k');
      const before = await table(a);
      expect(await a.request({ op: 'extend', key: 'k' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await b.request({ op: 'extend', key: 'k', holdTimeout: 1 })).toMatchObject({
        ok: false,
        error: { code: 'not_holder' },
      });
      expect(await b.request({ op: 'extend', key: 'free', holdTimeout: 1 })).toMatchObject({
        ok: false,
        error: { code: 'not_holder' },
      });
      expect(await table(a)).toEqual(before);
    });

    it('release by a non-holder is not_holder and changes nothing', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      await enqueue(b, 'k');
      const before = await table(a);
      const reply = await b.request({ op: 'release', key: 'k' });
      expect(reply).toMatchObject({ ok: false, error: { code: 'not_holder' } });
      expect(typeof (reply.error as { message: unknown }).message).toBe('string');
      expect(await b.request({ op: 'release', key: 'free' })).toMatchObject({ ok: false, error: { code: 'not_holder' } });
      expect(await table(a)).toEqual(before);
    });

    it('a second release of the same hold is not_holder', async () => {
      const a = await ctx().connect();
      await hold(a, 'k');
      expect(await a.request({ op: 'release', key: 'k' })).toEqual({
        type: 'reply',
        id: expect.anything(),
        ok: true,
        released: true,
      });
      expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: false, error: { code: 'not_holder' } });
    });
  });
}
