/**
 * `waitForPosition` over the checkpoints table, for code that has a connection but no worker: a
 * request handler after its append, a test.
 *
 * @module
 */
import type { Sql } from "postgres";
import { systemClock } from "../../internal/clock.ts";
import { textArrayLiteral } from "../../internal/postgres_array.ts";
import { run } from "../../internal/postgres_query.ts";
import { toSafeNumber } from "../../internal/safe_number.ts";
import { WorkerConfigError } from "../errors.ts";
import type { WorkerTableOptions } from "../options.ts";
import { waitForCheckpoints, type WaitForPositionOptions } from "../core/wait.ts";
import { checkpointsByName } from "../core/partitions.ts";
import { workerTables } from "./tables.ts";

/**
 * Resolves once every consumer in `options.consumers` has a checkpoint at or past `position` —
 * that is, has handled (or passed) every event up to it — reading the checkpoints table; rejects
 * with `WaitTimeoutError` after `options.timeout` (default 30 s) naming those still behind, with a
 * `WorkerConfigError` for a consumer that never registered, or with the signal's reason. A
 * partitioned consumer (`partitions: N`) is named as declared and waited for in all its
 * partitions (`orders#0of4` …); a partition can be named on its own too.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { any, PostgresStore } from "@eventsalsa/eventsalsa/store";
 * import { waitForPosition } from "@eventsalsa/eventsalsa/worker";
 * const sql = postgres(process.env.DATABASE_URL!);
 * const store = new PostgresStore();
 * const { globalPositions } = await store.append(sql, any(), [
 *   { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderPlaced", payload: new Uint8Array() },
 * ]);
 * await waitForPosition(sql, globalPositions.at(-1)!, { consumers: ["orders_view"], timeout: 5_000 });
 * // the orders_view read model now includes the order
 * ```
 */
export function waitForPosition(
  sql: Sql,
  position: number,
  options: WaitForPositionOptions & WorkerTableOptions,
): Promise<void> {
  let read: (names: readonly string[]) => Promise<Map<string, number>>;
  try {
    read = checkpointReader(sql, options);
  } catch (error) {
    return Promise.reject(error);
  }
  const consumers = options.consumers ?? [];
  if (!Array.isArray(consumers) || consumers.some((c) => typeof c !== "string")) {
    return Promise.reject(new WorkerConfigError("consumers must be an array of names"));
  }
  return waitForCheckpoints(read, systemClock, position, consumers, options);
}

/**
 * Reads the checkpoints of declared consumer names in one statement: a partitioned consumer's is
 * its lowest partition's (see `checkpointsByName`); a name with no rows is absent.
 */
export function checkpointReader(
  sql: Sql,
  options: WorkerTableOptions,
): (names: readonly string[]) => Promise<Map<string, number>> {
  // The names asked for, and the partitions of each (`name#<i>of<N>`: `left` compares characters
  // exactly, no pattern to escape); `checkpointsByName` sorts them out.
  const text = `SELECT consumer_name, last_position FROM ${
    workerTables(options).checkpoints.quoted
  } WHERE consumer_name = ANY($1::text[]) OR EXISTS (SELECT 1 FROM unnest($1::text[]) AS n(name)
    WHERE left(consumer_name, char_length(n.name) + 1) = n.name || '#')`;
  return async (names) =>
    checkpointsByName(
      names,
      new Map(
        (await run(sql, text, [textArrayLiteral(names)])).map((row) => [
          row[0] as string,
          toSafeNumber(row[1], "last_position"),
        ]),
      ),
    );
}
