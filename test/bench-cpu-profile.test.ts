import { describe, expect, it } from 'vitest';
import { flameGraphSvg, foldStacks, foldedText, frameLabel, selfMicros, type CpuProfile } from '../bench/lib/cpu-profile.mjs';

const frame = (functionName: string, url = '', lineNumber = 0) => ({ functionName, url, lineNumber });

/**
 * root -> main (dist/a.js:3) -> parse (node_modules/x/y.js:10) and -> <write;all> (node:net:5);
 * root -> (idle). Samples: main 100 µs, parse 300 µs, write 200 µs, idle 400 µs, then parse for the mean.
 */
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 5] },
    { id: 2, callFrame: frame('main', 'file:///app/server/dist/a.js', 2), children: [3, 4] },
    { id: 3, callFrame: frame('parse', 'file:///app/node_modules/x/y.js', 9) },
    { id: 4, callFrame: frame('<write;all>', 'node:net', 4) },
    { id: 5, callFrame: frame('(idle)') },
  ],
  samples: [2, 3, 4, 5, 3],
  // Each sample lasts until the next: 100, 300, 200, 400; the last one lasts the mean (1000 / 5).
  timeDeltas: [0, 100, 300, 200, 400],
  startTime: 0,
  endTime: 1000,
};

describe('benchmark CPU profiles', () => {
  it('labels frames by function and place: a dependency from node_modules/ on, other code from dist/ or src/ on', () => {
    expect(frameLabel(frame('main', 'file:///app/server/dist/a.js', 2))).toBe('main dist/a.js:3');
    expect(frameLabel(frame('', 'file:///app/node_modules/ws/lib/sender.js', 0))).toBe('(anonymous) node_modules/ws/lib/sender.js:1');
    expect(frameLabel(frame('write', '/app/node_modules/@redis/client/dist/lib/client/socket.js', 269))).toBe(
      'write node_modules/@redis/client/dist/lib/client/socket.js:270',
    );
    expect(frameLabel(frame('(garbage collector)'))).toBe('(garbage collector)');
  });

  it('gives each sample the time until the next one', () => {
    expect([...selfMicros(profile)]).toEqual([
      [2, 100],
      [3, 300 + 200],
      [4, 200],
      [5, 400],
    ]);
  });

  it('folds the stacks root first, without the root frame or idle time, and keeps `;` only between frames', () => {
    const folded = foldStacks(profile);
    expect([...folded]).toEqual([
      ['main dist/a.js:3', 100],
      ['main dist/a.js:3;parse node_modules/x/y.js:10', 500],
      ['main dist/a.js:3;<write,all> node:net:5', 200],
    ]);
    expect(foldStacks(profile, { idle: true }).get('(idle)')).toBe(400);
    expect(foldedText(folded)).toBe(
      'main dist/a.js:3;parse node_modules/x/y.js:10 500\nmain dist/a.js:3;<write,all> node:net:5 200\nmain dist/a.js:3 100\n',
    );
  });

  it('draws each frame as wide as its time and what it called, callers below, labels escaped', () => {
    const svg = flameGraphSvg(foldStacks(profile), { title: 'a & b', width: 800 });
    const boxes = [...svg.matchAll(/<title>([^<]*)<\/title><rect x="([\d.]+)" y="(\d+)" width="([\d.]+)"/g)].map(
      ([, title, x, y, width]) => ({ title, x: Number(x), y: Number(y), width: Number(width) }),
    );
    const box = (label: string) => boxes.find((b) => b.title?.startsWith(label));
    // 800 µs in all, drawn over 800 px: 1 px per µs.
    expect(box('all')).toMatchObject({ x: 0, width: 800 });
    expect(box('main dist/a.js:3')).toMatchObject({ x: 0, width: 800 });
    expect(box('main dist/a.js:3')?.title).toBe('main dist/a.js:3 (0.8 ms, 100.0%)');
    expect(box('&#60;write,all&#62; node:net:5')).toMatchObject({ x: 0, width: 200 });
    expect(box('parse node_modules/x/y.js:10')).toMatchObject({ x: 200, width: 500 });
    // A callee sits one row above its caller.
    expect(box('main')!.y - box('parse')!.y).toBe(16);
    expect(box('all')!.y - box('main')!.y).toBe(16);
    expect(svg).toContain('a &#38; b: 1 ms sampled');
    expect(svg).not.toMatch(/<write/);
  });
});
