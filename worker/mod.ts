/**
 * The eventsalsa worker: asynchronous consumers (projections, process managers, outbox relays)
 * over the event store, on PostgreSQL.
 *
 * - **Checkpoints that never skip a committed event.** Positions come from a sequence, so
 *   transactions commit out of order and rollbacks leave holes. A consumer waits at a hole until
 *   PostgreSQL's transaction snapshot proves it final (committed: handled in order; rolled back:
 *   passed at once) — no timeout. While it waits, the blocking transaction (pid, xid, age) is
 *   reported. `maxGapWait` is an opt-in escape hatch that skips with an audit row.
 * - **Effectively once** for writes made through the handler's `tx`: they commit atomically with
 *   the checkpoint, in a transaction that first locks the consumer's assignment row and checks
 *   ownership. Everything else is at least once.
 * - **Failures**: batch timeout (cancelled and rolled back), retries with back-off,
 *   `maxConsecutiveFailures` stops the worker with a typed error, poison events go to a
 *   dead-letter table (skipped only when the policy says so) and can be redriven.
 * - **Wakeups**: idle consumers back off from `pollInterval` to `maxPollInterval`; a `poll` or
 *   `notify` (LISTEN) dispatcher wakes them when the log grows.
 * - **Many processes**: start the same worker in as many processes as you like. They register
 *   with heartbeats and elect a leader (`advisory` lock or `lease` row); the leader spreads the
 *   consumers over the live workers that registered them — balanced within one, sticky (a join or
 *   a leave moves only what must move) — and workers learn their assignments by NOTIFY within
 *   about a second. The per-batch fence keeps a paused, partitioned or demoted worker from ever
 *   committing for a consumer it no longer owns. Worker ids are injectable (`workerId`).
 *
 * - **Read-your-writes**: {@link waitForPosition} (or `worker.waitForPosition`) resolves once the
 *   named consumers have handled everything up to a position.
 *
 * One core (consumer loop, gap rule, back-off, coordination protocol) runs everywhere:
 * {@link Worker} is that core on PostgreSQL, and `InMemoryWorker` in
 * `@eventsalsa/eventsalsa/testing` the same core in memory.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate as migrateStore, noStream, PostgresStore } from "@eventsalsa/eventsalsa/store";
 * import { migrate, status, Worker } from "@eventsalsa/eventsalsa/worker";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrateStore(sql);
 * await migrate(sql);
 * await sql`CREATE TABLE IF NOT EXISTS user_names (id text PRIMARY KEY, name text NOT NULL)`;
 *
 * const store = new PostgresStore();
 * await sql.begin((tx) =>
 *   store.append(tx, noStream(), [{
 *     aggregateType: "User",
 *     aggregateId: crypto.randomUUID(),
 *     eventType: "UserRegistered",
 *     payload: new TextEncoder().encode(JSON.stringify({ name: "Ada" })),
 *   }])
 * );
 *
 * const worker = new Worker(sql, store, [{
 *   name: "user_names",
 *   aggregateTypes: ["User"],
 *   async handle(tx, event) {
 *     const { name } = JSON.parse(new TextDecoder().decode(event.payload));
 *     await tx`INSERT INTO user_names (id, name) VALUES (${event.aggregateId}, ${name})
 *       ON CONFLICT (id) DO UPDATE SET name = excluded.name`;
 *   },
 * }], { pollInterval: 200 });
 *
 * const controller = new AbortController();
 * const running = worker.start(controller.signal);
 * while ((await status(sql)).consumers.find((c) => c.name === "user_names")?.lag !== 0) {
 *   await new Promise((resolve) => setTimeout(resolve, 100));
 * }
 * controller.abort();
 * await running;
 * console.log(await sql`SELECT * FROM user_names`);
 * await sql.end();
 * ```
 *
 * @module
 */
export type { Clock } from "../internal/clock.ts";
// postgres.js's types that appear in this module's signatures, under names that say whose they are.
export type { Options as PostgresOptions } from "postgres";
export {
  BatchTimeoutError,
  ConsecutiveFailuresError,
  DeadLetterNotFoundError,
  HandlerError,
  PoisonEventError,
  WaitTimeoutError,
  WorkerAlreadyStartedError,
  WorkerConfigError,
  WorkerIdInUseError,
  WorkerRegistrationLostError,
  WorkerSetupError,
} from "./errors.ts";
export type {
  Consumer,
  ConsumerStatus,
  DetachedConsumer,
  GapBlocker,
  GapSkip,
  GapWait,
  HandlerContext,
  HandlerFailure,
  LeaderStatus,
  PoisonDecision,
  PoisonPolicy,
  ResetContext,
  WorkerNodeStatus,
  WorkerObserver,
  WorkerStatus,
  WorkerTransaction,
} from "./types.ts";
export {
  type DispatcherStrategy,
  type LeaderStrategy,
  WORKER_DEFAULTS,
  type WorkerOptions,
  type WorkerRuntimeOptions,
  type WorkerTableOptions,
} from "./options.ts";
export { defaultPoisonPolicy, skipPoisonEvents } from "./core/poison.ts";
export type { AssignmentChange, AssignmentSnapshot, WorkerMembership } from "./core/assignment.ts";
export { Worker } from "./worker.ts";
export { BaseWorker } from "./base_worker.ts";
export type { WorkerStore } from "./postgres/coordinator.ts";
export { migrate, migrationSql } from "./postgres/migration.ts";
export { status, type StatusOptions } from "./postgres/status.ts";
export { retryDeadLetter } from "./postgres/dead_letters.ts";
export { retryDeadLetters, type RetryDeadLettersResult } from "./postgres/dead_letters.ts";
export { waitForPosition } from "./postgres/wait.ts";
export { resetConsumer, type ResetConsumerOptions } from "./postgres/reset.ts";
export type { WaitForPositionOptions } from "./core/wait.ts";
