/**
 * Clocks for the multi-worker simulation: {@link SimulationClock}, a fake clock that lets pending
 * promise work run after every timer with a `setImmediate` turn (about a thousand times cheaper
 * than a `setTimeout(0)` turn, which is what makes hundreds of simulated seconds per test cheap),
 * and {@link PausableClock}, one worker's view of it that can be frozen like a stopped process.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { type Clock, sleepWith } from "../internal/clock.ts";

/** One turn of the event loop: every queued promise callback runs before it ends. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A fake clock for simulations: time moves only in {@link SimulationClock.advance}, timers fire
 * in due-time order (ties in creation order), and pending promise work runs after each timer.
 * Only for code whose asynchrony is promises and these timers (in-memory adapters): real I/O
 * would not complete within one event-loop turn.
 *
 * @example
 * ```ts
 * import { SimulationClock } from "@eventsalsa/eventsalsa/testing";
 * const clock = new SimulationClock(0);
 * const fired: number[] = [];
 * clock.setTimeout(() => fired.push(clock.now()), 500);
 * await clock.advance(1_000);
 * console.log(fired); // [500]
 * ```
 */
export class SimulationClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers = new Map<number, Timer>();

  /** Starts at `start` ms since the epoch. */
  constructor(start = 0) {
    this.#now = start;
  }

  /** The simulated time. */
  now(): number {
    return this.#now;
  }

  /** Resolves when simulated time has moved `ms` on; rejects if `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Schedules `callback` at now + `ms`. */
  setTimeout(callback: () => void, ms: number): number {
    const id = this.#nextId++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  /** Cancels a timer. */
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** How many timers are pending. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Lets pending promise work run without moving time. */
  settle(): Promise<void> {
    return settle();
  }

  /** Moves time `ms` forward, firing due timers in order, each at its own time. */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advance needs ms >= 0, got ${ms}`);
    const target = this.#now + ms;
    await settle();
    for (;;) {
      let due: Timer | null = null;
      for (const timer of this.#timers.values()) {
        if (timer.at <= target && (due === null || timer.at < due.at)) due = timer;
      }
      if (due === null) break;
      this.#timers.delete(due.id);
      this.#now = Math.max(this.#now, due.at);
      due.callback();
      await settle();
    }
    this.#now = target;
  }
}

/**
 * One process's view of a shared clock that can be paused: while paused, its timers that fall
 * due are held back and fire together on {@link PausableClock.resume}, as in a process that was
 * stopped (SIGSTOP, a long GC pause, a frozen VM) and continues. `now()` always reads the shared
 * time.
 *
 * @example
 * ```ts
 * import { PausableClock, SimulationClock } from "@eventsalsa/eventsalsa/testing";
 * const shared = new SimulationClock(0);
 * const clock = new PausableClock(shared);
 * let fired = false;
 * clock.setTimeout(() => (fired = true), 100);
 * clock.pause();
 * await shared.advance(1_000); // fired === false
 * clock.resume(); // fired === true
 * ```
 */
export class PausableClock implements Clock {
  readonly #base: Clock;
  #paused = false;
  #nextId = 1;
  readonly #handles = new Map<number, unknown>();
  readonly #held = new Map<number, () => void>();

  /** A view of `base`. */
  constructor(base: Clock) {
    this.#base = base;
  }

  /** Whether the clock is paused. */
  get paused(): boolean {
    return this.#paused;
  }

  /** The shared time. */
  now(): number {
    return this.#base.now();
  }

  /** Sleeps on this view (held while paused). */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Schedules `callback`; held back while paused. */
  setTimeout(callback: () => void, ms: number): number {
    const id = this.#nextId++;
    this.#handles.set(
      id,
      this.#base.setTimeout(() => {
        this.#handles.delete(id);
        if (this.#paused) this.#held.set(id, callback);
        else callback();
      }, ms),
    );
    return id;
  }

  /** Cancels a timer, pending or held. */
  clearTimeout(handle: unknown): void {
    const id = handle as number;
    const inner = this.#handles.get(id);
    if (inner !== undefined) this.#base.clearTimeout(inner);
    this.#handles.delete(id);
    this.#held.delete(id);
  }

  /** Freezes this view's timers. */
  pause(): void {
    this.#paused = true;
  }

  /** Unfreezes it; held timers fire now, in the order they fell due. */
  resume(): void {
    this.#paused = false;
    const held = [...this.#held.values()];
    this.#held.clear();
    for (const callback of held) callback();
  }
}
