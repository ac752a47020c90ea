import { describe, expect, it } from 'vitest';
import { FirstKeys } from '../src/engine/first-keys.js';

/** A deterministic stream of keys with shared prefixes, surrogates, controls and the empty key. */
function keys(count: number, seed: number): string[] {
  let state = seed;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state;
  };
  const alphabet = ['a', 'b', 'doc:', '\u0000', '\ud800', '\udc00', '\ud83d\ude00', '\uffff', 'é', 'e\u0301', ':'];
  const out = new Set<string>(['']);
  while (out.size < count) {
    let key = '';
    const length = next() % 6;
    for (let i = 0; i < length; i++) key += alphabet[next() % alphabet.length];
    out.add(key);
  }
  return [...out];
}

describe('FirstKeys', () => {
  it('keeps the first keys in UTF-16 code-unit order, as a full sort would, for every limit', () => {
    const all = keys(500, 42);
    const sorted = [...all].sort();
    for (const limit of [0, 1, 2, 7, 100, 499, 500, 501, 10_000]) {
      const first = new FirstKeys(limit);
      for (const key of all) first.offer(key);
      expect(first.total).toBe(all.length);
      expect(first.sorted()).toEqual(sorted.slice(0, limit));
    }
  });

  it('gives the same answer whatever order the keys come in', () => {
    const all = keys(300, 7);
    const expected = [...all].sort().slice(0, 25);
    for (const order of [[...all].sort(), [...all].sort().reverse(), all]) {
      const first = new FirstKeys(25);
      for (const key of order) first.offer(key);
      expect(first.sorted()).toEqual(expected);
    }
  });
});
