import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { LongFilesFirst } from './test/long-files-first.js';

const src = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@lockwire/protocol': src('./shared/src/index.ts'),
      '@lockwire/server': src('./server/src/index.ts'),
      '@lockwire/client': src('./client/src/node.ts'),
    },
  },
  test: {
    include: ['shared/test/**/*.test.ts', 'server/test/**/*.test.ts', 'client/test/**/*.test.ts', 'test/**/*.test.ts'],
    // Builds dist/ and the browser UI once per run; test files never build.
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // At least two files at once, also on a 2-core machine (where vitest's
    // default is one): most files spend their time waiting on sockets, child
    // processes, browsers and timers, so two overlap well, and one at a time
    // does not fit the suite in the run's 15 minutes there. The suites'
    // timing checks are bounded for a shared machine.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // The minute-long files start first, also in a fresh clone (see LongFilesFirst).
    sequence: { sequencer: LongFilesFirst },
  },
});
