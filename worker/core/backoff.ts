/**
 * Back-off arithmetic: the idle poll interval, the retry delay after failures, and the reconnect
 * delay of the notify listener. Pure functions, no timers.
 *
 * @module
 */

/**
 * The next idle wait: double `current`, capped at `max`; `base` when `current` is not positive.
 */
export function nextPollInterval(current: number, max: number, base: number): number {
  if (!(current > 0)) return base;
  const next = current * 2;
  return Number.isFinite(next) && next < max ? next : Math.max(max, base);
}

/**
 * The wait before retry number `failures` (1-based): `base · 2^(failures-1)`, capped at `max`.
 */
export function failureBackoff(failures: number, base: number, max: number): number {
  if (failures <= 1) return Math.min(base, max);
  const delay = base * 2 ** Math.min(failures - 1, 52);
  return Number.isFinite(delay) && delay < max ? delay : max;
}
