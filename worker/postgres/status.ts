import type { Sql } from "postgres";
import { storeTables } from "../../store/migration.ts";
import { readStatus } from "../core/protocol.ts";
import { WorkerConfigError } from "../errors.ts";
import { WORKER_DEFAULTS, type WorkerTableOptions } from "../options.ts";
import type { WorkerStatus } from "../types.ts";
import { PostgresStorage, type WorkerStore } from "./storage.ts";
import { workerTables } from "./tables.ts";

/**
 * Options for {@link status}: the table names used by the workers and the store.
 *
 * @example
 * ```ts
 * import type { StatusOptions } from "@eventsalsa/eventsalsa/worker";
 * const options: StatusOptions = { eventsTable: "app.events", heartbeatTimeout: 30_000 };
 * ```
 */
export interface StatusOptions extends WorkerTableOptions {
  /** The store's events table; `events` when omitted. */
  eventsTable?: string;
  /** A worker whose heartbeat is older counts as not live; 30000 when omitted. */
  heartbeatTimeout?: number;
}

/**
 * A consistent snapshot (one repeatable-read, read-only transaction) of the workers, the leader,
 * assignments,
 * checkpoints, lag (latest position − checkpoint) per consumer, current gap waits and dead-letter
 * counts. The CLI's `status` prints it.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { status } from "@eventsalsa/eventsalsa/worker";
 * const report = await status(postgres(process.env.DATABASE_URL!));
 * for (const c of report.consumers) console.log(c.name, c.workerId, c.checkpoint, c.lag);
 * ```
 */
export async function status(
  sql: Sql,
  options: StatusOptions = {},
): Promise<WorkerStatus> {
  const tables = workerTables(options);
  const { events } = storeTables({ eventsTable: options.eventsTable });
  const timeout = options.heartbeatTimeout ?? WORKER_DEFAULTS.heartbeatTimeout;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new WorkerConfigError(
      `heartbeatTimeout must be a positive number of milliseconds, got ${timeout}`,
    );
  }
  // The status read takes the latest position from the events table itself: no store needed.
  const store: WorkerStore = {
    eventsTable: events.text,
    readEvents: () => Promise.reject(new Error("status reads no events")),
    latestPosition: () => Promise.reject(new Error("status reads the latest position itself")),
  };
  return await readStatus(
    new PostgresStorage(sql, store, { tables, notifyChannel: null }),
    timeout,
  );
}
