// How a figure's row states its target.

/**
 * A target that names a size (10,000 idle connections, 1,000,000 held keys,
 * 10 against 10,000 waiters) is judged only by a run that measured at that
 * size, the full run (`full`, its sizes). A quick run measures smaller
 * sizes, where fixed costs weigh differently, so its row says what the
 * target is and that this run does not judge it (`met: null`). `names`: the
 * sizes the figure measured at; `at`: the target's size, in words; `met`:
 * whether the value meets the target. Returns the row's `target` and `met`.
 */
export function sizedTarget(sizes, full, names, target, at, met) {
  const atFullSize = names.every((name) => JSON.stringify(sizes[name]) === JSON.stringify(full[name]));
  return atFullSize ? { target, met } : { target: `${target} at ${at} (not judged at this run's size)`, met: null };
}
