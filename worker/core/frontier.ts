/**
 * The frontier: how far a consumer can safely move its checkpoint through a window of the global
 * log, given which missing positions are known to be permanent holes. Pure; the gap rule
 * (`gap_rule.ts`) decides what is known.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import type { Window } from "./window.ts";

/** The result of {@link computeFrontier}. */
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
  /** The window stopped at a limit: more may follow at once. */
  readonly full: boolean;
}

/**
 * The longest prefix of `window` (read after `checkpoint`) without an unexplained hole. A missing
 * position at or below `settledUpTo` is a known permanent hole and is passed; any other missing
 * position stops the prefix just before its range (a later position is visible, or it would not
 * be missing).
 */
export function computeFrontier(
  checkpoint: number,
  window: Window,
  settledUpTo: number,
): Frontier {
  let target = window.end;
  let hole: number | null = null;
  const passedHoles: Array<readonly [number, number]> = [];
  for (const [from, to] of window.missing) {
    if (from <= checkpoint || to >= window.end || from > to) {
      throw new Error(
        `window's missing range ${from}–${to} is outside ${checkpoint}–${window.end}`,
      );
    }
    if (to > settledUpTo) {
      hole = Math.max(from, settledUpTo + 1);
      target = from - 1;
      break;
    }
    passedHoles.push([from, to]);
  }
  const all = window.events;
  let count = all.length;
  while (count > 0 && all[count - 1].globalPosition > target) count--;
  return {
    target,
    events: count === all.length ? all : all.slice(0, count),
    hole,
    passedHoles,
    highestVisible: window.end,
    full: window.full,
  };
}
