import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { enqueue, hold, holdersOf, queueOf, status, table, useConformance } from '../helpers/conformance-context.js';

/** `wait` and `cancel`. */
export function describeWaitCancel(target: ConformanceTarget): void {
  describe(`wait and cancel (${target.name})`, () => {
    const ctx = useConformance(target);

    it('wait on a free key answers free at once and acquires nothing', async () => {
      const a = await ctx().connect();
      const reply = await a.request({ op: 'wait', key: 'k' });
      expect(reply).toEqual({ type: 'reply', id: reply.id, ok: true, free: true });
      expect(await status(a, 'k')).toMatchObject({ locked: false, heldByYou: false, holders: [], queue: [] });
    });

    it('wait answers free once the hold ends, and acquires nothing', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      const id = b.id();
      b.send({ op: 'wait', id, key: 'k', timeout: null });
      expect(await queueOf(b, 'k')).toEqual([]);
      await a.request({ op: 'release', key: 'k' });
      expect(await b.reply(id)).toMatchObject({ ok: true, free: true });
      expect(await status(b, 'k')).toMatchObject({ locked: false, heldByYou: false });
    });

    it('wait answers free when the holds end even though a queued acquirer takes the key in the same step', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const id = c.id();
      c.send({ op: 'wait', id, key: 'k' });
      expect(await status(c, 'k')).toMatchObject({ locked: true });
      await a.request({ op: 'release', key: 'k' });
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      expect(await c.reply(id)).toMatchObject({ ok: true, free: true });
      expect(await holdersOf(c, 'k')).toEqual([b.session]);
    });

    it('wait ends when the holds present at its arrival end, not later shared holds', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k', { mode: 'shared' });
      const id = c.id();
      c.send({ op: 'wait', id, key: 'k' });
      expect(await status(c, 'k')).toMatchObject({ locked: true });
      await hold(b, 'k', { mode: 'shared' });
      expect(c.messages.some((m) => m.type === 'reply' && m.id === id)).toBe(false);
      await a.request({ op: 'release', key: 'k' });
      expect(await c.reply(id)).toMatchObject({ ok: true, free: true });
    });

    it('wait answers free false when its timeout passes first', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'k');
      const id = b.id();
      b.send({ op: 'wait', id, key: 'k', timeout: 2 * unit });
      expect(await status(b, 'k')).toMatchObject({ locked: true });
      if (ctx().manual) {
        ctx().elapse(2 * unit - 1);
        expect(await status(b, 'k')).toMatchObject({ locked: true });
        expect(b.messages.some((m) => m.type === 'reply' && m.id === id)).toBe(false);
      }
      ctx().elapse(unit);
      expect(await b.reply(id, { timeout: 2000 + 2 * unit })).toEqual({ type: 'reply', id, ok: true, free: false });
      expect(await holdersOf(b, 'k')).toEqual([a.session]);
    });

    it('cancel of a queued acquire answers it cancelled first, then the cancel, and leaves the queue', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const w = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      await w.request({ op: 'watch', prefix: 'k' });
      const cancel = await b.request({ op: 'cancel', target: qb.id });
      expect(cancel).toEqual({ type: 'reply', id: cancel.id, ok: true, cancelled: true });
      const cancelled = await b.reply(qb.id);
      expect(cancelled).toMatchObject({ type: 'reply', id: qb.id, ok: false, error: { code: 'cancelled' } });
      expect(b.indexOf(cancelled)).toBeLessThan(b.indexOf(cancel));
      expect(await queueOf(a, 'k')).toEqual([]);
      expect(await w.nextEvent('k', 'dequeued')).toMatchObject({ session: b.session, waiters: 0 });
      await a.request({ op: 'release', key: 'k' });
      expect(await status(a, 'k')).toMatchObject({ locked: false });
      expect(b.messages.filter((m) => m.type === 'reply' && m.id === qb.id)).toHaveLength(1);
    });

    it('cancel of a pending wait answers it cancelled first, then the cancel', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      const id = 'wait-1';
      b.send({ op: 'wait', id, key: 'k' });
      expect(await status(b, 'k')).toMatchObject({ locked: true });
      const cancel = await b.request({ op: 'cancel', target: id });
      expect(cancel).toMatchObject({ ok: true, cancelled: true });
      const cancelled = await b.reply(id);
      expect(cancelled).toMatchObject({ ok: false, error: { code: 'cancelled' } });
      expect(b.indexOf(cancelled)).toBeLessThan(b.indexOf(cancel));
      await a.request({ op: 'release', key: 'k' });
      expect(await status(b, 'k')).toMatchObject({ locked: false });
      expect(b.messages.filter((m) => m.type === 'reply' && m.id === id)).toHaveLength(1);
    });

    it('cancel of nothing pending answers cancelled false and changes nothing', async () => {
      const a = await ctx().connect();
      const granted = await a.request({ op: 'acquire', key: 'k' });
      const before = await table(a);
      expect(await a.request({ op: 'cancel', target: 999 })).toMatchObject({ ok: true, cancelled: false });
      expect(await a.request({ op: 'cancel', target: granted.id as number })).toMatchObject({
        ok: true,
        cancelled: false,
      });
      expect(await table(a)).toEqual(before);
    });

    it('cancel only reaches requests of its own session', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      expect(await c.request({ op: 'cancel', target: qb.id })).toMatchObject({ ok: true, cancelled: false });
      expect(await queueOf(a, 'k')).toEqual([b.session]);
    });
  });
}
