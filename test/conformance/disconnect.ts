import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { RawSocket } from '../helpers/raw-socket.js';
import { acquire, enqueue, hold, holdersOf, queueOf, status, useConformance, watch } from '../helpers/conformance-context.js';

/** The disconnect rule: queued requests leave first, then holds are released and handed over. */
export function describeDisconnect(target: ConformanceTarget): void {
  describe(`disconnect (${target.name})`, () => {
    const ctx = useConformance(target);

    for (const how of ['a clean close', 'a terminated connection'] as const) {
      it(`${how} removes the session's queued requests first, then releases its holds granting the next waiter in the same step`, async () => {
        const w = await ctx().connect();
        const a = await ctx().connect();
        const b = await ctx().connect();
        const c = await ctx().connect();
        await watch(w, '');
        const token = await hold(a, 'k1', { meta: { who: 'a' } });
        await hold(b, 'k2');
        await enqueue(a, 'k2', { mode: 'shared' });
        const qc = await enqueue(c, 'k1');
        if (how === 'a clean close') await a.close();
        else a.terminate();

        expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
        const dequeued = await w.nextEvent('k2', 'dequeued');
        const released = await w.nextEvent('k1', 'released');
        const acquired = await w.next(
          (m) => m.type === 'event' && m.key === 'k1' && m.event === 'acquired' && m.session === c.session,
        );
        expect(dequeued).toMatchObject({ session: a.session, mode: 'shared', holders: 1, waiters: 0 });
        expect(released).toMatchObject({ session: a.session, token, meta: { who: 'a' }, holders: 0, waiters: 1 });
        expect(acquired).toMatchObject({ event: 'acquired', holders: 1, waiters: 0 });
        // k1 and k2 may live on different shards of a cluster, whose
        // broadcasts a watcher can receive in either order.
        if (target.crossKeyEventOrder !== false) expect(w.indexOf(dequeued)).toBeLessThan(w.indexOf(released));
        expect(w.indexOf(acquired)).toBe(w.indexOf(released) + 1);
        expect(await holdersOf(w, 'k2')).toEqual([b.session]);
        expect(await queueOf(w, 'k2')).toEqual([]);
        expect(await holdersOf(w, 'k1')).toEqual([c.session]);
      });
    }

    it('a disconnect ends one shared hold and leaves the others', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await watch(w, 's');
      await hold(a, 's', { mode: 'shared' });
      await hold(b, 's', { mode: 'shared' });
      const qc = await enqueue(c, 's');
      a.terminate();
      expect(await w.nextEvent('s', 'released')).toMatchObject({ session: a.session, holders: 1, waiters: 1 });
      expect(await holdersOf(w, 's')).toEqual([b.session]);
      expect(await queueOf(w, 's')).toEqual([c.session]);
      await b.request({ op: 'release', key: 's' });
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
    });

    it('a disconnect leaves a key nobody waits for free', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      await watch(w, 'k');
      await hold(a, 'k');
      await a.close();
      expect(await w.nextEvent('k', 'released')).toMatchObject({ session: a.session, holders: 0, waiters: 0 });
      expect(await status(w, 'k')).toMatchObject({ locked: false, holders: [], queue: [] });
    });

    it('requests sent just before a terminate leave nothing held or queued behind', async () => {
      const b = await ctx().connect();
      const a = await ctx().connect();
      await hold(b, 'q');
      a.send({ op: 'acquire', id: 1, key: 'k' });
      a.send({ op: 'acquire', id: 2, key: 'q' });
      a.send({ op: 'wait', id: 3, key: 'q' });
      a.terminate();
      // If the dead session's acquire of k were granted, this would never be.
      expect(await acquire(b, 'k', { acquireTimeout: null })).toMatchObject({ acquired: true });
      const c = await ctx().connect();
      const qc = await enqueue(c, 'q');
      await b.request({ op: 'release', key: 'q' });
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
      expect(await queueOf(c, 'q')).toEqual([]);
    });

    it('a server closing answers pending requests shutting_down, then closes every connection with 1001', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const waitId = b.id();
      b.send({ op: 'wait', id: waitId, key: 'k' });
      expect(await status(b, 'k')).toMatchObject({ locked: true });
      const closing = ctx().instance.close();
      const refused = await b.reply(qb.id);
      const waitRefused = await b.reply(waitId);
      expect(refused).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
      expect(waitRefused).toMatchObject({ ok: false, error: { code: 'shutting_down' } });
      expect((await b.nextClose()).code).toBe(1001);
      expect((await a.nextClose()).code).toBe(1001);
      await closing;
      expect(b.messages.filter((m) => m.type === 'reply' && m.id === qb.id)).toHaveLength(1);
    });

    it('frames that follow the close frame change nothing', async () => {
      const w = await ctx().connect();
      await watch(w, '');
      const url = ctx().instance.urls[0];
      if (url === undefined) throw new Error('no url');
      const raw = await RawSocket.open(url);
      try {
        raw.write(RawSocket.json({ op: 'acquire', id: 1, key: 'held' }));
        const grant = await w.nextEvent('held', 'acquired');
        raw.write(
          RawSocket.closeFrame(1000),
          RawSocket.json({ op: 'acquire', id: 2, key: 'late' }),
          RawSocket.json({ op: 'release', id: 3, key: 'held' }),
        );
        expect(await w.nextEvent('held', 'released')).toMatchObject({ session: grant.session, token: grant.token });
        const token = (await acquire(w, 'late', { acquireTimeout: 0 })).token;
        expect(token).toEqual(expect.any(Number));
        await w.nextEvent('late', 'acquired');
        expect(w.received('event').filter((e) => e.key === 'late')).toEqual([
          expect.objectContaining({ event: 'acquired', session: w.session, token }),
        ]);
        expect(w.received('event').filter((e) => e.key === 'held').map((e) => e.event)).toEqual(['acquired', 'released']);
      } finally {
        raw.destroy();
      }
    });
  });
}
