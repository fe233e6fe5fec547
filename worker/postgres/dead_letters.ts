import type { Sql } from "postgres";
import { textArrayLiteral } from "../../internal/postgres_array.ts";
import { run } from "../../internal/postgres_query.ts";
import { toSafeNumber } from "../../internal/safe_number.ts";
import type { PersistedEvent } from "../../store/types.ts";
import { runningNames } from "../core/partitions.ts";
import { redriveWith } from "../core/redrive.ts";
import { checkConsumers, type WorkerTableOptions } from "../options.ts";
import type { Consumer, DetachedConsumer } from "../types.ts";
import { PostgresCoordinator, type WorkerStore } from "./coordinator.ts";
import { workerTables } from "./tables.ts";

/**
 * Redrives a skipped dead letter: handles the event at `globalPosition` through `consumer` now,
 * in one transaction with marking the dead letter redriven. The transaction locks the consumer's
 * assignment row first, so it never runs alongside one of the consumer's batches. The event is
 * handled out of order (later events were handled already); the handler must tolerate that. If it
 * throws, nothing is written and the error (a `HandlerError`) is rethrown. A detached consumer's
 * handler runs outside any transaction: between a short one that checks the dead letter and one
 * that marks it redriven.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
 * import { retryDeadLetter, type Consumer } from "@eventsalsa/eventsalsa/worker";
 * declare const projection: Consumer;
 * const sql = postgres(process.env.DATABASE_URL!);
 * await retryDeadLetter(sql, new PostgresStore(), projection, 1234);
 * ```
 */
export function retryDeadLetter(
  sql: Sql,
  store: WorkerStore,
  consumer: Consumer | DetachedConsumer,
  globalPosition: number,
  options: WorkerTableOptions = {},
): Promise<PersistedEvent> {
  try {
    checkConsumers([consumer]);
    return redriveWith(redriver(sql, store, options), consumer, globalPosition, "redrive");
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The coordinator a redrive runs through (no notifications: nothing waits on a redrive). */
function redriver(sql: Sql, store: WorkerStore, options: WorkerTableOptions) {
  return new PostgresCoordinator(sql, store, {
    tables: workerTables(options),
    notifyChannel: null,
  });
}

/**
 * What {@link retryDeadLetters} did: the positions redriven, and those whose redrive failed with
 * the error's message (their dead letters stay open), each in position order.
 *
 * @example
 * ```ts
 * import type { RetryDeadLettersResult } from "@eventsalsa/eventsalsa/worker";
 * const summary = (r: RetryDeadLettersResult) =>
 *   `${r.redriven.length} redriven, ${r.failed.length} failed`;
 * ```
 */
export interface RetryDeadLettersResult {
  /** Positions redriven (handled and marked redriven). */
  redriven: number[];
  /** Positions whose redrive failed, with the error's message. */
  failed: { position: number; error: string }[];
}

/**
 * Redrives every skipped, not yet redriven dead letter of `consumer` (of all its partitions, for a
 * partitioned one), in position order, one by one as {@link retryDeadLetter} does: each in its own
 * transaction, so a failure leaves that dead letter open and the others go on. The dead letters
 * are the ones open when it starts; events skipped meanwhile wait for the next run. Rejects only
 * when the list cannot be read (or `consumer` is invalid); failed redrives are in the result.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
 * import { retryDeadLetters, type Consumer } from "@eventsalsa/eventsalsa/worker";
 * declare const projection: Consumer;
 * const sql = postgres(process.env.DATABASE_URL!);
 * const { redriven, failed } = await retryDeadLetters(sql, new PostgresStore(), projection);
 * console.log(`${redriven.length} redriven`);
 * for (const f of failed) console.error(`position ${f.position}: ${f.error}`);
 * ```
 */
export async function retryDeadLetters(
  sql: Sql,
  store: WorkerStore,
  consumer: Consumer | DetachedConsumer,
  options: WorkerTableOptions = {},
): Promise<RetryDeadLettersResult> {
  checkConsumers([consumer]);
  const tables = workerTables(options);
  const rows = await run(
    sql,
    `SELECT global_position FROM ${tables.deadLetters.quoted}
    WHERE consumer_name = ANY($1::text[]) AND skipped AND redriven_at IS NULL
    ORDER BY global_position`,
    [textArrayLiteral(runningNames(consumer))],
  );
  const result: RetryDeadLettersResult = { redriven: [], failed: [] };
  const coordinator = redriver(sql, store, options);
  for (const row of rows) {
    const position = toSafeNumber(row[0], "global_position");
    try {
      await redriveWith(coordinator, consumer, position, "redrive");
      result.redriven.push(position);
    } catch (error) {
      result.failed.push({
        position,
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
  return result;
}
