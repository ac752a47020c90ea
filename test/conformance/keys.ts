import { describe, expect, it } from 'vitest';
import type { ConformanceTarget } from '../helpers/conformance-target.js';
import { acquire, enqueue, hold, status, useConformance, watch } from '../helpers/conformance-context.js';

const SPECIAL_KEYS: [string, string][] = [
  ['the empty key', ''],
  ['__proto__', '__proto__'],
  ['constructor', 'constructor'],
  ['toString', 'toString'],
  ['hasOwnProperty', 'hasOwnProperty'],
  ['NUL', '\u0000'],
  ['a lone high surrogate', '\ud800'],
  ['a lone low surrogate', '\udc00'],
  ['an emoji', '\ud83d\ude00'],
  ['spaces', '  a b  '],
  ['slashes and colons', '/a:b/'],
  ['CRLF', 'a\r\nb'],
  ['braces and a star', '{x}*'],
];

/** Keys are exact strings of UTF-16 code units: nothing special, nothing normalised. */
export function describeKeys(target: ConformanceTarget): void {
  describe(`keys (${target.name})`, () => {
    const ctx = useConformance(target);

    for (const [name, key] of SPECIAL_KEYS) {
      it(`treats ${name} as an ordinary key: held, queued for, listed and released exactly`, async () => {
        const w = await ctx().connect();
        const a = await ctx().connect();
        const b = await ctx().connect();
        await watch(w, '');
        const token = await hold(a, key);
        expect(await acquire(b, key, { acquireTimeout: 0 })).toMatchObject({ acquired: false });
        const qb = await enqueue(b, key);
        expect(qb.queued.key).toBe(key);
        const seen = await status(b, key);
        expect(seen).toMatchObject({ key, locked: true, heldByYou: false });
        expect((await w.request({ op: 'list' })).locks).toEqual([expect.objectContaining({ key })]);
        expect(await w.nextEvent(key, 'acquired')).toMatchObject({ token });
        await a.request({ op: 'release', key });
        expect(await b.reply(qb.id)).toMatchObject({ acquired: true });
        expect(await w.nextEvent(key, 'released')).toMatchObject({ key, token });
      });
    }

    it('tells apart keys that differ only as code units: a lone surrogate and U+FFFD, composed and decomposed é', async () => {
      const a = await ctx().connect();
      const b = await ctx().connect();
      await hold(a, '\ud800');
      await hold(a, '\u00e9');
      expect(await acquire(b, '\ufffd', { acquireTimeout: 0 })).toMatchObject({ acquired: true });
      expect(await acquire(b, 'e\u0301', { acquireTimeout: 0 })).toMatchObject({ acquired: true });
      expect(await status(b, '\ud800')).toMatchObject({ key: '\ud800', heldByYou: false });
      expect(await status(b, '\ufffd')).toMatchObject({ key: '\ufffd', heldByYou: true });
      const keys = ((await a.request({ op: 'list' })).locks as { key: string }[]).map((l) => l.key);
      expect(keys).toEqual(['\ud800', '\u00e9', 'e\u0301', '\ufffd'].sort());
    });

    it('matches prefixes by code units, so a prefix ending in a high surrogate matches the pairs it starts', async () => {
      const a = await ctx().connect();
      await hold(a, '\ud83d\ude00');
      await hold(a, '\ud83d\ude01');
      await hold(a, '\ud83e\udd14');
      const reply = await a.request({ op: 'list', prefix: '\ud83d' });
      expect((reply.locks as { key: string }[]).map((l) => l.key)).toEqual(['\ud83d\ude00', '\ud83d\ude01']);
    });
  });
}
