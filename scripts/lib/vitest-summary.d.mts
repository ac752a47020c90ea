/** A vitest JSON report, as far as the summary reads it. */
export interface VitestReport {
  testResults?: Array<{
    name: string;
    status: string;
    message?: string;
    assertionResults?: Array<{ status: string; fullName?: string; title?: string }>;
  }>;
}
/** Test counts of a run. */
export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}
/** Counts of a vitest JSON report; a file that failed outside any test counts as one failure. */
export function summarize(
  report: VitestReport | null,
): Counts & { brokenFiles: Array<{ name: string; message: string }>; skippedTests: string[] };
/** Skipped tests counted as failed unless `allowSkips`; `reason` says why when they were. */
export function judgeSkips<C extends Counts & { skippedTests?: readonly string[] }>(
  counts: C,
  options: { allowSkips: boolean },
): { counts: C; reason: string | null };
/** The closing line: `N passed, N failed` and `, N skipped` when any were. */
export function summaryLine(counts: Counts): string;
