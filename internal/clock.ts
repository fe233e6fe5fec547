/**
 * The clock port: everything in eventsalsa that waits or reads the time goes through it, so tests
 * can drive time with the `FakeClock` of `@eventsalsa/eventsalsa/testing`.
 *
 * @example
 * ```ts
 * import { type Clock, systemClock } from "@eventsalsa/eventsalsa/worker";
 * const clock: Clock = systemClock;
 * await clock.sleep(10);
 * ```
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `callback` once after `ms`; returns a handle for {@link Clock.clearTimeout}. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a timer from {@link Clock.setTimeout}; unknown handles are ignored. */
  clearTimeout(handle: unknown): void;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

/** Shared by every clock: a sleep is a timer that an abort signal can cancel. */
export function sleepWith(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(abortReason(signal!));
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The real clock: `Date.now()` and the platform timers.
 *
 * @example
 * ```ts
 * import { systemClock } from "@eventsalsa/eventsalsa/worker";
 * console.log(new Date(systemClock.now()).toISOString());
 * ```
 */
export const systemClock: Clock = {
  now: (): number => Date.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(systemClock, ms, signal);
  },
  setTimeout: (callback: () => void, ms: number): unknown => setTimeout(callback, ms),
  clearTimeout: (handle: unknown): void => clearTimeout(handle as number),
};
