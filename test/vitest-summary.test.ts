import { describe, expect, it } from 'vitest';
import { judgeSkips, summarize, summaryLine, type VitestReport } from '../scripts/lib/vitest-summary.mjs';

/** A vitest JSON report as vitest writes it for a file with a passing test and three kinds of skip. */
const selfSkipping: VitestReport = {
  testResults: [
    {
      name: '/repo/server/test/self-skip.test.ts',
      status: 'passed',
      message: '',
      assertionResults: [
        { status: 'passed', fullName: 'a suite runs', title: 'runs' },
        { status: 'skipped', fullName: 'a suite is skipped statically', title: 'is skipped statically' },
        { status: 'skipped', fullName: 'a suite skips itself at run time', title: 'skips itself at run time' },
        { status: 'skipped', fullName: 'a conditionally described suite would fail', title: 'would fail' },
      ],
    },
  ],
};

describe('the closing line of npm test', () => {
  it('counts passed, failed and skipped tests and names the skipped ones', () => {
    const counts = summarize(selfSkipping);
    expect(counts).toMatchObject({ passed: 1, failed: 0, skipped: 3 });
    expect(counts.skippedTests).toEqual([
      'a suite is skipped statically',
      'a suite skips itself at run time',
      'a conditionally described suite would fail',
    ]);
  });

  it('counts skipped tests as failed in a run without arguments, and says why', () => {
    const { counts, reason } = judgeSkips(summarize(selfSkipping), { allowSkips: false });
    expect(summaryLine(counts)).toBe('1 passed, 3 failed');
    expect(reason).toMatch(/^3 skipped tests counted as failed: a run of every suite must skip none/);
    expect(reason).toContain('"a suite skips itself at run time"');
  });

  it('lets a run given arguments skip tests, as -t marks the unselected ones skipped', () => {
    const { counts, reason } = judgeSkips(summarize(selfSkipping), { allowSkips: true });
    expect(summaryLine(counts)).toBe('1 passed, 0 failed, 3 skipped');
    expect(reason).toBeNull();
  });

  it('leaves a run that skipped nothing as it was', () => {
    const report: VitestReport = {
      testResults: [{ name: 'a.test.ts', status: 'passed', assertionResults: [{ status: 'passed', fullName: 'a' }] }],
    };
    const { counts, reason } = judgeSkips(summarize(report), { allowSkips: false });
    expect(summaryLine(counts)).toBe('1 passed, 0 failed');
    expect(reason).toBeNull();
  });

  it('names the first skipped tests and counts the rest', () => {
    const many: VitestReport = {
      testResults: [
        {
          name: 'many.test.ts',
          status: 'passed',
          assertionResults: Array.from({ length: 7 }, (_, i) => ({ status: 'skipped', fullName: `t${i}` })),
        },
      ],
    };
    const { counts, reason } = judgeSkips(summarize(many), { allowSkips: false });
    expect(summaryLine(counts)).toBe('0 passed, 7 failed');
    expect(reason).toContain('"t4" and 2 more)');
    expect(reason).not.toContain('"t5"');
  });
});
