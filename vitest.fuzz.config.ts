import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run fuzz`: the randomised programs of test/fuzz, which `npm test` does not run.
export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/fuzz/**/*.fuzz.ts'], maxWorkers: 1 },
});
