/**
 * The frontier: how far a consumer can safely move its checkpoint through a window of the global
 * log, given which missing positions are known to be permanent holes. Pure; the gap rule
 * (`gap_rule.ts`) decides what is known.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";

/**
 * The result of {@link computeFrontier}.
 *
 * @example
 * ```ts
 * import { computeFrontier, type Frontier } from "@eventsalsa/eventsalsa/worker";
 * const at = (globalPosition: number) => ({ globalPosition }) as never;
 * const frontier: Frontier = computeFrontier(0, [at(1), at(3)], 0);
 * console.log(frontier.target, frontier.hole, frontier.highestVisible); // 1 2 3
 * ```
 */
export interface Frontier {
  /** The highest position the checkpoint may move to (the old checkpoint when it may not move). */
  readonly target: number;
  /** The window's events up to `target`, in order. */
  readonly events: readonly PersistedEvent[];
  /**
   * The first missing position that is not known to be permanent while a later position is
   * visible: the consumer must wait here. Null when nothing blocks.
   */
  readonly hole: number | null;
  /** Missing positions up to `target` that were passed as known holes, as inclusive ranges. */
  readonly passedHoles: ReadonlyArray<readonly [number, number]>;
  /** The highest position in the window, or the checkpoint when the window is empty. */
  readonly highestVisible: number;
  /** How many events the window held (a full window means more may follow). */
  readonly windowSize: number;
}

/**
 * Walks `window` (events after `checkpoint`, ascending, as read) and returns the longest prefix
 * without an unexplained hole. A missing position at or below `settledUpTo` is a known permanent
 * hole and is passed; any other missing position followed by a visible event stops the walk.
 *
 * @example
 * ```ts
 * import { computeFrontier } from "@eventsalsa/eventsalsa/worker";
 * const at = (globalPosition: number) => ({ globalPosition }) as never;
 * const f = computeFrontier(0, [at(1), at(2), at(4)], 0);
 * console.log(f.target, f.hole); // 2 3
 * ```
 */
export function computeFrontier(
  checkpoint: number,
  window: readonly PersistedEvent[],
  settledUpTo: number,
): Frontier {
  let expected = checkpoint + 1;
  let count = 0;
  let hole: number | null = null;
  const passedHoles: Array<readonly [number, number]> = [];
  for (const event of window) {
    const position = event.globalPosition;
    if (position < expected) {
      throw new Error(
        `window is not ascending after the checkpoint: ${position} after ${expected - 1}`,
      );
    }
    if (position > expected) {
      if (position - 1 > settledUpTo) {
        hole = Math.max(expected, settledUpTo + 1);
        break;
      }
      passedHoles.push([expected, position - 1]);
    }
    count++;
    expected = position + 1;
  }
  const events = count === window.length ? window : window.slice(0, count);
  return {
    target: count === 0 ? checkpoint : events[count - 1].globalPosition,
    events,
    hole,
    passedHoles,
    highestVisible: window.length === 0 ? checkpoint : window[window.length - 1].globalPosition,
    windowSize: window.length,
  };
}
