import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { acquire, enqueue, hold, holdersOf, queueOf, status, table, useConformance, watch } from '../helpers/conformance-context.js';

/** Per-key FIFO queues, shared runs and the no-barging rule. */
export function describeQueue(target: ConformanceTarget): void {
  describe(`queue (${target.name})`, () => {
    const ctx = useConformance(target);

    it('sends queued once with the position in line, and grants waiters in arrival order', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const qc = await enqueue(c, 'k', { mode: 'shared' });
      expect(qb.queued).toEqual({ type: 'queued', id: qb.id, key: 'k', position: 1 });
      expect(qc.queued).toEqual({ type: 'queued', id: qc.id, key: 'k', position: 2 });
      expect(await queueOf(a, 'k')).toEqual([b.session, c.session]);

      await a.request({ op: 'release', key: 'k' });
      const gb = await b.reply(qb.id);
      expect(gb).toMatchObject({ ok: true, acquired: true });
      expect(await holdersOf(a, 'k')).toEqual([b.session]);
      await b.request({ op: 'release', key: 'k' });
      expect(await c.reply(qc.id)).toMatchObject({ ok: true, acquired: true });
      expect(b.received('queued')).toHaveLength(1);
      expect(c.received('queued')).toHaveLength(1);
      expect(b.indexOf(qb.queued)).toBeLessThan(b.indexOf(gb));
    });

    it('grants the queue head in the release step, so a release followed at once by an acquire of the releaser does not overtake', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      // Both frames leave together: the server sees the acquire right after the release.
      const released = a.request({ op: 'release', key: 'k' });
      const retry = a.request({ op: 'acquire', key: 'k', acquireTimeout: 0 });
      expect(await released).toMatchObject({ ok: true, released: true });
      expect(await retry).toMatchObject({ ok: true, acquired: false });
      expect(await b.reply(qb.id)).toMatchObject({ ok: true, acquired: true });
      expect(await holdersOf(a, 'k')).toEqual([b.session]);
    });

    it('never lets a newcomer overtake a waiter around a release, whichever frame the server sees first', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const released = a.request({ op: 'release', key: 'k' });
      const newcomer = c.request({ op: 'acquire', key: 'k', acquireTimeout: 0 });
      await released;
      expect(await newcomer).toMatchObject({ ok: true, acquired: false });
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
    });

    it('queues a newcomer behind waiters and grants it only after them', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const released = a.request({ op: 'release', key: 'k' });
      const cid = c.id();
      c.send({ op: 'acquire', id: cid, key: 'k' });
      await released;
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      // Its position depends on whether it arrived before or after the release; it queues either way.
      expect(await c.next((m) => m.type === 'queued' && m.id === cid)).toMatchObject({ key: 'k' });
      expect(await holdersOf(a, 'k')).toEqual([b.session]);
      await b.request({ op: 'release', key: 'k' });
      expect(await c.reply(cid)).toMatchObject({ acquired: true });
    });

    it('grants a run of shared waiters together, stopping at the first exclusive one', async () => {
      const w = await ctx().connect();
      const [a, b, c, d, e] = [await ctx().connect(), await ctx().connect(), await ctx().connect(), await ctx().connect(), await ctx().connect()];
      await watch(w, 'k');
      await hold(a, 'k');
      const qb = await enqueue(b, 'k', { mode: 'shared' });
      const qc = await enqueue(c, 'k', { mode: 'shared' });
      const qd = await enqueue(d, 'k');
      const qe = await enqueue(e, 'k', { mode: 'shared' });
      await a.request({ op: 'release', key: 'k' });
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
      await w.nextEvent('k', 'acquired');
      const released = await w.nextEvent('k', 'released');
      const first = await w.nextEvent('k', 'acquired');
      const second = await w.nextEvent('k', 'acquired');
      expect([first.session, second.session].sort()).toEqual([b.session, c.session].sort());
      expect([first.holders, second.holders]).toEqual([1, 2]);
      expect(w.indexOf(released)).toBeLessThan(w.indexOf(first));
      expect(w.indexOf(second)).toBe(w.indexOf(first) + 1);
      expect(await queueOf(w, 'k')).toEqual([d.session, e.session]);
      expect(d.messages.some((m) => m.type === 'reply' && m.id === qd.id)).toBe(false);
      expect(e.messages.some((m) => m.type === 'reply' && m.id === qe.id)).toBe(false);
    });

    it('lets an exclusive waiter behind shared holders block later shared requests', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k', { mode: 'shared' });
      const qb = await enqueue(b, 'k');
      const qc = await enqueue(c, 'k', { mode: 'shared' });
      expect(qc.queued).toMatchObject({ position: 2 });
      await a.request({ op: 'release', key: 'k' });
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      expect(await queueOf(a, 'k')).toEqual([c.session]);
      await b.request({ op: 'release', key: 'k' });
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
    });

    it('answers acquireTimeout 0 with acquired false whenever anything is queued, even for a compatible request, and never queues it', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k', { mode: 'shared' });
      await enqueue(b, 'k');
      const before = await table(c);
      const reply = await acquire(c, 'k', { mode: 'shared', acquireTimeout: 0 });
      expect(reply).toEqual({ type: 'reply', id: reply.id, ok: true, acquired: false });
      expect(c.received('queued')).toEqual([]);
      expect(await table(c)).toEqual(before);
      expect(await queueOf(a, 'k')).toEqual([b.session]);
    });

    it('grants acquireTimeout 0 on a free key and on a shared key with an empty queue', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      expect(await acquire(a, 'free', { acquireTimeout: 0 })).toMatchObject({ acquired: true });
      await hold(a, 's', { mode: 'shared' });
      expect(await acquire(b, 's', { mode: 'shared', acquireTimeout: 0 })).toMatchObject({ acquired: true });
      expect((await status(a, 's')).holders).toHaveLength(2);
    });

    it('numbers each queued request in status and list by arrival, and a session that leaves and queues again gets a new, larger number', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      const first = await enqueue(b, 'k');
      await enqueue(c, 'k', { mode: 'shared' });
      const seqs = async () => ((await status(a, 'k')).queue as { session: string; seq: number }[]).map((w) => [w.session, w.seq]);
      const before = await seqs();
      const [[, bSeq], [, cSeq]] = before as [[string, number], [string, number]];
      expect(Number.isSafeInteger(bSeq) && Number.isSafeInteger(cSeq) && cSeq > bSeq).toBe(true);
      // Left and queued again, within the millisecond on a clock that stands still: a new request, with a new number.
      expect(await b.request({ op: 'cancel', target: first.id })).toMatchObject({ ok: true, cancelled: true });
      await enqueue(b, 'k');
      const after = await seqs();
      expect(after[0]).toEqual([c.session, cSeq]);
      const [, bAgain] = after[1] as [string, number];
      expect(after[1]?.[0]).toBe(b.session);
      expect(bAgain).toBeGreaterThan(cSeq);
      const listed = await a.request({ op: 'list', prefix: 'k' });
      const locks = listed.locks as { key: string; queue: { seq: number }[] }[];
      expect(locks.find((lock) => lock.key === 'k')?.queue.map((w) => w.seq)).toEqual([cSeq, bAgain]);
    });
  });
}
