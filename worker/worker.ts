import type postgres from "postgres";
import { WorkerRuntime } from "./core/runtime.ts";
import { BaseWorker, bindRuntime } from "./base_worker.ts";
import { WorkerConfigError } from "./errors.ts";
import type { WorkerOptions } from "./options.ts";
import { PostgresCoordinator, type WorkerStore } from "./postgres/coordinator.ts";
import { identifier, TABLE_OPTION_KEYS, workerTables } from "./postgres/tables.ts";
import type { Consumer, DetachedConsumer } from "./types.ts";

const PG_KEYS = [...TABLE_OPTION_KEYS, "notifyChannel", "notifyConnection", "coordinationChannel"];

/** The default channel of joins, leaves and assignment changes. */
const COORDINATION_CHANNEL = "eventsalsa_worker";

// deno-lint-ignore no-explicit-any
function checkPool(sql: unknown): postgres.Sql<any> {
  const candidate = sql as { begin?: unknown; unsafe?: unknown };
  if (
    typeof sql !== "function" || typeof candidate.begin !== "function" ||
    typeof candidate.unsafe !== "function"
  ) {
    throw new WorkerConfigError(
      "sql must be a postgres.js pool (postgres(url)), not a transaction",
    );
  }
  // deno-lint-ignore no-explicit-any
  return sql as postgres.Sql<any>;
}

/**
 * Every batch holds a pool connection until it commits, so a pool with no connection beyond one
 * per consumer lets hanging handlers starve the healthy consumers (and the worker's own
 * heartbeats and reads). A pool of one is the embedded single-session database: everything is
 * serialised there anyway.
 */
// deno-lint-ignore no-explicit-any
function checkPoolSize(pool: postgres.Sql<any>, consumers: unknown): void {
  const max = (pool as { options?: { max?: unknown } }).options?.max;
  if (typeof max !== "number" || max <= 1 || !Array.isArray(consumers)) return;
  // Each partition of a partitioned consumer runs (and may hold a connection) on its own.
  const loops = consumers.reduce((sum: number, consumer: unknown) => {
    const partitions = (consumer as { partitions?: unknown } | null)?.partitions;
    return sum +
      (Number.isSafeInteger(partitions) && (partitions as number) > 1 ? partitions as number : 1);
  }, 0);
  if (max < loops + 1) {
    const what = loops === consumers.length
      ? `${loops} consumers`
      : `${loops} consumer loops (partitions counted)`;
    throw new WorkerConfigError(
      `the pool has max ${max} connections but the worker runs ${what}; ` +
        `each running batch holds a connection, so a slow or hanging handler would starve the ` +
        `others: use postgres(url, { max: ${loops + 1} }) or more`,
    );
  }
}

function checkStore(store: unknown): WorkerStore {
  const s = store as Partial<WorkerStore> | null;
  if (
    typeof s !== "object" || s === null || typeof s.readEvents !== "function" ||
    typeof s.latestPosition !== "function" || typeof s.eventsTable !== "string"
  ) {
    throw new WorkerConfigError(
      "store must be a PostgresStore (readEvents, latestPosition, eventsTable)",
    );
  }
  return s as WorkerStore;
}

/**
 * The PostgreSQL worker: runs `consumers` over `store`'s log, with checkpoints and assignments in
 * the worker tables (see `migrate`). Start as many workers (processes) as you like on one
 * database: they register with heartbeats, elect a leader (`leaderStrategy`: `advisory` lock or
 * `lease` row), and the leader spreads the consumers over the live workers that registered them,
 * balanced within one and sticky (on a join or leave only the consumers that must move, move).
 * Workers hear about changes by NOTIFY on `coordinationChannel` and poll anyway. Each batch locks
 * its consumer's assignment row and compares-and-sets the checkpoint, so a worker that lost a
 * consumer (paused, partitioned, demoted) can never commit for it.
 *
 * Every option is validated here: a bad one throws `WorkerConfigError` before anything touches the
 * database. The pool needs a connection per consumer (each partition of a partitioned one counts)
 * plus one: each running batch holds one, so a hanging handler never starves the others. `start`
 * checks the schema (tables present, position sequence at `CACHE 1`).
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
 * import { migrate, Worker } from "@eventsalsa/eventsalsa/worker";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrate(sql);
 * const worker = new Worker(sql, new PostgresStore(), [{
 *   name: "order_count",
 *   aggregateTypes: ["Order"],
 *   async handle(tx) {
 *     await tx`update stats set orders = orders + 1`;
 *   },
 * }], { pollInterval: 500 });
 * const controller = new AbortController();
 * process.on("SIGTERM", () => controller.abort());
 * await worker.start(controller.signal);
 * ```
 */
export class Worker extends BaseWorker {
  /** Validates everything and prepares the PostgreSQL adapter; nothing runs until `start`. */
  constructor(
    sql: postgres.Sql,
    store: WorkerStore,
    consumers: readonly (Consumer | DetachedConsumer)[],
    options: WorkerOptions = {},
  ) {
    const pool = checkPool(sql);
    checkPoolSize(pool, consumers);
    const checkedStore = checkStore(store);
    if (typeof options !== "object" || options === null) {
      throw new WorkerConfigError("worker options must be an object");
    }
    const tables = workerTables(options);
    const notify = options.dispatcher === "notify";
    const channelName = options.notifyChannel ?? checkedStore.notifyChannel ?? null;
    if (notify && channelName === null) {
      throw new WorkerConfigError(
        'dispatcher "notify" needs a channel: set notifyChannel, or the store\'s notifyChannel',
      );
    }
    const notifyConnection = options.notifyConnection;
    if (
      notifyConnection !== undefined && typeof notifyConnection !== "string" &&
      (typeof notifyConnection !== "object" || notifyConnection === null)
    ) {
      throw new WorkerConfigError(
        "notifyConnection must be a connection URL or postgres.js options",
      );
    }
    const coordination = options.coordinationChannel === undefined
      ? COORDINATION_CHANNEL
      : options.coordinationChannel;
    super();
    const runtime = new WorkerRuntime(
      new PostgresCoordinator(pool, checkedStore, {
        tables,
        notifyChannel: channelName === null
          ? null
          : identifier(channelName, "notifyChannel", { allowSchema: false }),
        notifyConnection,
        coordinationChannel: coordination === null
          ? null
          : identifier(coordination, "coordinationChannel", { allowSchema: false }),
      }),
      consumers,
      options,
      PG_KEYS,
    );
    bindRuntime(this, runtime);
  }
}
