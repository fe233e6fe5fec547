/**
 * The command side: an aggregate as a decider (`initialState`, `evolve`, `decide`) over the
 * typed-events registry, and a command handler that loads it (snapshot and delta, one round trip
 * on PostgreSQL), decides, appends with `exact(version)` in your transaction or its own, and
 * retries version conflicts with bounded, jittered back-off. Snapshots are a disposable cache:
 * schema-versioned, upcast, optionally compressed, checked against the stream, and replaced by a
 * full replay whenever they cannot be trusted.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import {
 *   CommandHandler,
 *   type Decider,
 *   migrate as migrateSnapshots,
 *   PostgresSnapshotStore,
 * } from "@eventsalsa/eventsalsa/command";
 * import { defineEvents, type DomainEvent, eventType, migrate, PostgresStore } from "@eventsalsa/eventsalsa/store";
 *
 * const definitions = { Incremented: eventType<{ by: number }>() };
 * const counter: Decider<{ count: number }, { by: number }, DomainEvent<typeof definitions>> = {
 *   initialState: () => ({ count: 0 }),
 *   evolve: (state, event) => ({ count: state.count + event.data.by }),
 *   decide: (command) => {
 *     if (command.by <= 0) throw new Error("count up only");
 *     return [{ type: "Incremented", data: { by: command.by } }];
 *   },
 * };
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrate(sql);
 * await migrateSnapshots(sql);
 * const counters = new CommandHandler({
 *   store: new PostgresStore(),
 *   events: defineEvents(definitions),
 *   aggregateType: "Counter",
 *   decider: counter,
 *   snapshots: { store: new PostgresSnapshotStore(), policy: 100 },
 * });
 * const result = await counters.handle(sql, "c-1", { by: 2 }); // its own transaction, retried on conflict
 * await sql.begin((tx) => counters.handle(tx, "c-1", { by: 1 })); // or inside yours
 * console.log(result.version, result.state);
 * ```
 *
 * @module
 */
export { type Decider, defineDecider } from "./decider.ts";
export {
  CommandHandler,
  type CommandHandlerOptions,
  type CommandResult,
  type HandleOptions,
  type LoadedAggregate,
  retryDelay,
  type RetryOptions,
} from "./command_handler.ts";
export {
  everyNEvents,
  gzip,
  type GzipOptions,
  jsonCodec,
  type SnapshotAndStream,
  type SnapshotCodec,
  SnapshotDecodeError,
  SnapshotEncodeError,
  type SnapshotIdentity,
  type SnapshotOptions,
  type SnapshotPolicy,
  type SnapshotPolicyContext,
  type SnapshotRejection,
  type SnapshotRejectionReason,
  type SnapshotStore,
  type SnapshotTransformer,
  type StoredSnapshot,
} from "./snapshots.ts";
export { autoTransactions, type TransactionPort } from "./transactions.ts";
export {
  PostgresSnapshotStore,
  type PostgresSnapshotStoreOptions,
} from "./snapshot_store_postgres.ts";
export { migrate, migrationSql, type SnapshotMigrationOptions } from "./migration.ts";
