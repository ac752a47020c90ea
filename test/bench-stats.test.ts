import { describe, expect, it } from 'vitest';
import { formatNumber, percentile, ratePerSecond, ratio, summarize } from '../bench/lib/stats.mjs';

describe('benchmark statistics', () => {
  it('takes percentiles by nearest rank', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(sorted, 50)).toBe(5);
    expect(percentile(sorted, 90)).toBe(9);
    expect(percentile(sorted, 99)).toBe(10);
    expect(percentile(sorted, 100)).toBe(10);
    expect(percentile(sorted, 0)).toBe(1);
    expect(percentile([42], 99)).toBe(42);
  });

  it('puts p99 of 1000 samples at the 990th smallest', () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(percentile(sorted, 99)).toBe(990);
    expect(percentile(sorted, 50)).toBe(500);
  });

  it('answers NaN for no samples and refuses a percentile outside 0..100', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], -1)).toThrow(RangeError);
  });

  it('summarizes unsorted samples numerically without reordering them', () => {
    const samples = [10, 9, 1, 100, 2, 30];
    const summary = summarize(samples);
    expect(summary).toEqual({ n: 6, mean: 152 / 6, p50: 9, p90: 100, p99: 100, max: 100 });
    expect(samples).toEqual([10, 9, 1, 100, 2, 30]);
  });

  it('runs every worker with one deadline and rates the sum of their requests over the time taken', async () => {
    const seen: [number, number][] = [];
    const before = performance.now();
    const rate = await ratePerSecond(3, 2, async (i, until) => {
      seen.push([i, until]);
      return i + 1;
    });
    const after = performance.now();
    expect(seen.map(([i]) => i)).toEqual([0, 1, 2]);
    const until = seen[0]?.[1] ?? Number.NaN;
    expect(seen.every(([, u]) => u === until)).toBe(true);
    expect(until).toBeGreaterThanOrEqual(before + 2000);
    expect(until).toBeLessThanOrEqual(after + 2000);
    expect(rate).toBeGreaterThanOrEqual(6 / ((after - before) / 1000));
  });

  it('rounds ratios to two decimals and refuses what cannot be compared', () => {
    expect(ratio(1, 3)).toBe(0.33);
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(Number.NaN, 1)).toBeNaN();
  });

  it('formats table numbers to three significant digits and groups large ones', () => {
    expect(formatNumber(0.123456)).toBe('0.123');
    expect(formatNumber(12.345)).toBe('12.3');
    expect(formatNumber(123456.7)).toBe('123,457');
    expect(formatNumber(Number.NaN)).toBe('-');
  });
});
