import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ToolProcess } from './helpers/tool-process.js';

/**
 * `npm run bench` end to end on three of its lightest figures (a quick run):
 * the runner starts the servers and the anchor, measures, and writes its
 * results as JSON and as a markdown table. The figures' values are not
 * judged here (speed is measured by the benchmark, not by tests), only that
 * each is there, beside its anchor and ratio where it has one.
 */
const out = mkdtempSync(join(tmpdir(), 'lockwire-bench-run-'));
const started: ToolProcess[] = [];

afterAll(() => {
  for (const run of started) run.kill();
  rmSync(out, { recursive: true, force: true });
});

function bench(args: string[]): ToolProcess {
  const run = new ToolProcess(process.execPath, ['bench/run.mjs', '--no-build', ...args]);
  started.push(run);
  return run;
}

interface Row {
  figure: string;
  value: number;
  unit: string;
  anchor?: number;
  anchorLabel?: string;
  ratio?: number;
  target: string;
  met: boolean | null;
}

describe('the benchmark runner', () => {
  it('writes a quick run of the named figures as JSON and as a markdown table, each beside its anchor and ratio', async () => {
    const run = bench(['--quick', '--only=round-trip,heap,watch', `--out=${out}`]);
    expect(await run.waitForExit(60_000)).toEqual({ code: 0, signal: null });

    const results = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { mode: string; machine: { node: string }; rows: Row[] };
    expect(results.mode).toBe('quick');
    expect(results.machine.node).toBe(process.version);
    expect(results.rows.map((row) => row.figure)).toEqual([
      'round trip p50, one client',
      'round trip p99, one client',
      'server CPU per request (user+system), one client',
      'watch fan-out, 1000 watchers, event latency p99',
      'watch fan-out, JSON serialisations per event',
      'JS heap per held lock, 100,000 keys held (memory store)',
      'JS heap per queued waiter, 20,000 waiters (memory store)',
    ]);
    const [p50, , , fanOut, encodes, perLock, perWaiter] = results.rows as [Row, Row, Row, Row, Row, Row, Row];
    expect(p50).toMatchObject({ unit: 'ms', anchorLabel: 'echo p50', target: '<= 1.3x echo' });
    expect(p50.value).toBeGreaterThan(0);
    expect(p50.anchor).toBeGreaterThan(0);
    expect(p50.ratio).toBeCloseTo(p50.value / (p50.anchor ?? Number.NaN), 1);
    expect(p50.met).toBe((p50.ratio ?? Number.POSITIVE_INFINITY) <= 1.3);
    // Watch fan-out beside the bare broadcast of the same event text to as many watchers.
    expect(fanOut).toMatchObject({ unit: 'ms', target: '<= 20 ms' });
    expect(fanOut.anchorLabel).toMatch(/^bare ws broadcast of the same \d+-byte frame, p99$/);
    expect(fanOut.anchor).toBeGreaterThan(0);
    expect(fanOut.ratio).toBeCloseTo(fanOut.value / (fanOut.anchor ?? Number.NaN), 1);
    expect(encodes).toMatchObject({ value: 1, met: true });
    // Measured at a tenth of the target's size: the row states the target, and the quick run does not judge it.
    expect(perLock).toMatchObject({ unit: 'B', target: "<= 300 B at 1,000,000 keys (not judged at this run's size)", met: null });
    expect(perLock.value).toBeGreaterThan(0);
    expect(perWaiter).toMatchObject({ unit: 'B', target: "<= 500 B at 100,000 waiters (not judged at this run's size)", met: null });

    const markdown = readFileSync(join(out, 'latest.md'), 'utf8');
    expect(markdown).toMatch(/^# lockwire benchmark \(quick run\)$/m);
    expect(markdown).toContain('| figure | value | anchor (same run) | ratio | target | met |');
    expect(markdown).toMatch(/^\| round trip p50, one client \| [\d.]+ ms \| [\d.]+ ms \(echo p50\) \| [\d.]+x \| <= 1\.3x echo \| (yes|\*\*no\*\*) \|$/m);
    expect(markdown).toMatch(/^\| JS heap per held lock, 100,000 keys held \(memory store\).* \| <= 300 B at 1,000,000 keys \(not judged at this run's size\) \|  \|$/m);
    expect(run.text('stderr')).toContain(`results in ${out}/latest.{json,md}`);
  });

  it('refuses an unknown figure with exit 2, naming the known ones, and writes nothing', async () => {
    const elsewhere = join(out, 'unknown');
    const run = bench(['--quick', '--only=round-trip,no-such-figure', `--out=${elsewhere}`]);
    expect(await run.waitForExit()).toEqual({ code: 2, signal: null });
    expect(run.text('stderr')).toMatch(/unknown figure\(s\) no-such-figure; known: throughput, round-trip, .*heap/);
    expect(existsSync(elsewhere)).toBe(false);
  });
});
