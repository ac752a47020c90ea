// Counts tests from vitest's JSON report for the run's closing line.

/**
 * Counts of a vitest JSON report. Tests are counted by their status; a test
 * file that failed without a failed test in it (an import error, a crash in
 * a hook) counts as one failure, so a broken file never goes unnoticed.
 */
export function summarize(report) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  const brokenFiles = [];
  for (const file of report?.testResults ?? []) {
    let failedHere = 0;
    for (const test of file.assertionResults ?? []) {
      if (test.status === 'passed') counts.passed += 1;
      else if (test.status === 'failed') {
        counts.failed += 1;
        failedHere += 1;
      } else counts.skipped += 1; // skipped, pending, todo
    }
    if (file.status === 'failed' && failedHere === 0) {
      counts.failed += 1;
      brokenFiles.push({ name: file.name, message: file.message ?? '' });
    }
  }
  return { ...counts, brokenFiles };
}

/** The closing line: `N passed, N failed` and `, N skipped` when any were. */
export function summaryLine({ passed, failed, skipped }) {
  return `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`;
}
