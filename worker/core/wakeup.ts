/**
 * Wakeups: a broadcast that dispatchers signal and consumer loops wait on. Unlike a plain
 * event, a signal is never lost while a consumer is busy: each loop remembers the generation it
 * last saw, and a wait returns at once if the generation moved since.
 *
 * @module
 */
import type { Clock } from "../../internal/clock.ts";

/**
 * A generation counter with waiters.
 */
export class Wakeup {
  #generation = 0;
  #waiters = new Set<() => void>();

  /** Increases with every signal. */
  get generation(): number {
    return this.#generation;
  }

  /** Wakes every waiter. */
  signal(): void {
    this.#generation++;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /**
   * Waits until a signal newer than `seenGeneration`, `ms` on `clock`, or `signal` aborts
   * (resolves `"aborted"`, never rejects).
   */
  wait(
    seenGeneration: number,
    ms: number,
    clock: Clock,
    signal?: AbortSignal,
  ): Promise<"woken" | "timeout" | "aborted"> {
    if (signal?.aborted) return Promise.resolve("aborted");
    if (this.#generation !== seenGeneration) return Promise.resolve("woken");
    return new Promise((resolve) => {
      const finish = (result: "woken" | "timeout" | "aborted") => {
        clock.clearTimeout(timer);
        this.#waiters.delete(onWake);
        signal?.removeEventListener("abort", onAbort);
        resolve(result);
      };
      const onWake = () => finish("woken");
      const onAbort = () => finish("aborted");
      const timer = clock.setTimeout(() => finish("timeout"), ms);
      this.#waiters.add(onWake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/**
 * Sleeps `ms` on `clock`; resolves false instead of rejecting when `signal` aborts first.
 */
export async function pause(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await clock.sleep(ms, signal);
    return true;
  } catch (error) {
    if (signal.aborted) return false;
    throw error;
  }
}

/** A promise that rejects with the signal's reason when it aborts (at once if it already has). */
export function rejectOnAbort(signal: AbortSignal): Promise<never> {
  const rejection = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  rejection.catch(() => {});
  return rejection;
}
