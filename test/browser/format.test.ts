import { describe, expect, it } from 'vitest';
import { displayKey, formatMeta } from '../../server/src/ui/format.js';

describe('how the pages show a key', () => {
  it('shows C0 controls and DEL escaped', () => {
    expect(displayKey('a\u0000b\u001b[2J\u007f')).toBe('a\\u0000b\\u001b[2J\\u007f');
  });

  it('shows C1 controls (U+0080 to U+009F) escaped, as it does C0 ones', () => {
    expect(displayKey('c1:\u0080\u0085\u009b[2J\u009f')).toBe('c1:\\u0080\\u0085\\u009b[2J\\u009f');
  });

  it('shows the bidi controls escaped, so none can reorder how a key reads', () => {
    const controls = '\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069';
    expect(displayKey(`doc:${controls}`)).toBe(
      'doc:\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069',
    );
    // "invoice-txt.exe" that an override would show as "invoice-exe.txt".
    expect(displayKey('invoice-\u202etxt.exe')).toBe('invoice-\\u202etxt.exe');
  });

  it('keeps printable text as it is: Latin-1 letters, other scripts and pairs of surrogates', () => {
    expect(displayKey('café ñ \u00a0 שלום 文書 😀')).toBe('café ñ \u00a0 שלום 文書 😀');
  });

  it('shows lone surrogates escaped and the empty key by name', () => {
    expect(displayKey('a\ud800b\udc00')).toBe('a\\ud800b\\udc00');
    expect(displayKey('')).toBe('(empty key)');
  });
});

describe('how the pages show meta', () => {
  it('shows control characters and bidi controls of names and values escaped', () => {
    expect(formatMeta({ user: 'ana\u202e', 'tab\u0085': 'x\u001by', n: 'a\u2066b' })).toBe(
      'user=ana\\u202e tab\\u0085=x\\u001by n=a\\u2066b',
    );
  });

  it('escapes what JSON leaves as it is in a value that is not a string', () => {
    expect(formatMeta({ names: ['\u202eana', 'bo'] })).toBe('names=["\\u202eana","bo"]');
  });

  it('cuts long meta to 80 characters with …, never inside an escape', () => {
    const text = formatMeta({ user: `${'a'.repeat(70)}\u202e${'b'.repeat(20)}` });
    expect(text).toBe(`user=${'a'.repeat(70)}…`);
    expect(formatMeta({ user: 'x'.repeat(100) })).toBe(`user=${'x'.repeat(74)}…`);
  });
});
