import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { acquire, enqueue, hold, holdersOf, num, queueOf, table, useConformance, watch } from '../helpers/conformance-context.js';

/** `steal`, and `revoke` which also takes holds away. */
export function describeSteal(target: ConformanceTarget): void {
  describe(`steal and revoke (${target.name})`, () => {
    const ctx = useConformance(target);

    it('steal sends lost stolen to the holder and grants the stealer at once, ahead of the queue', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      const token = await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const stolen = await acquire(c, 'k', { steal: true });
      expect(stolen).toMatchObject({ ok: true, acquired: true });
      expect(num(stolen.token)).toBeGreaterThan(token);
      expect(await a.nextLost('k')).toEqual({ type: 'lost', key: 'k', token, reason: 'stolen' });
      expect(await holdersOf(a, 'k')).toEqual([c.session]);
      expect(await queueOf(a, 'k')).toEqual([b.session]);
      expect(b.messages.some((m) => m.type === 'reply' && m.id === qb.id)).toBe(false);
      expect(await a.request({ op: 'release', key: 'k' })).toMatchObject({ ok: false, error: { code: 'not_holder' } });
    });

    it('steal takes a key from every shared holder', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      const ta = await hold(a, 'k', { mode: 'shared' });
      const tb = await hold(b, 'k', { mode: 'shared' });
      await hold(c, 'k', { steal: true });
      expect(await a.nextLost('k')).toMatchObject({ token: ta, reason: 'stolen' });
      expect(await b.nextLost('k')).toMatchObject({ token: tb, reason: 'stolen' });
      expect(await holdersOf(a, 'k')).toEqual([c.session]);
    });

    it('steal of a free key is an ordinary grant', async () => {
      const a = await ctx().connect();
      await hold(a, 'k', { steal: true });
      expect(await holdersOf(a, 'k')).toEqual([a.session]);
    });

    it('a second steal wins over the first', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const tb = await hold(b, 'k', { steal: true });
      const tc = await hold(c, 'k', { steal: true });
      expect(tc).toBeGreaterThan(tb);
      expect(await b.nextLost('k')).toMatchObject({ token: tb, reason: 'stolen' });
      expect(await holdersOf(a, 'k')).toEqual([c.session]);
    });

    // A steal sent right after the session's cancel of its queued acquire of the key goes once that cancel is
    // applied; the session's requests of the key sent after the steal are applied after it, as they were sent.
    it('a release sent right after a steal that follows a cancel of the key releases the stolen hold', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(b, 'k');
      const queued = await enqueue(a, 'k');
      a.send({ op: 'cancel', id: 'c', target: queued.id });
      a.send({ op: 'acquire', id: 's', key: 'k', steal: true });
      a.send({ op: 'release', id: 'r', key: 'k' });
      a.send({ op: 'status', id: 'st', key: 'k' });
      expect(await a.reply('c')).toMatchObject({ ok: true, cancelled: true });
      expect(await a.reply('s')).toMatchObject({ ok: true, acquired: true });
      expect(await a.reply('r')).toMatchObject({ ok: true, released: true });
      expect(await a.reply('st')).toMatchObject({ ok: true, locked: false });
      expect(await b.nextLost('k')).toMatchObject({ reason: 'stolen' });
    });

    it('an extend, then a release, sent right after a steal that follows a cancel of the key apply to the stolen hold', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(b, 'k');
      const queued = await enqueue(a, 'k');
      a.send({ op: 'cancel', id: 'c', target: queued.id });
      a.send({ op: 'acquire', id: 's', key: 'k', steal: true });
      a.send({ op: 'extend', id: 'x', key: 'k', holdTimeout: 60_000 });
      a.send({ op: 'release', id: 'r', key: 'k' });
      a.send({ op: 'acquire', id: 'again', key: 'k' });
      expect(await a.reply('c')).toMatchObject({ ok: true, cancelled: true });
      const stolen = await a.reply('s');
      expect(stolen).toMatchObject({ ok: true, acquired: true });
      expect(await a.reply('x')).toMatchObject({ ok: true, expiresAt: expect.any(Number) });
      expect(await a.reply('r')).toMatchObject({ ok: true, released: true });
      const again = await a.reply('again');
      expect(again).toMatchObject({ ok: true, acquired: true });
      expect(num(again.token)).toBeGreaterThan(num(stolen.token));
      expect(await holdersOf(a, 'k')).toEqual([a.session]);
    });

    it('shows watchers stolen for the old holder, then acquired for the stealer', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      const b = await ctx().connect();
      await watch(w, 'k');
      const ta = await hold(a, 'k', { meta: { who: 'a' } });
      const tb = await hold(b, 'k', { steal: true });
      const acquiredA = await w.nextEvent('k', 'acquired');
      const stolen = await w.nextEvent('k');
      const acquiredB = await w.nextEvent('k');
      expect(acquiredA).toMatchObject({ session: a.session, token: ta });
      expect(stolen).toMatchObject({ event: 'stolen', session: a.session, token: ta, meta: { who: 'a' }, holders: 0 });
      expect(acquiredB).toMatchObject({ event: 'acquired', session: b.session, token: tb, holders: 1 });
    });

    it('rejects steal with shared mode, and steal with acquireTimeout 0, as bad_request', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      const before = await table(b);
      expect(await acquire(b, 'k', { steal: true, mode: 'shared' })).toMatchObject({
        ok: false,
        error: { code: 'bad_request' },
      });
      expect(await acquire(b, 'k', { steal: true, acquireTimeout: 0 })).toMatchObject({
        ok: false,
        error: { code: 'bad_request' },
      });
      expect(a.received('lost')).toEqual([]);
      expect(await table(b)).toEqual(before);
    });

    it('revoke takes every hold away with lost revoked, answers the count, and grants the queue', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await watch(w, 'k');
      const ta = await hold(a, 'k', { mode: 'shared' });
      const tb = await hold(b, 'k', { mode: 'shared' });
      const qc = await enqueue(c, 'k');
      expect(await w.request({ op: 'revoke', key: 'k' })).toMatchObject({ ok: true, revoked: 2 });
      expect(await a.nextLost('k')).toEqual({ type: 'lost', key: 'k', token: ta, reason: 'revoked' });
      expect(await b.nextLost('k')).toEqual({ type: 'lost', key: 'k', token: tb, reason: 'revoked' });
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
      const revoked1 = await w.nextEvent('k', 'revoked');
      const revoked2 = await w.nextEvent('k', 'revoked');
      const granted = await w.next((m) => m.type === 'event' && m.event === 'acquired' && m.session === c.session);
      expect([revoked1.session, revoked2.session].sort()).toEqual([a.session, b.session].sort());
      expect([revoked1.holders, revoked2.holders]).toEqual([1, 0]);
      expect(granted).toMatchObject({ session: c.session, holders: 1, waiters: 0 });
      expect(w.indexOf(revoked2)).toBeLessThan(w.indexOf(granted));
    });

    it('revoke of a free key answers revoked 0', async () => {
      const a = await ctx().connect();
      expect(await a.request({ op: 'revoke', key: 'nothing' })).toMatchObject({ ok: true, revoked: 0 });
    });
  });
}
