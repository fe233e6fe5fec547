/**
 * A small seeded pseudo-random generator (mulberry32): the same seed gives the same sequence on
 * every runtime, which is what makes a failing simulation replayable.
 *
 * @module
 */

/**
 * Seeded random numbers.
 *
 * @example
 * ```ts
 * import { SeededRandom } from "@eventsalsa/eventsalsa/testing";
 * const random = new SeededRandom(42);
 * console.log(random.int(1, 6), random.pick(["a", "b"]), random.chance(0.5));
 * ```
 */
export class SeededRandom {
  #state: number;

  /** Starts the sequence of `seed` (any integer; taken modulo 2^32). */
  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new TypeError(`seed must be an integer, got ${seed}`);
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer from `min` to `max`, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("pick needs a non-empty list");
    return items[this.int(0, items.length - 1)];
  }

  /** A key chosen with probability proportional to its weight (weights ≥ 0, at least one > 0). */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = (Object.entries(weights) as [K, number][]).filter(([, w]) => w > 0);
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    if (total <= 0) throw new RangeError("weighted needs at least one positive weight");
    let roll = this.next() * total;
    for (const [key, weight] of entries) {
      roll -= weight;
      if (roll < 0) return key;
    }
    return entries[entries.length - 1][0];
  }
}
