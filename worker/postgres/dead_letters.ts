import type { Sql } from "postgres";
import type { PersistedEvent } from "../../store/types.ts";
import { redriveWith } from "../core/redrive.ts";
import { checkConsumers, type WorkerTableOptions } from "../options.ts";
import type { Consumer } from "../types.ts";
import { PostgresCoordinator, type WorkerStore } from "./coordinator.ts";
import { workerTables } from "./tables.ts";

/**
 * Redrives a skipped dead letter: handles the event at `globalPosition` through `consumer` now,
 * in one transaction with marking the dead letter redriven. The transaction locks the consumer's
 * assignment row first, so it never runs alongside one of the consumer's batches. The event is
 * handled out of order (later events were handled already); the handler must tolerate that. If it
 * throws, nothing is written and the error (a `HandlerError`) is rethrown.
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
  consumer: Consumer,
  globalPosition: number,
  options: WorkerTableOptions = {},
): Promise<PersistedEvent> {
  try {
    checkConsumers([consumer]);
    const coordinator = new PostgresCoordinator(sql, store, {
      tables: workerTables(options),
      notifyChannel: null,
    });
    return redriveWith(coordinator, consumer, globalPosition, "redrive");
  } catch (error) {
    return Promise.reject(error);
  }
}
