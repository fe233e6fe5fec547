/**
 * A consumer's window of the log: what one read returns and how a filtered read is cut. Pure;
 * the in-memory adapter builds windows with {@link windowOf}, the PostgreSQL adapter computes the
 * same window in one statement (worker/postgres/window_sql.ts), and a contract test holds the two
 * to each other.
 *
 * A consumer with type filters gets full rows only for the events it handles; the gap rule still
 * sees every position of the window, as its highest visible position (`end`) and the ranges
 * missing below it. So a window covers many positions (`scan`) for few events (`limit`), and a
 * consumer of a rare type costs in proportion to its matches, plus a cheap pass over positions.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";

/** The types a consumer handles: null lists (or no filter at all) match every event. */
export interface TypeFilter {
  readonly aggregateTypes: readonly string[] | null;
  readonly eventTypes: readonly string[] | null;
}

/** What one window read asks for. */
export interface WindowSpec {
  /** Read after this position (the consumer's checkpoint). */
  readonly after: number;
  /** At most this many matching events; the window ends before the next one. */
  readonly limit: number;
  /**
   * The window covers positions up to `after + scan` (or up to the first visible one, if that is
   * further): at least `limit`.
   */
  readonly scan: number;
  /** Which events are returned, or null for all. */
  readonly filter: TypeFilter | null;
}

/** The window a read returns (without the gap rule's resolution check). */
export interface Window {
  /** The matching events in the window, ascending. */
  readonly events: readonly PersistedEvent[];
  /** The window's highest visible position (`after` when nothing is visible). */
  readonly end: number;
  /** Ranges of positions missing between `after` and `end`, ascending, inclusive. */
  readonly missing: ReadonlyArray<readonly [number, number]>;
  /** A visible event lies past the window: more follows at once. */
  readonly full: boolean;
}

/** The filter of a consumer's type lists: null when neither narrows anything. */
export function typeFilter(
  aggregateTypes: readonly string[] | undefined,
  eventTypes: readonly string[] | undefined,
): TypeFilter | null {
  const list = (types: readonly string[] | undefined) =>
    types === undefined || types.length === 0 ? null : types;
  const filter = { aggregateTypes: list(aggregateTypes), eventTypes: list(eventTypes) };
  return filter.aggregateTypes === null && filter.eventTypes === null ? null : filter;
}

/** Whether `event` passes `filter`. */
export function matchesFilter(filter: TypeFilter | null, event: PersistedEvent): boolean {
  if (filter === null) return true;
  return (filter.aggregateTypes === null || filter.aggregateTypes.includes(event.aggregateType)) &&
    (filter.eventTypes === null || filter.eventTypes.includes(event.eventType));
}

/** Most positions a window reaches per event it may return: a 1 % type fills its batch in one read. */
export const MAX_REACH = 100;
/** Most positions one window reaches (a statement of tens of milliseconds on PostgreSQL). */
const MAX_SCAN = 100_000;

/**
 * How many positions a window of `limit` events reaches: `limit × reach`, at least `limit`, at
 * most 100,000 (or `limit` when that is more).
 */
export function scanSize(limit: number, reach: number = MAX_REACH): number {
  return Math.max(limit, Math.min(Math.ceil(limit * reach), MAX_SCAN));
}

/**
 * The reach (positions per event) for a consumer's next window, from the one it just read after
 * `after`: 5 % more than the density the window showed, so a dense filter's windows end at their
 * limit without reading far past it, while a rare type's reach the limit of 100; a window
 * that ended at its reach with room for more events grows it. An adapter may read a window that
 * reaches no further than twice its limit as full rows (see `readCount`).
 */
export function nextReach(reach: number, after: number, window: Window): number {
  const { events, end, full } = window;
  if (events.length === 0) return full ? MAX_REACH : reach;
  const density = (end - after) / events.length;
  return Math.min(MAX_REACH, Math.max(1, density * 1.05));
}

/**
 * How many events (by count, unfiltered, after `spec.after`) an adapter reads for
 * {@link windowOf}: enough to hold the whole window and the first event past it.
 */
export function readCount(spec: WindowSpec): number {
  return (spec.filter === null ? Math.min(spec.limit, spec.scan) : spec.scan) + 1;
}

/**
 * The window of `spec` over `scanned` (every visible event after `spec.after`, ascending, as
 * {@link readCount} reads them). It covers the positions up to `after + scan`, or up to the first
 * visible one if that is further, and ends before the matching event past `spec.limit`. It is
 * full when a visible event lies past it.
 */
export function windowOf(spec: WindowSpec, scanned: readonly PersistedEvent[]): Window {
  const top = Math.max(spec.after + spec.scan, scanned[0]?.globalPosition ?? 0);
  const events: PersistedEvent[] = [];
  const missing: Array<readonly [number, number]> = [];
  let end = spec.after;
  let full = false;
  for (const event of scanned) {
    const position = event.globalPosition;
    if (position <= end) {
      throw new Error(`window is not ascending after ${spec.after}: ${position} after ${end}`);
    }
    const match = matchesFilter(spec.filter, event);
    if (position > top || (match && events.length === spec.limit)) {
      full = true;
      break;
    }
    if (match) events.push(event);
    if (position > end + 1) missing.push([end + 1, position - 1]);
    end = position;
  }
  return { events, end, missing, full };
}
