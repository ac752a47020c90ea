import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TestSpecification, Vitest } from 'vitest/node';
import { LONG_FILES, LongFilesFirst } from './long-files-first.js';

const root = '/repo';

/** A sequencer over files of the given sizes, with no recorded durations (a fresh clone). */
function freshCloneOrder(sizes: Record<string, number>): Promise<string[]> {
  const project = { name: '', config: { sequence: { groupOrder: 0 }, isolate: true } };
  const ctx = {
    config: { root },
    cache: {
      getFileTestResults: () => undefined,
      getFileStats: (key: string) => ({ size: sizes[key.slice(1)] ?? 0 }),
    },
  } as unknown as Vitest;
  const files = Object.keys(sizes).map((name) => ({ moduleId: join(root, name), project }) as unknown as TestSpecification);
  return new LongFilesFirst(ctx).sort(files).then((sorted) => sorted.map((file) => file.moduleId.slice(root.length + 1)));
}

describe('LongFilesFirst', () => {
  it('starts the minute-long files first, in their order, and keeps vitest\'s order (larger first) for the rest', async () => {
    const order = await freshCloneOrder({
      'test/a.test.ts': 5_000,
      'test/conformance/redis.test.ts': 1_000,
      'test/b.test.ts': 9_000,
      'test/soak.test.ts': 1_500,
      'test/c.test.ts': 200,
    });
    expect(order).toEqual(['test/soak.test.ts', 'test/conformance/redis.test.ts', 'test/b.test.ts', 'test/a.test.ts', 'test/c.test.ts']);
  });

  it('names files that exist', () => {
    for (const file of LONG_FILES) expect(existsSync(join(import.meta.dirname, '..', file)), file).toBe(true);
  });
});
