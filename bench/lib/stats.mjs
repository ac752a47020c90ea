// Statistics of latency samples, shared by every figure of the benchmark.

/**
 * The p-th percentile (0..100) of an ascending array, by the nearest-rank
 * method: the smallest sample such that at least p% of the samples are
 * less than or equal to it. `NaN` for an empty array.
 * @param {readonly number[]} sorted ascending samples
 * @param {number} p percentile, 0 to 100
 * @returns {number}
 */
export function percentile(sorted, p) {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return /** @type {number} */ (sorted[rank - 1]);
}

/**
 * Count, mean and the percentiles a figure reports; does not modify `samples`.
 * @param {readonly number[]} samples
 * @returns {{ n: number, mean: number, p50: number, p90: number, p99: number, max: number }}
 */
export function summarize(samples) {
  const sorted = Float64Array.from(samples).sort();
  const values = Array.from(sorted);
  const mean = values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
  return {
    n: values.length,
    mean,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length === 0 ? Number.NaN : /** @type {number} */ (values[values.length - 1]),
  };
}

/**
 * `value / anchor`, rounded to two decimals; `NaN` when either is not a
 * positive finite number (a figure that could not be measured).
 * @param {number} value
 * @param {number} anchor
 * @returns {number}
 */
export function ratio(value, anchor) {
  if (!(value >= 0 && Number.isFinite(value)) || !(anchor > 0 && Number.isFinite(anchor))) return Number.NaN;
  return Math.round((value / anchor) * 100) / 100;
}

/**
 * A number for a table cell: 3 significant digits below 1000, else grouped
 * integers; `-` for `NaN`/`undefined`.
 * @param {number | undefined} value
 * @returns {string}
 */
export function formatNumber(value) {
  if (value === undefined || !Number.isFinite(value)) return '-';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return Number(value.toPrecision(3)).toString();
}

/**
 * Runs `workers` loops side by side for `seconds` and resolves the requests
 * they answered per second. `loop(i, until)` runs worker `i` until
 * `performance.now()` passes `until` and resolves how many requests it made.
 */
export async function ratePerSecond(workers, seconds, loop) {
  const start = performance.now();
  const until = start + seconds * 1000;
  const counts = await Promise.all(Array.from({ length: workers }, (_, i) => loop(i, until)));
  return counts.reduce((a, b) => a + b, 0) / ((performance.now() - start) / 1000);
}
