import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import type { Frame } from '../helpers/raw-client.js';
import { enqueue, hold, num, status, useConformance, watch } from '../helpers/conformance-context.js';

const keysOf = (reply: Frame) => (reply.locks as { key: string }[]).map((l) => l.key);

/** `status`, `list`, `watch`/`unwatch`, `ping` and the HTTP endpoints. */
export function describeObserve(target: ConformanceTarget): void {
  describe(`observe (${target.name})`, () => {
    const ctx = useConformance(target);

    it('status of a free key is unlocked with no mode, holders or queue', async () => {
      const a = await ctx().connect();
      const reply = await status(a, 'doc:1');
      expect(reply).toEqual({
        type: 'reply',
        id: reply.id,
        ok: true,
        key: 'doc:1',
        locked: false,
        mode: null,
        holders: [],
        queue: [],
        heldByYou: false,
      });
    });

    it('status of a held key lists holders and the queue in grant order, with heldByYou per viewer', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      const t0 = ctx().now();
      const grant = await a.request({ op: 'acquire', key: 'doc:1', holdTimeout: 10 * ctx().unit, meta: { user: 'ana' } });
      await enqueue(b, 'doc:1', { mode: 'shared', meta: { user: 'bo' } });
      await enqueue(c, 'doc:1');
      const seen = await status(a, 'doc:1');
      expect(seen).toMatchObject({ key: 'doc:1', locked: true, mode: 'exclusive', heldByYou: true });
      expect(seen.holders).toEqual([
        { session: a.session, mode: 'exclusive', token: grant.token, since: expect.any(Number), expiresAt: grant.expiresAt, meta: { user: 'ana' } },
      ]);
      const holders = seen.holders as { since: number }[];
      ctx().expectTime(holders[0]?.since, t0);
      expect(seen.queue).toEqual([
        { session: b.session, mode: 'shared', since: expect.any(Number), meta: { user: 'bo' }, seq: expect.any(Number) },
        { session: c.session, mode: 'exclusive', since: expect.any(Number), meta: null, seq: expect.any(Number) },
      ]);
      expect(await status(b, 'doc:1')).toMatchObject({ heldByYou: false });
    });

    it('list gives locked keys in UTF-16 code-unit order', async () => {
      const a = await ctx().connect();
      const keys = ['a', 'B', '\u00e9', '\ud83d\ude00', '\uffff', '', ' ', 'a:b', 'Z'];
      for (const key of keys) await hold(a, key);
      const reply = await a.request({ op: 'list' });
      expect(reply).toMatchObject({ ok: true, truncated: false });
      const expected = [...keys].sort();
      // '\ud83d\ude00' (a surrogate pair) sorts before '\uffff' by code unit, unlike by code point.
      expect(expected.indexOf('\ud83d\ude00')).toBeLessThan(expected.indexOf('\uffff'));
      expect(keysOf(reply)).toEqual(expected);
      for (const lock of reply.locks as Frame[]) expect(lock).toMatchObject({ locked: true, heldByYou: true });
    });

    it('list leaves out keys that are free, filters by prefix and truncates at limit', async () => {
      const a = await ctx().connect();
      for (const key of ['doc:3', 'doc:1', 'doc:2', 'docs', 'img:1']) await hold(a, key);
      await hold(a, 'doc:9');
      await a.request({ op: 'release', key: 'doc:9' });
      expect(keysOf(await a.request({ op: 'list', prefix: 'doc:' }))).toEqual(['doc:1', 'doc:2', 'doc:3']);
      const limited = await a.request({ op: 'list', prefix: 'doc', limit: 2 });
      expect(limited).toMatchObject({ ok: true, truncated: true });
      expect(keysOf(limited)).toEqual(['doc:1', 'doc:2']);
      const exact = await a.request({ op: 'list', prefix: 'doc', limit: 4 });
      expect(exact).toMatchObject({ ok: true, truncated: false });
      expect(keysOf(exact)).toEqual(['doc:1', 'doc:2', 'doc:3', 'docs']);
      expect(keysOf(await a.request({ op: 'list', prefix: 'none' }))).toEqual([]);
    });

    it('list rejects a limit outside 1 to 10000 or not an integer as bad_request', async () => {
      const a = await ctx().connect();
      for (const limit of [0, 10_001, 1.5, -1, '10']) {
        expect(await a.request({ op: 'list', limit })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
        expect(await a.request({ op: 'watch', prefix: 'x', limit })).toMatchObject({
          ok: false,
          error: { code: 'bad_request' },
        });
      }
      expect(await a.request({ op: 'list', limit: 10_000 })).toMatchObject({ ok: true });
      expect(await a.request({ op: 'list', limit: 1 })).toMatchObject({ ok: true });
    });

    it('watch answers a snapshot as list gives it, then an event for every change under the prefix', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'doc:1', { meta: { n: 1 } });
      await hold(a, 'other');
      const snapshot = await watch(w, 'doc:');
      const listed = await w.request({ op: 'list', prefix: 'doc:' });
      expect(snapshot.locks).toEqual(listed.locks);
      expect(keysOf(snapshot)).toEqual(['doc:1']);

      const qb = await enqueue(b, 'doc:1', { mode: 'exclusive', meta: { n: 2 } });
      const t = ctx().now();
      await a.request({ op: 'release', key: 'doc:1' });
      const grant = await b.reply(qb.id);
      await a.request({ op: 'release', key: 'other' });
      await b.request({ op: 'release', key: 'doc:1' });
      const queued = await w.nextEvent('doc:1');
      const released = await w.nextEvent('doc:1');
      const acquired = await w.nextEvent('doc:1');
      const releasedB = await w.nextEvent('doc:1');
      expect(queued).toEqual({ type: 'event', key: 'doc:1', event: 'queued', session: b.session, mode: 'exclusive', meta: { n: 2 }, holders: 1, waiters: 1, at: expect.any(Number) });
      expect(released).toEqual({ type: 'event', key: 'doc:1', event: 'released', session: a.session, token: snapshotToken(snapshot), mode: 'exclusive', meta: { n: 1 }, holders: 0, waiters: 1, at: expect.any(Number) });
      expect(acquired).toEqual({ type: 'event', key: 'doc:1', event: 'acquired', session: b.session, token: grant.token, mode: 'exclusive', meta: { n: 2 }, holders: 1, waiters: 0, at: expect.any(Number) });
      expect(releasedB).toMatchObject({ event: 'released', session: b.session, token: grant.token, holders: 0, waiters: 0 });
      ctx().expectTime(released.at, t);
      expect(w.messages.some((m) => m.type === 'event' && m.key === 'other')).toBe(false);
    });

    it('a watch reports acquired with the token and the shared mode of each holder', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      await watch(w, '');
      const token = await hold(a, 's', { mode: 'shared' });
      expect(await w.nextEvent('s', 'acquired')).toMatchObject({ session: a.session, token, mode: 'shared', meta: null, holders: 1, waiters: 0 });
    });

    it('watching the same prefix twice is one stream', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      await watch(w, 'k');
      await watch(w, 'k');
      await hold(a, 'k');
      await a.request({ op: 'release', key: 'k' });
      await w.nextEvent('k', 'released');
      expect(w.received('event').map((e) => e.event)).toEqual(['acquired', 'released']);
    });

    it('unwatch stops the stream, and a new watch starts from a fresh snapshot', async () => {
      const w = await ctx().connect();
      const a = await ctx().connect();
      await watch(w, 'u:');
      expect(await w.request({ op: 'unwatch', prefix: 'u:' })).toEqual({ type: 'reply', id: expect.anything(), ok: true });
      await hold(a, 'u:1');
      await a.request({ op: 'release', key: 'u:1' });
      const token = await hold(a, 'u:2');
      const again = await watch(w, 'u:');
      expect(keysOf(again)).toEqual(['u:2']);
      await a.request({ op: 'release', key: 'u:2' });
      expect(await w.nextEvent('u:2', 'released')).toMatchObject({ token });
      expect(w.received('event')).toHaveLength(1);
    });

    it('unwatch of a prefix not watched answers ok', async () => {
      const w = await ctx().connect();
      expect(await w.request({ op: 'unwatch', prefix: 'never' })).toMatchObject({ ok: true });
    });

    it('ping answers the server time', async () => {
      const a = await ctx().connect();
      const reply = await a.request({ op: 'ping', id: 'p' });
      expect(reply).toEqual({ type: 'reply', id: 'p', ok: true, at: expect.any(Number) });
      ctx().expectTime(reply.at, ctx().now());
    });

    it('GET /healthz answers 200 with ok true', async () => {
      const { status: code, body } = await ctx().http('/healthz');
      expect(code).toBe(200);
      expect(body).toMatchObject({ ok: true });
    });

    it('GET /v1/locks answers the list result without heldByYou, with prefix and limit', async () => {
      const a = await ctx().connect();
      const token = await hold(a, 'doc:1');
      await hold(a, 'doc:2');
      await hold(a, 'img:1');
      const all = await ctx().http('/v1/locks');
      expect(all.status).toBe(200);
      expect(all.body).toMatchObject({ truncated: false });
      const body = all.body as Frame;
      expect(keysOf(body)).toEqual(['doc:1', 'doc:2', 'img:1']);
      expect((body.locks as Frame[])[0]).toEqual({
        key: 'doc:1',
        locked: true,
        mode: 'exclusive',
        holders: [{ session: a.session, mode: 'exclusive', token, since: expect.any(Number), expiresAt: null, meta: null }],
        queue: [],
      });
      const some = await ctx().http('/v1/locks?prefix=doc%3A&limit=1');
      expect(some.body).toMatchObject({ truncated: true });
      expect(keysOf(some.body as Frame)).toEqual(['doc:1']);
    });
  });
}

function snapshotToken(snapshot: Frame): number {
  const lock = (snapshot.locks as { holders: { token: unknown }[] }[])[0];
  return num(lock?.holders[0]?.token);
}
