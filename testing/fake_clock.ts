import { type Clock, sleepWith } from "../internal/clock.ts";

const realSetTimeout = globalThis.setTimeout;

/** Lets pending promise callbacks run: one real macrotask turn drains every queued microtask. */
function settle(): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, 0));
}

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A clock that only moves when told to. Timers fire in due-time order (ties in creation order)
 * during {@link FakeClock.advance}, which lets pending promise callbacks run after each timer so
 * async code scheduled by one timer can schedule the next within the same advance.
 *
 * @example
 * ```ts
 * import { FakeClock } from "@eventsalsa/eventsalsa/testing";
 * const clock = new FakeClock(0);
 * let woke = false;
 * clock.sleep(1000).then(() => (woke = true));
 * await clock.advance(999); // woke === false
 * await clock.advance(1); // woke === true
 * ```
 */
export class FakeClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers: Timer[] = [];

  /** Starts at `start` milliseconds since the epoch (0 when omitted). */
  constructor(start = 0) {
    this.#now = start;
  }

  /** The fake time in milliseconds. */
  now(): number {
    return this.#now;
  }

  /** Resolves when the fake time has moved `ms` forward; rejects if `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Schedules `callback` at now + `ms` (negative counts as 0). */
  setTimeout(callback: () => void, ms: number): number {
    const timer = { id: this.#nextId++, at: this.#now + Math.max(0, ms), callback };
    this.#timers.push(timer);
    return timer.id;
  }

  /** Cancels a pending timer. */
  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((timer) => timer.id !== handle);
  }

  /** How many timers are waiting. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** When the next timer is due, or null when none is pending. */
  nextTimerAt(): number | null {
    return this.#timers.reduce<number | null>(
      (min, t) => (min === null || t.at < min ? t.at : min),
      null,
    );
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way, in order, at its own
   * due time. Pending promise callbacks run before and after each timer.
   */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advance needs ms >= 0, got ${ms}`);
    const target = this.#now + ms;
    await settle();
    for (;;) {
      const due = this.#timers
        .filter((timer) => timer.at <= target)
        .sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((timer) => timer !== due);
      this.#now = Math.max(this.#now, due.at);
      due.callback();
      await settle();
    }
    this.#now = target;
  }

  /** Advances to the next pending timer and fires it (and any due at the same time). */
  async runNext(): Promise<boolean> {
    const at = this.nextTimerAt();
    if (at === null) return false;
    await this.advance(Math.max(0, at - this.#now));
    return true;
  }
}
