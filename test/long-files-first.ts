import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take a minute or more on a 2-core machine, longest first,
 * then small files that take 10 s or more. vitest orders a run by the
 * durations it recorded in earlier runs, and with none (a fresh clone, as
 * on CI) by file size, larger first: the soak's and the Redis conformance
 * suite's are small files, which would then start among the last, and the
 * run would end with one worker on a minute-long file while the others sit
 * idle.
 */
export const LONG_FILES: readonly string[] = [
  'test/soak.test.ts',
  'test/cli-run.test.ts',
  'test/conformance/redis.test.ts',
  'test/cli-tools.test.ts',
  'test/browser/web-locks-differential.test.ts',
  'test/redis-memory-differential-sessions.test.ts',
  'test/conformance/redis-cluster.test.ts',
  'test/redis-memory-differential-sessions-cluster.test.ts',
];

/** vitest's own order, with `LONG_FILES` moved to the front. */
export class LongFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification) => {
      const at = LONG_FILES.indexOf(relative(this.ctx.config.root, file.moduleId));
      return at < 0 ? LONG_FILES.length : at;
    };
    // Array#sort is stable: every other file keeps vitest's order.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
