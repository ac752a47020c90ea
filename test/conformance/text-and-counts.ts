import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { acquire, enqueue, hold, num, status, useConformance, watch } from '../helpers/conformance-context.js';

const NASTY = 'q"b\\s/\u0000\u0001\u001f\u007f\n\r\t\u2028\u2029\ud83d\ude00\ud800\udc00 é';
const META = { s: NASTY, empty: '', nested: { a: ['"', '\\', '\\"', '\u0000'], b: { '"k\\': NASTY } }, n: 1.5, t: true, z: null };
const KEY = `k${NASTY}`;

/** Keys and meta of any characters kept exactly through every step, and the holder and waiter counts events carry. */
export function describeTextAndCounts(target: ConformanceTarget): void {
  describe(`JSON text and counts (${target.name})`, () => {
    const ctx = useConformance(target);

    it('carries meta and keys with quotes, backslashes, controls and surrogates through grant, queue, extend, steal and events', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await watch(w, '');
      const ta = await hold(a, KEY, { meta: META, holdTimeout: 100 * ctx().unit });
      expect(await w.nextEvent(KEY, 'acquired')).toMatchObject({ key: KEY, session: a.session, token: ta, meta: META, holders: 1, waiters: 0 });
      const qb = await enqueue(b, KEY, { meta: { x: NASTY } });
      expect(await w.nextEvent(KEY, 'queued')).toMatchObject({ key: KEY, session: b.session, meta: { x: NASTY }, holders: 1, waiters: 1 });
      expect(await a.request({ op: 'extend', key: KEY, holdTimeout: 200 * ctx().unit })).toMatchObject({ ok: true });
      const seen = await status(c, KEY);
      expect(seen.holders).toEqual([expect.objectContaining({ session: a.session, token: ta, meta: META })]);
      expect(seen.queue).toEqual([expect.objectContaining({ session: b.session, meta: { x: NASTY } })]);
      await a.request({ op: 'release', key: KEY });
      expect(await w.nextEvent(KEY, 'released')).toMatchObject({ key: KEY, meta: META, holders: 0, waiters: 1 });
      expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
      expect(await w.nextEvent(KEY, 'acquired')).toMatchObject({ session: b.session, meta: { x: NASTY }, holders: 1, waiters: 0 });
      const tc = await hold(c, KEY, { steal: true, meta: {} });
      expect(await b.nextLost(KEY)).toMatchObject({ reason: 'stolen' });
      expect(await w.nextEvent(KEY, 'stolen')).toMatchObject({ session: b.session, meta: { x: NASTY }, holders: 0 });
      expect(await w.nextEvent(KEY, 'acquired')).toMatchObject({ session: c.session, token: tc, meta: {}, holders: 1 });
      expect((await status(a, KEY)).holders).toEqual([expect.objectContaining({ meta: {} })]);
    });

    it('counts shared holders in events through release of one, steal, revoke and expiry', async () => {
      const w = await ctx().connect();
      const s = [await ctx().connect(), await ctx().connect(), await ctx().connect()];
      const x = await ctx().connect();
      await watch(w, '');
      for (const [i, cl] of s.entries()) {
        await hold(cl, 'k', { mode: 'shared' });
        expect(await w.nextEvent('k', 'acquired')).toMatchObject({ session: cl.session, holders: i + 1 });
      }
      await s[1]!.request({ op: 'release', key: 'k' });
      expect(await w.nextEvent('k', 'released')).toMatchObject({ holders: 2 });
      const qx = await enqueue(x, 'k');
      expect(await w.nextEvent('k', 'queued')).toMatchObject({ holders: 2, waiters: 1 });
      await s[0]!.request({ op: 'release', key: 'k' });
      expect(await w.nextEvent('k', 'released')).toMatchObject({ holders: 1, waiters: 1 });
      await s[2]!.request({ op: 'release', key: 'k' });
      expect(await w.nextEvent('k', 'released')).toMatchObject({ holders: 0, waiters: 1 });
      expect(await x.reply(qx.id)).toMatchObject({ acquired: true });
      expect(await w.nextEvent('k', 'acquired')).toMatchObject({ session: x.session, holders: 1, waiters: 0 });
      await x.request({ op: 'release', key: 'k' });
      expect(await w.nextEvent('k', 'released')).toMatchObject({ holders: 0, waiters: 0 });
      // shared again, steal by exclusive
      await hold(s[0]!, 'k', { mode: 'shared' });
      await hold(s[1]!, 'k', { mode: 'shared' });
      await hold(x, 'k', { steal: true });
      const evs = [];
      for (let i = 0; i < 5; i++) evs.push(await w.nextEvent('k'));
      const tail = evs.slice(-3).map((e) => [e.event, e.holders]);
      expect(tail).toEqual([['stolen', 1], ['stolen', 0], ['acquired', 1]]);
      expect(await acquire(s[2]!, 'k', { acquireTimeout: 0 })).toMatchObject({ acquired: false });
      // shared via steal, then shared joins, then revoke
      await x.request({ op: 'release', key: 'k' });
      await hold(s[0]!, 'k', { mode: 'shared' });
      await hold(s[1]!, 'k', { mode: 'shared' });
      await hold(s[2]!, 'k', { mode: 'shared', holdTimeout: ctx().unit });
      expect((await status(w, 'k')).holders).toHaveLength(3);
      ctx().elapse(ctx().unit);
      expect(await s[2]!.nextLost('k')).toMatchObject({ reason: 'expired' });
      let e;
      do e = await w.nextEvent('k'); while (e.event !== 'expired');
      expect(e).toMatchObject({ holders: 2 });
      expect(await w.request({ op: 'revoke', key: 'k' })).toMatchObject({ ok: true, revoked: 2 });
      expect(await w.nextEvent('k', 'revoked')).toMatchObject({ holders: 1 });
      expect(await w.nextEvent('k', 'revoked')).toMatchObject({ holders: 0 });
      expect(await acquire(x, 'k', { acquireTimeout: 0 })).toMatchObject({ acquired: true });
    });

    it('a watch opened on the holder\'s node while its acquire or release is in flight misses no step', async () => {
      const n = ctx().instance.urls.length;
      const a = await ctx().connect();
      for (let i = 1; i < n; i++) await ctx().connect();
      const w = await ctx().connect(); // same node as a
      for (let round = 0; round < 40; round++) {
        const key = `r${round}`;
        const acq = a.request({ op: 'acquire', key });
        const snap = w.request({ op: 'watch', prefix: key });
        const [granted, shot] = await Promise.all([acq, snap]);
        expect(granted).toMatchObject({ acquired: true });
        const listed = (shot.locks as { key: string }[]).some((l) => l.key === key);
        const rel = a.request({ op: 'release', key });
        if (!listed) expect(await w.nextEvent(key, 'acquired', { timeout: 2000 })).toMatchObject({ key });
        await rel;
        expect(await w.nextEvent(key, 'released', { timeout: 2000 })).toMatchObject({ key, holders: 0 });
        await w.request({ op: 'unwatch', prefix: key });
      }
    });
  });
}
