import { describe, expect, it } from 'vitest';
import { MAX_DURATION_MS } from '@lockwire/protocol';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import type { RawClient } from '../helpers/raw-client.js';
import { acquire, enqueue, hold, num, queueOf, status, table, useConformance } from '../helpers/conformance-context.js';

/** Sends a raw frame and returns the next reply with `id` (null for frames without a usable id). */
async function answer(client: RawClient, frame: object | string | Buffer, id: unknown = null) {
  client.send(frame);
  return client.reply(id, { label: `reply to ${String(frame).slice(0, 80)}` });
}

/** Asserts the connection still answers and the lock table is as before. */
async function expectUnchanged(client: RawClient, before: unknown): Promise<void> {
  expect(await client.request({ op: 'ping' })).toMatchObject({ ok: true });
  expect(await table(client)).toEqual(before);
}

/** The keys locked now, in list order. */
async function lockedKeys(client: RawClient): Promise<string[]> {
  return ((await table(client)) as Array<{ key: string }>).map((lock) => lock.key);
}

/** Every error code the memory store can produce, and that each leaves the session and the table intact. */
export function describeErrors(target: ConformanceTarget): void {
  describe(`errors (${target.name})`, () => {
    const ctx = useConformance(target);

    it('answers frames that are not JSON objects with bad_request and id null, and keeps the connection', async () => {
      const a = await ctx().connect();
      await hold(a, 'k');
      const before = await table(a);
      for (const frame of ['{not json', '[]', '[{"op":"ping","id":1}]', '42', '"ping"', 'null', '']) {
        const reply = await answer(a, frame);
        expect(reply).toMatchObject({ type: 'reply', id: null, ok: false, error: { code: 'bad_request' } });
        expect(typeof (reply.error as { message: unknown }).message).toBe('string');
      }
      await expectUnchanged(a, before);
    });

    it('answers a binary frame with bad_request and keeps the connection', async () => {
      const a = await ctx().connect();
      const before = await table(a);
      const reply = await answer(a, Buffer.from(JSON.stringify({ op: 'ping', id: 1 })));
      expect(reply).toMatchObject({ id: null, ok: false, error: { code: 'bad_request' } });
      await expectUnchanged(a, before);
    });

    it('answers an unknown op, an unknown field or a missing op with bad_request naming the request id', async () => {
      const a = await ctx().connect();
      await hold(a, 'k');
      const before = await table(a);
      expect(await answer(a, { op: 'lock', id: 1, key: 'k' }, 1)).toMatchObject({ id: 1, ok: false, error: { code: 'bad_request' } });
      expect(await answer(a, { op: 'constructor', id: 2 }, 2)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await answer(a, { op: '__proto__', id: 3 }, 3)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      const typo = await answer(a, { op: 'acquire', id: 4, key: 'j', holdTimout: 5 }, 4);
      expect(typo).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect((typo.error as { message: string }).message).toContain('holdTimout');
      expect(await answer(a, { id: 5, key: 'k' }, 5)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await answer(a, { op: 'release', id: 6, key: 'k', token: 1 }, 6)).toMatchObject({
        ok: false,
        error: { code: 'bad_request' },
      });
      await expectUnchanged(a, before);
    });

    it('answers an invalid or missing id with bad_request and id null', async () => {
      const a = await ctx().connect();
      const before = await table(a);
      const ids: unknown[] = [-1, 1.5, '', 'x'.repeat(65), true, null, {}, [], Number.MAX_SAFE_INTEGER + 1];
      for (const id of ids) {
        expect(await answer(a, { op: 'acquire', id, key: 'k' })).toMatchObject({ id: null, ok: false, error: { code: 'bad_request' } });
      }
      expect(await answer(a, { op: 'acquire', key: 'k' })).toMatchObject({ id: null, ok: false, error: { code: 'bad_request' } });
      await expectUnchanged(a, before);
      expect(await a.request({ op: 'ping', id: 'x'.repeat(64) })).toMatchObject({ ok: true });
      expect(await a.request({ op: 'ping', id: 0 })).toMatchObject({ ok: true });
      expect(await a.request({ op: 'ping', id: Number.MAX_SAFE_INTEGER })).toMatchObject({ ok: true });
    });

    it('answers fields of the wrong type with bad_request and changes nothing', async () => {
      const a = await ctx().connect();
      await hold(a, 'k');
      const before = await table(a);
      const bad: Record<string, unknown>[] = [
        { op: 'acquire', key: 42 },
        { op: 'acquire', key: null },
        { op: 'acquire' },
        { op: 'acquire', key: 'j', mode: 'write' },
        { op: 'acquire', key: 'j', steal: 'yes' },
        { op: 'acquire', key: 'j', steal: 1 },
        { op: 'acquire', key: 'j', acquireTimeout: '100' },
        { op: 'acquire', key: 'j', holdTimeout: true },
        { op: 'release', key: ['k'] },
        { op: 'wait', key: 'k', timeout: 'NaN' },
        { op: 'cancel' },
        { op: 'cancel', target: -1 },
        { op: 'status', key: 1 },
        { op: 'list', prefix: 5 },
        { op: 'watch', prefix: null },
        { op: 'revoke', key: {} },
      ];
      for (const fields of bad) {
        expect(await a.request(fields), JSON.stringify(fields)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      }
      await expectUnchanged(a, before);
    });

    it('rejects durations outside 0 to 2147483647 as bad_request and accepts the bounds', async () => {
      const a = await ctx().connect();
      const before = await table(a);
      const raw = (field: string, value: string) =>
        answer(a, `{"op":"acquire","id":"d","key":"j","${field}":${value}}`, 'd');
      for (const field of ['acquireTimeout', 'holdTimeout']) {
        for (const value of ['-1', '2147483648', '1e309', '-1e309', '"NaN"', '"Infinity"', '"5"', '-0.5']) {
          expect(await raw(field, value), `${field}: ${value}`).toMatchObject({ ok: false, error: { code: 'bad_request' } });
        }
      }
      for (const value of ['-1', '2147483648', '1e309']) {
        expect(await answer(a, `{"op":"wait","id":"w","key":"j","timeout":${value}}`, 'w')).toMatchObject({
          ok: false,
          error: { code: 'bad_request' },
        });
      }
      await expectUnchanged(a, before);
      expect(await acquire(a, 'j', { acquireTimeout: MAX_DURATION_MS, holdTimeout: MAX_DURATION_MS })).toMatchObject({ acquired: true });
      expect(await a.request({ op: 'extend', key: 'j', holdTimeout: 2_147_483_648 })).toMatchObject({
        ok: false,
        error: { code: 'bad_request' },
      });
      expect(await a.request({ op: 'extend', key: 'j', holdTimeout: 0.5 })).toMatchObject({ ok: true });
    });

    it('rejects a key or prefix longer than maxKeyLength and accepts one of exactly that length', async () => {
      const a = await ctx().connect();
      const before = await table(a);
      const long = 'k'.repeat(257);
      expect(await acquire(a, long)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await a.request({ op: 'status', key: long })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await a.request({ op: 'list', prefix: long })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      // 128 surrogate pairs are 256 UTF-16 code units.
      expect(await acquire(a, '\ud83d\ude00'.repeat(129))).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      await expectUnchanged(a, before);
      expect(await acquire(a, 'k'.repeat(256))).toMatchObject({ acquired: true });
      expect(await acquire(a, '\ud83d\ude00'.repeat(128))).toMatchObject({ acquired: true });
    });

    it('rejects meta that is not an object or over 1024 bytes, and accepts 1024 bytes and null', async () => {
      const a = await ctx().connect();
      const before = await table(a);
      for (const meta of [[], 'ana', 7, true]) {
        expect(await acquire(a, 'j', { meta })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      }
      // {"v":"..."} is 8 bytes around the string; 'é' is 2 bytes of UTF-8.
      expect(await acquire(a, 'j', { meta: { v: 'x'.repeat(1017) } })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await acquire(a, 'j', { meta: { v: '\u00e9'.repeat(509) } })).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      await expectUnchanged(a, before);
      expect(await acquire(a, 'j', { meta: { v: 'x'.repeat(1016) } })).toMatchObject({ acquired: true });
      expect(await acquire(a, 'n', { meta: null })).toMatchObject({ acquired: true });
    });

    it('keeps a meta key named __proto__ as an ordinary field', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      a.send('{"op":"acquire","id":"m","key":"k","meta":{"__proto__":{"admin":true},"x":1}}');
      expect(await a.reply('m')).toMatchObject({ acquired: true });
      const reply = await b.request({ op: 'status', key: 'k' });
      const holder = (reply.holders as { meta: Record<string, unknown> }[])[0];
      expect(holder?.meta && Object.prototype.hasOwnProperty.call(holder.meta, '__proto__')).toBe(true);
      expect(holder?.meta.x).toBe(1);
    });

    it('answers duplicate_id for an id still pending, leaves that request pending, and grants it later', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, 'k');
      const qb = await enqueue(b, 'k');
      const before = await table(b);
      expect(await answer(b, { op: 'ping', id: qb.id }, qb.id)).toMatchObject({ id: qb.id, ok: false, error: { code: 'duplicate_id' } });
      expect(await answer(b, { op: 'acquire', id: qb.id, key: 'other' }, qb.id)).toMatchObject({
        ok: false,
        error: { code: 'duplicate_id' },
      });
      await expectUnchanged(b, before);
      expect(await queueOf(a, 'k')).toEqual([b.session]);
      await a.request({ op: 'release', key: 'k' });
      expect(await b.reply(qb.id)).toMatchObject({ ok: true, acquired: true });
      expect(await b.request({ op: 'ping', id: qb.id })).toMatchObject({ ok: true });
    });

    it('lets an id be reused once its request has been answered', async () => {
      const a = await ctx().connect();
      expect(await a.request({ op: 'ping', id: 'same' })).toMatchObject({ ok: true });
      expect(await a.request({ op: 'ping', id: 'same' })).toMatchObject({ ok: true });
    });
  });

  describe(`limits (${target.name})`, () => {
    const ctx = useConformance(target, { limits: { maxLocksPerSession: 2, maxWaitersPerKey: 1, maxKeyLength: 8 } });

    it('announces the configured limits in the welcome', async () => {
      const a = await ctx().connect();
      expect(a.welcome.limits).toMatchObject({ maxLocksPerSession: 2, maxWaitersPerKey: 1, maxKeyLength: 8, maxPayload: 65536 });
    });

    it('answers too_many_locks once the session holds or waits for maxLocksPerSession keys', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(b, 'q');
      await hold(a, 'h');
      await enqueue(a, 'q');
      const before = await table(a);
      expect(await acquire(a, 'x')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
      expect(await acquire(a, 'y', { acquireTimeout: 0 })).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
      await expectUnchanged(a, before);
      await a.request({ op: 'release', key: 'h' });
      expect(await acquire(a, 'x')).toMatchObject({ acquired: true });
    });

    // Each pair below is sent back to back, so the second request arrives while the first is still being
    // applied: the limit counts the session's locks after its earlier requests, as they turned out.
    it('does not count a hold toward too_many_locks once a release sent just before the acquire let it go', async () => {
      const a = await ctx().connect();
      await hold(a, 'one');
      await hold(a, 'two');
      a.send({ op: 'release', id: 'rel', key: 'one' });
      a.send({ op: 'acquire', id: 'three', key: 'three' });
      expect(await a.reply('rel')).toMatchObject({ ok: true, released: true });
      expect(await a.reply('three')).toMatchObject({ ok: true, acquired: true });
      expect(await acquire(a, 'four')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
    });

    it('does not count a hold past its deadline, its timer not run yet, toward too_many_locks: it ends expired first', async () => {
      const a = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'one');
      const token = await hold(a, 'two', { holdTimeout: unit });
      ctx().elapseLate(unit);
      const again = await acquire(a, 'two', { mode: 'shared' });
      expect(again).toMatchObject({ ok: true, acquired: true });
      const lost = await a.nextLost('two');
      expect(lost).toEqual({ type: 'lost', key: 'two', token, reason: 'expired' });
      expect(a.indexOf(lost)).toBeLessThan(a.indexOf(again));
      expect(await acquire(a, 'three')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
      // The timer, run late, finds nothing left to end.
      ctx().elapse(0);
      expect(await status(a, 'two')).toMatchObject({ heldByYou: true, mode: 'shared' });
      expect(a.received('lost')).toHaveLength(1);
    });

    it('does not count a hold past its deadline, its timer not run yet, toward too_many_locks of an acquire of another key', async () => {
      const a = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'one');
      const token = await hold(a, 'two', { holdTimeout: unit });
      ctx().elapseLate(unit);
      expect(await acquire(a, 'three')).toMatchObject({ ok: true, acquired: true });
      expect(await a.nextLost('two')).toEqual({ type: 'lost', key: 'two', token, reason: 'expired' });
      ctx().elapse(0);
      expect(await status(a, 'two')).toMatchObject({ locked: false });
      expect(a.received('lost')).toHaveLength(1);
    });

    it('does not count a queued acquire past its acquireTimeout, its timer not run yet, toward too_many_locks: it times out first', async () => {
      const a = await ctx().connect();
      const c = await ctx().connect();
      const { unit } = ctx();
      await hold(a, 'one');
      await hold(c, 'two');
      const queued = await enqueue(a, 'two', { acquireTimeout: unit });
      ctx().elapseLate(unit);
      const three = await acquire(a, 'three');
      expect(three).toMatchObject({ ok: true, acquired: true });
      const timedOut = await a.reply(queued.id);
      expect(timedOut).toMatchObject({ ok: true, acquired: false });
      expect(a.indexOf(timedOut)).toBeLessThan(a.indexOf(three));
      expect(await queueOf(c, 'two')).toEqual([]);
      // The timer, run late, finds nothing left to time out.
      ctx().elapse(0);
      expect(a.received('reply').filter((r) => r.id === queued.id)).toHaveLength(1);
    });

    it('does not count a try-once acquire answered acquired false toward too_many_locks of the acquire sent after it', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(b, 'busy');
      await hold(a, 'mine');
      a.send({ op: 'acquire', id: 'try', key: 'busy', acquireTimeout: 0 });
      a.send({ op: 'acquire', id: 'free', key: 'free1' });
      expect(await a.reply('try')).toMatchObject({ ok: true, acquired: false });
      expect(await a.reply('free')).toMatchObject({ ok: true, acquired: true });
      expect(await acquire(a, 'free2')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
    });

    it('does not count a re-acquire of a held key as a second lock for the acquire sent after it', async () => {
      const a = await ctx().connect();
      const first = await hold(a, 'mine');
      a.send({ op: 'acquire', id: 're', key: 'mine' });
      a.send({ op: 'acquire', id: 'free', key: 'free2' });
      expect(await a.reply('re')).toMatchObject({ ok: true, acquired: true, token: first });
      expect(await a.reply('free')).toMatchObject({ ok: true, acquired: true });
      expect(await acquire(a, 'free3')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
    });

    it('applies a release sent right after an acquire at the limit after that acquire, on the same key', async () => {
      const a = await ctx().connect();
      await hold(a, 'one');
      await hold(a, 'two');
      a.send({ op: 'release', id: 'rel1', key: 'one' });
      a.send({ op: 'acquire', id: 'three', key: 'three' });
      a.send({ op: 'release', id: 'rel3', key: 'three' });
      a.send({ op: 'wait', id: 'w', key: 'three' });
      expect(await a.reply('three')).toMatchObject({ ok: true, acquired: true });
      expect(await a.reply('rel3')).toMatchObject({ ok: true, released: true });
      expect(await a.reply('w')).toMatchObject({ ok: true, free: true });
      expect(await lockedKeys(a)).toEqual(['two']);
    });

    it('does not count a key toward too_many_locks when "acquire k; release k" was sent just before the acquire', async () => {
      const a = await ctx().connect();
      await hold(a, 'one');
      a.send({ op: 'acquire', id: 'k', key: 'k' });
      a.send({ op: 'release', id: 'rel', key: 'k' });
      a.send({ op: 'acquire', id: 'two', key: 'two' });
      expect(await a.reply('k')).toMatchObject({ ok: true, acquired: true });
      expect(await a.reply('rel')).toMatchObject({ ok: true, released: true });
      expect(await a.reply('two')).toMatchObject({ ok: true, acquired: true });
      expect(await lockedKeys(a)).toEqual(['one', 'two']);
    });

    it('counts a hold toward too_many_locks when its release was sent after the acquire', async () => {
      const a = await ctx().connect();
      await hold(a, 'one');
      await hold(a, 'two');
      a.send({ op: 'acquire', id: 're', key: 'one' });
      a.send({ op: 'acquire', id: 'three', key: 'three' });
      a.send({ op: 'release', id: 'rel', key: 'two' });
      a.send({ op: 'acquire', id: 'four', key: 'four' });
      expect(await a.reply('re')).toMatchObject({ ok: true, acquired: true });
      expect(await a.reply('three')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
      expect(await a.reply('rel')).toMatchObject({ ok: true, released: true });
      expect(await a.reply('four')).toMatchObject({ ok: true, acquired: true });
      expect(await lockedKeys(a)).toEqual(['four', 'one']);
    });

    it('answers too_many_waiters when the key queue is at maxWaitersPerKey', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      const c = await ctx().connect();
      await hold(a, 'k');
      await enqueue(b, 'k');
      const before = await table(c);
      expect(await acquire(c, 'k')).toMatchObject({ ok: false, error: { code: 'too_many_waiters' } });
      await expectUnchanged(c, before);
      expect(await queueOf(a, 'k')).toEqual([b.session]);
    });

    it('applies a configured maxKeyLength', async () => {
      const a = await ctx().connect();
      expect(await acquire(a, '123456789')).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      expect(await acquire(a, '12345678')).toMatchObject({ acquired: true });
    });
  });

  describe(`limits at their defaults (${target.name})`, () => {
    const ctx = useConformance(target);

    /** `waiter` waits in the queues of maxLocksPerSession keys, each held by `owner`. */
    async function waitingAtTheLockLimit() {
      const owner = await ctx().connect();
      const waiter = await ctx().connect();
      const max = num((waiter.welcome.limits as { maxLocksPerSession: unknown }).maxLocksPerSession);
      // Equal to maxPendingPerSession, which must not count acquires waiting in a queue.
      expect(max).toBe(1000);
      const keys = Array.from({ length: max }, (_, i) => `k${i}`);
      const held = await Promise.all(keys.map((key) => owner.request({ op: 'acquire', key }, { timeout: 20_000 })));
      for (const reply of held) expect(reply).toMatchObject({ acquired: true });
      const ids = keys.map((key) => {
        const id = waiter.id();
        waiter.send({ op: 'acquire', id, key });
        return id;
      });
      for (const id of ids) await waiter.next((m) => m.type === 'queued' && m.id === id, { timeout: 20_000 });
      return { owner, waiter };
    }

    it('answers too_many_locks, not rate_limited, to an acquire of a session waiting in queues for maxLocksPerSession keys', async () => {
      const { owner, waiter } = await waitingAtTheLockLimit();
      const before = await table(owner);
      expect(await acquire(waiter, 'free')).toMatchObject({ ok: false, error: { code: 'too_many_locks' } });
      expect(await table(owner)).toEqual(before);
    }, 60_000);

    it('serves a release, a status and a ping of a session waiting in queues for maxLocksPerSession keys', async () => {
      const { owner, waiter } = await waitingAtTheLockLimit();
      expect(await waiter.request({ op: 'release', key: 'k0' })).toMatchObject({ ok: false, error: { code: 'not_holder' } });
      expect(await waiter.request({ op: 'status', key: 'k0' })).toMatchObject({ ok: true, locked: true });
      expect(await waiter.request({ op: 'ping' })).toMatchObject({ ok: true });
      // The waiter is granted k0 once it is free, and may then release it.
      const granted = waiter.next((m) => m.type === 'reply' && m.ok === true && m.acquired === true, { timeout: 20_000 });
      expect(await owner.request({ op: 'release', key: 'k0' })).toMatchObject({ ok: true });
      await granted;
      expect(await waiter.request({ op: 'release', key: 'k0' })).toMatchObject({ ok: true, released: true });
    }, 60_000);
  });

  describe(`maxPayload (${target.name})`, () => {
    const ctx = useConformance(target);

    it('accepts a frame of exactly 64 KiB and closes the connection with 1009 for a larger one', async () => {
      const a = await ctx().connect();
      const frame = (size: number) => {
        const head = '{"op":"ping","id":1,"pad":"';
        return head + 'x'.repeat(size - head.length - 2) + '"}';
      };
      expect(Buffer.byteLength(frame(65_536))).toBe(65_536);
      expect(await answer(a, frame(65_536), 1)).toMatchObject({ ok: false, error: { code: 'bad_request' } });
      a.send(frame(65_537));
      expect((await a.nextClose()).code).toBe(1009);
    });
  });
}
