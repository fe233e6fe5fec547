/**
 * Resetting a consumer from outside a worker (the CLI, an operator's script): the protocol's
 * fenced reset over the PostgreSQL storage.
 *
 * @module
 */
import type { Sql } from "postgres";
import { storeTables } from "../../store/migration.ts";
import { resetOf } from "../core/reset.ts";
import { CoordinationProtocol } from "../core/protocol.ts";
import { WorkerConfigError } from "../errors.ts";
import type { WorkerTableOptions } from "../options.ts";
import type { Consumer, DetachedConsumer, WorkerTransaction } from "../types.ts";
import { PostgresStorage, type WorkerStore } from "./storage.ts";
import { workerTables } from "./tables.ts";

/**
 * Options of {@link resetConsumer}.
 *
 * @example
 * ```ts
 * import type { ResetConsumerOptions } from "@eventsalsa/eventsalsa/worker";
 * const options: ResetConsumerOptions = { toPosition: 0, consumerCheckpointsTable: "app.checkpoints" };
 * ```
 */
export interface ResetConsumerOptions extends WorkerTableOptions {
  /** The new checkpoint: events after it are handled again. Default 0 (a rebuild). */
  toPosition?: number;
  /**
   * The consumer's definition, for its `reset` hook (clearing the read model in the same
   * transaction). Without it only the checkpoint, dead letters and gap report are reset.
   */
  consumer?: Consumer | DetachedConsumer;
  /** The store's events table; `events` when omitted. */
  eventsTable?: string;
}

/**
 * Resets consumer `name` to `options.toPosition` (default 0), safely while a fleet runs: it locks
 * the consumer's rows as a batch does (waiting for a running batch to commit), runs the
 * consumer's `reset` hook if given, forgets dead letters after the position, clears the gap
 * report and sets the checkpoint, in one transaction. The worker that owns the consumer finds the
 * checkpoint moved at its next batch and carries on from there. Resolves the checkpoint it had
 * before; a name that never registered is a `WorkerConfigError`.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { resetConsumer } from "@eventsalsa/eventsalsa/worker";
 * const sql = postgres(process.env.DATABASE_URL!);
 * const before = await resetConsumer(sql, "orders_view", {
 *   consumer: {
 *     name: "orders_view",
 *     async handle(tx, event) {},
 *     async reset(tx) { await tx`TRUNCATE orders_view`; },
 *   },
 * });
 * console.log(`orders_view rebuilds from 0 (was at ${before})`);
 * ```
 */
export async function resetConsumer(
  sql: Sql,
  name: string,
  options: ResetConsumerOptions = {},
): Promise<number> {
  const tables = workerTables(options);
  const { events } = storeTables({ eventsTable: options.eventsTable });
  const consumer = options.consumer;
  if (consumer !== undefined && consumer.name !== name) {
    throw new WorkerConfigError(
      `the consumer given is ${JSON.stringify(consumer.name)}, not ${JSON.stringify(name)}`,
    );
  }
  if (consumer?.reset !== undefined && typeof consumer.reset !== "function") {
    throw new WorkerConfigError(`reset of consumer ${JSON.stringify(name)} must be a function`);
  }
  const toPosition = options.toPosition ?? 0;
  // A reset reads no events: the storage needs only the events table's name.
  const store: WorkerStore = {
    eventsTable: events.text,
    readEvents: () => Promise.reject(new Error("a reset reads no events")),
    latestPosition: () => Promise.reject(new Error("a reset reads no position")),
  };
  const protocol = new CoordinationProtocol<WorkerTransaction>(
    new PostgresStorage(sql, store, { tables, notifyChannel: null }),
  );
  // Without the definition: the rows of that name, checkpoint only.
  const { names, hook } = consumer === undefined
    ? { names: [name], hook: null }
    : resetOf<WorkerTransaction>(consumer, toPosition);
  try {
    return await protocol.resetConsumer(names, toPosition, hook);
  } finally {
    await protocol.close();
  }
}
