#!/usr/bin/env node
// `npm test`: prepares a machine from a clean clone and runs every suite.
//   1. Debian packages the suites need (redis-server, chromium, openssl), via apt-get.
//   2. npm dependencies (npm ci / npm install when stale), then `tsc -b`, the
//      type check of the tests (tsconfig.tests.json) and the browser UI
//      build (scripts/build-ui.mjs).
//   3. vitest with the root config; extra arguments pass through
//      (`npm test -- server/test/engine.test.ts`).
// The last line printed is `N passed, N failed[, N skipped]`; the exit code
// is non-zero when anything failed or no test ran. A run without arguments
// (as in CI) must skip nothing: skipped tests count as failed, and the line
// before the closing one names them.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureNodeModules, typecheck, typecheckTests } from './lib/npm-install.mjs';
import { ensureOsPackages } from './lib/os-packages.mjs';
import { judgeSkips, summarize, summaryLine } from './lib/vitest-summary.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const startedAt = Date.now();
// The whole run must finish within 15 minutes; vitest gets what is left of
// this budget after installing, less a minute kept for stopping it and
// reporting (LOCKWIRE_TEST_TIMEOUT_MS overrides the 14 minutes).
const budgetMs = Number(process.env.LOCKWIRE_TEST_TIMEOUT_MS) || 14 * 60_000;
/** Below this, the suites cannot run in what is left, and the run fails before starting them. */
const MIN_VITEST_MS = 60_000;

const log = (line) => process.stdout.write(`[test] ${line}\n`);

function fail(message) {
  process.stderr.write(`[test] error: ${message}\n`);
  process.stdout.write(`${summaryLine({ passed: 0, failed: 1, skipped: 0 })}\n`);
  process.exit(1);
}

function runVitest(args, reportPath, timeoutMs) {
  const vitestArgs = [
    '--no-install',
    'vitest',
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${reportPath}`,
    ...args,
  ];
  log(`$ npx ${vitestArgs.join(' ')}`);
  return new Promise((resolve) => {
    // Own process group, so a timeout ends vitest and every worker it forked.
    const child = spawn('npx', vitestArgs, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    let timedOut = false;
    const killGroup = (signal) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      process.stderr.write(`[test] error: vitest still running after ${Math.round(timeoutMs / 1000)} s; stopping it\n`);
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 10_000).unref();
    }, timeoutMs);
    const forward = (signal) => killGroup(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, error, timedOut });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve({ code: code ?? (signal ? 128 : 1), error: null, timedOut });
    });
  });
}

function readReport(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

async function main() {
  const osFailure = ensureOsPackages(log);
  if (osFailure) fail(osFailure);
  const installFailure = ensureNodeModules(log, root);
  if (installFailure) fail(`npm dependencies could not be installed: ${installFailure}`);
  const typeFailure = typecheck(log, root);
  if (typeFailure) fail(`type check failed: ${typeFailure}`);
  const testTypeFailure = typecheckTests(log, root);
  if (testTypeFailure) fail(`type check of the tests failed (errors above): ${testTypeFailure}`);
  log('$ node scripts/build-ui.mjs');
  const ui = spawnSync(process.execPath, [join(root, 'scripts/build-ui.mjs')], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (ui.status !== 0) fail('the browser UI build (scripts/build-ui.mjs) failed; see the output above');

  const remaining = budgetMs - (Date.now() - startedAt);
  if (remaining < MIN_VITEST_MS) {
    fail(
      `installing and building took ${Math.round((Date.now() - startedAt) / 1000)} s of the ` +
        `${Math.round(budgetMs / 1000)} s budget; the ${Math.max(0, Math.round(remaining / 1000))} s left ` +
        `are too few to run the suites (at least ${MIN_VITEST_MS / 1000} s)`,
    );
  }
  const tempDir = mkdtempSync(join(tmpdir(), 'lockwire-test-'));
  const reportPath = join(tempDir, 'vitest-report.json');
  try {
    const args = process.argv.slice(2);
    const result = await runVitest(args, reportPath, remaining);
    const report = readReport(reportPath);
    const judged = judgeSkips(summarize(report), { allowSkips: args.length > 0 });
    const counts = judged.counts;
    const problems = [];
    if (result.error) problems.push(`vitest could not run: ${result.error.message}`);
    if (result.timedOut) problems.push('vitest was stopped by the time budget');
    if (report === null) problems.push('vitest wrote no JSON report');
    for (const file of counts.brokenFiles) {
      problems.push(`${file.name} failed outside any test: ${file.message.split('\n')[0]}`);
    }
    const ran = counts.passed + counts.failed;
    // A non-zero exit with no failed test (an unhandled error, a crash, the
    // time budget) still fails the run, and the count must show it. Only
    // "no test files found" stays `0 passed, 0 failed`.
    const foundNothing = report !== null && ran === 0 && !result.timedOut;
    if (result.code !== 0 && counts.failed === 0 && !foundNothing) {
      problems.push(`vitest exited with code ${String(result.code)} although no test failed`);
      counts.failed = 1;
    }
    if (counts.passed + counts.failed === 0) problems.push('no test ran');
    for (const problem of problems) process.stderr.write(`[test] ${problem}\n`);
    log(`finished in ${Math.round((Date.now() - startedAt) / 1000)} s`);
    if (judged.reason !== null) log(judged.reason);
    process.stdout.write(`${summaryLine(counts)}\n`);
    process.exitCode = counts.failed > 0 || counts.passed === 0 ? 1 : 0;
  } finally {
    rmSync(tempDir, { recursive: true, force: true });
  }
}

await main();
