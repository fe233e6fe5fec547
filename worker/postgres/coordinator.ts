/**
 * The coordinator on PostgreSQL: the core's coordination protocol (../core/protocol.ts) over the
 * PostgreSQL storage adapter (./storage.ts), which holds every statement and connection
 * mechanism.
 *
 * @module
 */
import type postgres from "postgres";
import { CoordinationProtocol } from "../core/protocol.ts";
import type { WorkerTransaction } from "../types.ts";
import { type PostgresCoordinatorSettings, PostgresStorage, type WorkerStore } from "./storage.ts";

export type { PostgresCoordinatorSettings, WorkerStore } from "./storage.ts";

/**
 * The PostgreSQL coordinator. One instance serves one worker at a time; `close` releases the
 * connections it opened itself (cancel and LISTEN), never the pool. Internal: the public face is
 * `Worker`.
 */
export class PostgresCoordinator extends CoordinationProtocol<WorkerTransaction> {
  /** Prepares the SQL text once; opens nothing. */
  // deno-lint-ignore no-explicit-any
  constructor(sql: postgres.Sql<any>, store: WorkerStore, settings: PostgresCoordinatorSettings) {
    super(new PostgresStorage(sql, store, settings));
  }
}
