import { describe, expect, it } from 'vitest';
import { signToken } from '../../server/src/cli-token.js';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { enqueue, hold, holdersOf, queueOf, useConformance, watch } from '../helpers/conformance-context.js';

const SECRET = 'conformance secret of the expiry suite, long enough for HS256';

/**
 * Credentials expiring while connected: the session ends as on a
 * disconnect, in one step, except that its holds are taken back (`revoked`).
 */
export function describeCredentialExpiry(target: ConformanceTarget): void {
  describe(`credential expiry (${target.name})`, () => {
    const ctx = useConformance(target, { auth: { secret: SECRET } });
    /** A token for `sub` that may lock and watch everything, valid for `ttlSeconds`. */
    const tokenFor = (sub: string, ttlSeconds = 3600) =>
      signToken({ sub, locks: ['*'], watch: ['*'], steal: [], admin: [] }, { secret: SECRET, ttlSeconds, now: ctx().now() });

    it('removes the expired session\'s queued requests first, then revokes its holds granting the next waiter in the same step, and closes with 1008', async () => {
      const w = await ctx().connect(await tokenFor('w'));
      const a = await ctx().connect(await tokenFor('a', 30));
      const b = await ctx().connect(await tokenFor('b'));
      const c = await ctx().connect(await tokenFor('c'));
      await watch(w, '');
      const token = await hold(a, 'k1', { meta: { who: 'a' } });
      await hold(b, 'k2');
      await enqueue(a, 'k2', { mode: 'shared' });
      const qc = await enqueue(c, 'k1');
      ctx().elapse(30_000);

      expect(await a.nextLost('k1')).toEqual({ type: 'lost', key: 'k1', token, reason: 'revoked' });
      expect((await a.nextClose()).code).toBe(1008);
      expect(a.received('lost')).toHaveLength(1);
      expect(await c.reply(qc.id)).toMatchObject({ acquired: true });
      const dequeued = await w.nextEvent('k2', 'dequeued');
      const revoked = await w.nextEvent('k1', 'revoked');
      const acquired = await w.next(
        (m) => m.type === 'event' && m.key === 'k1' && m.event === 'acquired' && m.session === c.session,
      );
      expect(dequeued).toMatchObject({ session: a.session, mode: 'shared', holders: 1, waiters: 0 });
      expect(revoked).toMatchObject({ session: a.session, token, meta: { who: 'a' }, holders: 0, waiters: 1 });
      if (target.crossKeyEventOrder !== false) expect(w.indexOf(dequeued)).toBeLessThan(w.indexOf(revoked));
      expect(w.indexOf(acquired)).toBe(w.indexOf(revoked) + 1);
      expect(w.received('event').filter((e) => e.key === 'k1' && e.event === 'released')).toEqual([]);
      expect(await holdersOf(w, 'k2')).toEqual([b.session]);
      expect(await queueOf(w, 'k2')).toEqual([]);
      expect(await holdersOf(w, 'k1')).toEqual([c.session]);
    });
  });
}
