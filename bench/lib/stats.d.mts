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
