import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '@lockwire/protocol';
import { RawClient } from '../helpers/raw-client.js';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { acquire, enqueue, hold, num, status, table, useConformance } from '../helpers/conformance-context.js';

/** The welcome, granting, re-acquiring and fencing tokens. */
export function describeAcquire(target: ConformanceTarget): void {
  describe(`acquire (${target.name})`, () => {
    const ctx = useConformance(target);

    it('greets every connection with a welcome naming a distinct session, the protocol and the default limits', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      expect(a.messages[0]).toBe(a.welcome);
      expect(a.welcome).toMatchObject({ type: 'welcome', protocol: 1, limits: DEFAULT_LIMITS });
      expect(typeof a.welcome.session).toBe('string');
      expect(a.session.length).toBeGreaterThan(0);
      expect(a.welcome.server).toMatch(/^lockwire\//);
      expect(b.session).not.toBe(a.session);
      for (const field of ['resume', 'grace', 'resumed', 'held']) expect(a.welcome).not.toHaveProperty(field);
    });

    it('grants a free key exclusively with a positive token and no expiry', async () => {
      const a = await ctx().connect();
      const reply = await acquire(a, 'doc:1');
      expect(reply).toEqual({ type: 'reply', id: reply.id, ok: true, acquired: true, token: reply.token, expiresAt: null });
      expect(Number.isSafeInteger(reply.token) && num(reply.token) > 0).toBe(true);
      const s = await status(a, 'doc:1');
      expect(s).toMatchObject({ locked: true, mode: 'exclusive', heldByYou: true, queue: [] });
    });

    it('sets expiresAt to the grant time plus holdTimeout', async () => {
      const a = await ctx().connect();
      const t = ctx().now();
      const reply = await acquire(a, 'doc:1', { holdTimeout: 5 * ctx().unit });
      ctx().expectTime(reply.expiresAt, t + 5 * ctx().unit);
    });

    it('lets several sessions hold a key in shared mode at once', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const ta = await hold(a, 'doc:1', { mode: 'shared' });
      const tb = await hold(b, 'doc:1', { mode: 'shared' });
      expect(tb).toBeGreaterThan(ta);
      const s = await status(a, 'doc:1');
      expect(s).toMatchObject({ locked: true, mode: 'shared' });
      expect((s.holders as unknown[]).length).toBe(2);
    });

    it('does not grant an exclusive request while a shared hold exists, nor a shared one under an exclusive hold', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'r', { mode: 'shared' });
      await hold(a, 'w');
      expect(await acquire(b, 'r', { acquireTimeout: 0 })).toMatchObject({ ok: true, acquired: false });
      expect(await acquire(b, 'w', { mode: 'shared', acquireTimeout: 0 })).toMatchObject({ ok: true, acquired: false });
    });

    it('answers a re-acquire by the holder with the same token and changes neither expiresAt nor meta', async () => {
      const a = await ctx().connect();
      const first = await acquire(a, 'doc:1', { holdTimeout: 10 * ctx().unit, meta: { user: 'ana' } });
      ctx().elapse(ctx().unit);
      const again = await acquire(a, 'doc:1', { holdTimeout: 50 * ctx().unit, meta: { user: 'bob' } });
      expect(again).toMatchObject({ ok: true, acquired: true, token: first.token, expiresAt: first.expiresAt });
      const s = await status(a, 'doc:1');
      expect(s.holders).toEqual([
        expect.objectContaining({ token: first.token, expiresAt: first.expiresAt, meta: { user: 'ana' } }),
      ]);
    });

    it('answers a re-acquire of a shared hold with the same token', async () => {
      const a = await ctx().connect();
      const token = await hold(a, 'doc:1', { mode: 'shared' });
      expect(await acquire(a, 'doc:1', { mode: 'shared' })).toMatchObject({ acquired: true, token });
      expect(((await status(a, 'doc:1')).holders as unknown[]).length).toBe(1);
    });

    it('rejects acquiring a held key in the other mode as bad_request, with or without steal', async () => {
      const a = await ctx().connect();
      await hold(a, 'x');
      await hold(a, 'y', { mode: 'shared' });
      const before = await table(a);
      expect(await acquire(a, 'x', { mode: 'shared' })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await acquire(a, 'y')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await acquire(a, 'y', { steal: true })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await table(a)).toEqual(before);
    });

    it('rejects acquiring a key the session is already queued for as bad_request', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'x');
      await enqueue(b, 'x');
      const before = await table(b);
      expect(await acquire(b, 'x')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await acquire(b, 'x', { mode: 'shared', acquireTimeout: 0 })).toMatchObject({
        ok: false,
        error: { code: 'bad_request' },
      });
      expect(await table(b)).toEqual(before);
    });

    it('reports meta as null when the acquire gave none', async () => {
      const a = await ctx().connect();
      await hold(a, 'doc:1');
      expect((await status(a, 'doc:1')).holders).toEqual([expect.objectContaining({ meta: null })]);
    });

    it('issues strictly increasing tokens for successive grants of a key', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const tokens: number[] = [];
      for (let i = 0; i < 3; i++) {
        const c = i % 2 === 0 ? a : b;
        tokens.push(await hold(c, 'k'));
        expect(await c.request({ op: 'release', key: 'k' })).toMatchObject({ ok: true, released: true });
      }
      tokens.push(await hold(a, 'k', { mode: 'shared' }));
      tokens.push(await hold(b, 'k', { mode: 'shared' }));
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1] ?? Infinity);
    });

    it('issues tokens greater than every earlier token of the key after a server restart', async () => {
      const a = await ctx().connect();
      let last = 0;
      for (let i = 0; i < 5; i++) {
        last = await hold(a, 'k');
        await a.request({ op: 'release', key: 'k' });
      }
      await a.close();
      await ctx().instance.close();
      // A restart takes a moment; the tokens of the old process were issued within one millisecond.
      ctx().elapse(1);
      const again = await ctx().startAgain();
      const url = again.urls[0];
      if (url === undefined) throw new Error('no url');
      const b = await RawClient.connect(url);
      try {
        expect(await hold(b, 'k')).toBeGreaterThan(last);
      } finally {
        b.terminate();
      }
    });
  });
}
