/**
 * A filtered consumer's window (see ../core/window.ts) in one statement: full rows for the
 * matching events only, found on the primary key or the `(aggregate_type, global_position)` index;
 * the window's positions counted on the primary key (index-only once vacuumed), and listed only
 * when some are missing. The statement gives the same window as `windowOf` over the same log;
 * `window_sql_test.ts` holds it to that.
 *
 * Sent unprepared: a generic plan cannot know that the filter's types are rare (it reads the
 * window on the primary key and filters where the custom plan takes the aggregate index), and
 * planning costs a fraction of a millisecond per window.
 *
 * Parameters: $1 after, $2 scan, $3 limit, then the aggregate types and the event types (text[]
 * literals) the filter narrows by; a list it does not narrow by is left out of the statement.
 *
 * @module
 */
import { textArrayLiteral } from "../../internal/postgres_array.ts";
import { toSafeNumber } from "../../internal/safe_number.ts";
import type { SqlIdentifier } from "../../internal/sql_identifier.ts";
import { EVENT_COLUMNS, eventsFromRows } from "../../store/event_row.ts";
import type { TypeFilter, Window, WindowSpec } from "../core/window.ts";

/** The statement for a filter of this shape (which lists narrow), on `events`. */
function windowStatement(events: SqlIdentifier, byAggregate: boolean, byEvent: boolean): string {
  const E = events.quoted;
  const clauses: string[] = [];
  if (byAggregate) clauses.push(`aggregate_type = ANY($${4 + clauses.length}::text[])`);
  if (byEvent) clauses.push(`event_type = ANY($${4 + clauses.length}::text[])`);
  const filter = clauses.join(" AND ");
  // top: `after + scan`, or the first visible position when that is further (a long hole).
  // hit: the matching events up to top, in full, one more than the limit. bound: the window ends
  // below the one past the limit, else at top. pos: how many positions are visible in the window
  // (a count alone: an aggregate of the highest as well costs half as much again), and the highest
  // (on the index). holes: only when the window is not dense.
  return `WITH top AS MATERIALIZED (
    SELECT greatest($1::int8 + $2::int8,
      (SELECT min(global_position) FROM ${E} WHERE global_position > $1)) AS p
  ), hit AS MATERIALIZED (
    SELECT ${EVENT_COLUMNS} FROM ${E}
    WHERE global_position > $1 AND global_position <= (SELECT p FROM top) AND ${filter}
    ORDER BY global_position LIMIT $3::int8 + 1
  ), bound AS MATERIALIZED (
    SELECT coalesce((SELECT global_position - 1 FROM hit ORDER BY global_position OFFSET $3 LIMIT 1),
      (SELECT p FROM top)) AS p
  ), pos AS MATERIALIZED (
    SELECT (SELECT count(*) FROM ${E}
        WHERE global_position > $1 AND global_position <= (SELECT p FROM bound)) AS n,
      coalesce((SELECT max(global_position) FROM ${E}
        WHERE global_position > $1 AND global_position <= (SELECT p FROM bound)), $1::int8) AS last
  ), holes AS MATERIALIZED (
    SELECT string_agg((prev + 1) || '-' || (p - 1), ',' ORDER BY p) AS ranges
    FROM (SELECT p, lag(p, 1, $1::int8) OVER (ORDER BY p) AS prev
      FROM (SELECT global_position AS p FROM ${E}
        WHERE global_position > $1 AND global_position <= (SELECT last FROM pos)
        ORDER BY global_position) s) x
    WHERE p - prev > 1 AND (SELECT n < last - $1 FROM pos)
  )
  SELECT pos.last,
    (SELECT min(global_position) FROM ${E} WHERE global_position > (SELECT p FROM bound))
      IS NOT NULL AS full,
    holes.ranges, hit.*
  FROM pos CROSS JOIN holes LEFT JOIN hit ON hit.global_position <= pos.last
  ORDER BY hit.global_position`;
}

/** The statements of the three filter shapes on one events table. */
export interface WindowStatements {
  /** The statement text and parameters for `spec` (whose filter is not null). */
  for(spec: WindowSpec & { readonly filter: TypeFilter }): { text: string; params: unknown[] };
}

/** Builds the filtered-window statements on `events` (each built once, on first use). */
export function windowStatements(events: SqlIdentifier): WindowStatements {
  const built = new Map<string, string>();
  return {
    for(spec) {
      const byAggregate = spec.filter.aggregateTypes !== null;
      const byEvent = spec.filter.eventTypes !== null;
      const key = `${byAggregate}:${byEvent}`;
      let text = built.get(key);
      if (text === undefined) built.set(key, text = windowStatement(events, byAggregate, byEvent));
      return {
        text,
        params: [
          spec.after,
          spec.scan,
          spec.limit,
          ...byAggregate ? [textArrayLiteral(spec.filter.aggregateTypes!)] : [],
          ...byEvent ? [textArrayLiteral(spec.filter.eventTypes!)] : [],
        ],
      };
    },
  };
}

/**
 * The window in the statement's rows: the summary (end, full, missing ranges as `a-b,c-d`)
 * repeats on each row, an event follows it.
 */
export function windowFromRows(rows: readonly unknown[][]): Window {
  const [summary] = rows;
  const end = toSafeNumber(summary[0], "global_position");
  const ranges = summary[2] === null ? [] : String(summary[2]).split(",");
  const missing = ranges.map((range) => {
    const [first, last] = range.split("-").map((p) => toSafeNumber(p, "global_position"));
    return [first, last] as const;
  });
  const events = summary[3] === null ? [] : eventsFromRows(rows, 3);
  return { events, end, missing, full: summary[1] === true };
}
