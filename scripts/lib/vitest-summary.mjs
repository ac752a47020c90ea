// Counts tests from vitest's JSON report for the run's closing line.

/**
 * Counts of a vitest JSON report. Tests are counted by their status; a test
 * file that failed without a failed test in it (an import error, a crash in
 * a hook) counts as one failure, so a broken file never goes unnoticed.
 */
export function summarize(report) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  const brokenFiles = [];
  const skippedTests = [];
  for (const file of report?.testResults ?? []) {
    let failedHere = 0;
    for (const test of file.assertionResults ?? []) {
      if (test.status === 'passed') counts.passed += 1;
      else if (test.status === 'failed') {
        counts.failed += 1;
        failedHere += 1;
      } else {
        // skipped, pending, todo
        counts.skipped += 1;
        skippedTests.push(test.fullName ?? test.title ?? '(unnamed test)');
      }
    }
    if (file.status === 'failed' && failedHere === 0) {
      counts.failed += 1;
      brokenFiles.push({ name: file.name, message: file.message ?? '' });
    }
  }
  return { ...counts, brokenFiles, skippedTests };
}

/** Skipped tests named in the reason before the run is cut short. */
const NAMED_SKIPS = 5;

/**
 * Applies the rule that a run of every suite skips nothing: the suites hold
 * no `.skip`, `skipIf` or run-time `skip()`, so a skipped test there is a
 * test that silently stopped checking. With `allowSkips` (a run given
 * arguments, where `-t` marks every unselected test skipped) the counts pass
 * through. Otherwise skipped tests move to `failed`, and `reason` says why,
 * to be printed just before the closing line; `reason` is null when nothing
 * was skipped.
 */
export function judgeSkips(counts, { allowSkips }) {
  if (allowSkips || counts.skipped === 0) return { counts, reason: null };
  const names = counts.skippedTests ?? [];
  const named = names.slice(0, NAMED_SKIPS).map((name) => `"${name}"`).join(', ');
  const more = names.length > NAMED_SKIPS ? ` and ${names.length - NAMED_SKIPS} more` : '';
  const reason =
    `${counts.skipped} skipped test${counts.skipped === 1 ? '' : 's'} counted as failed: ` +
    `a run of every suite must skip none (${named}${more})`;
  return { counts: { ...counts, failed: counts.failed + counts.skipped, skipped: 0 }, reason };
}

/** The closing line: `N passed, N failed` and `, N skipped` when any were. */
export function summaryLine({ passed, failed, skipped }) {
  return `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`;
}
