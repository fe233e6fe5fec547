/**
 * Back-off arithmetic: the idle poll interval, the retry delay after failures, and the reconnect
 * delay of the notify listener. Pure functions, no timers.
 *
 * @module
 */

/**
 * The next idle wait: double `current`, capped at `max`; `base` when `current` is not positive.
 *
 * @example
 * ```ts
 * import { nextPollInterval } from "@eventsalsa/eventsalsa/worker";
 * console.log(nextPollInterval(1_000, 30_000, 1_000)); // 2000
 * console.log(nextPollInterval(16_000, 30_000, 1_000)); // 30000
 * ```
 */
export function nextPollInterval(current: number, max: number, base: number): number {
  if (!(current > 0)) return base;
  const next = current * 2;
  return Number.isFinite(next) && next < max ? next : Math.max(max, base);
}

/**
 * The wait before retry number `failures` (1-based): `base · 2^(failures-1)`, capped at `max`.
 *
 * @example
 * ```ts
 * import { failureBackoff } from "@eventsalsa/eventsalsa/worker";
 * console.log([1, 2, 3].map((n) => failureBackoff(n, 1_000, 30_000))); // [1000, 2000, 4000]
 * ```
 */
export function failureBackoff(failures: number, base: number, max: number): number {
  if (failures <= 1) return Math.min(base, max);
  const delay = base * 2 ** Math.min(failures - 1, 52);
  return Number.isFinite(delay) && delay < max ? delay : max;
}
