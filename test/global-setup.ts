// Vitest global setup: builds what the suites run from dist/ once per run,
// before any test file starts. Suites that spawn `server/bin/lockwire.mjs`
// need the compiled server; browser suites need server/dist/ui/. Building
// here, once, means no two test files compile into dist/ at the same time,
// and a failed build fails the whole run instead of quietly emptying a suite.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Runs `node <args>` in the repository root; throws with its output when it fails. */
function runNode(what: string, args: string[]): void {
  const result = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  if (result.error) throw new Error(`${what} could not run: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${what} failed (${result.status ?? result.signal}); no test ran:\n${result.stdout}${result.stderr}`);
  }
}

/**
 * Compiles every package (`tsc -b`, incremental: quick when up to date) and
 * builds the browser UI and client bundle (scripts/build-ui.mjs).
 *
 * @throws Error with the compiler's or esbuild's output when either fails,
 * which stops the vitest run.
 */
export default function setup(): void {
  runNode('tsc -b', [join(root, 'node_modules/typescript/bin/tsc'), '-b']);
  runNode('scripts/build-ui.mjs', [join(root, 'scripts/build-ui.mjs')]);
}
