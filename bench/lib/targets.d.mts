/** The row's target and met for a target stated at the full run's sizes (see targets.mjs). */
export function sizedTarget(
  sizes: Record<string, unknown>,
  full: Record<string, unknown>,
  names: readonly string[],
  target: string,
  at: string,
  met: boolean,
): { target: string; met: boolean | null };
