/** The p-th percentile (0..100) of an ascending array, nearest-rank; `NaN` when empty. */
export function percentile(sorted: readonly number[], p: number): number;
/** Count, mean and the percentiles a figure reports. */
export function summarize(samples: readonly number[]): {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
};
/** `value / anchor` to two decimals; `NaN` unless both are positive finite numbers. */
export function ratio(value: number, anchor: number): number;
/** A number for a table cell; `-` when not finite. */
export function formatNumber(value: number | undefined): string;
/** Runs `workers` loops side by side for `seconds`; resolves the requests they made per second. */
export function ratePerSecond(
  workers: number,
  seconds: number,
  loop: (i: number, until: number) => Promise<number>,
): Promise<number>;
