/**
 * The eventsalsa event store: an append-only PostgreSQL event log with optimistic concurrency and a
 * transaction-first API. You own the postgres.js transaction; the store never commits it.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate, noStream, PostgresStore } from "@eventsalsa/eventsalsa/store";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrate(sql);
 * const store = new PostgresStore();
 * await sql.begin((tx) =>
 *   store.append(tx, noStream(), [{
 *     aggregateType: "User",
 *     aggregateId: "u-1",
 *     eventType: "UserRegistered",
 *     payload: new TextEncoder().encode('{"name":"Ada"}'),
 *   }])
 * );
 * console.log((await store.readStream(sql, "User", "u-1")).version); // 1
 * ```
 *
 * @module
 */
export type {
  AppendResult,
  Event,
  EventFilter,
  EventStore,
  IterateEventsOptions,
  JsonObject,
  JsonValue,
  PersistedEvent,
  Stream,
  StreamAppend,
  VersionRange,
} from "./types.ts";
export { any, exact, type ExpectedVersion, noStream, streamExists } from "./expected_version.ts";
export {
  ConcurrencyError,
  DuplicateEventIdError,
  NoEventsError,
  ValidationError,
} from "./errors.ts";
export type { Logger } from "./logger.ts";
export type {
  Telemetry,
  TelemetryAttributes,
  TelemetryCounter,
  TelemetryHistogram,
  TelemetryMeter,
  TelemetryMetricOptions,
  TelemetryObservableCallback,
  TelemetryObservableGauge,
  TelemetryObservableResult,
  TelemetrySpan,
  TelemetrySpanContext,
  TelemetrySpanOptions,
  TelemetryTracer,
} from "../internal/telemetry.ts";
export { PostgresStore, type PostgresStoreOptions, type SqlExecutor } from "./postgres_store.ts";
export { AppendBatcher, type AppendBatcherOptions } from "./append_batcher.ts";
// postgres.js's types that appear in this module's signatures, under names that say whose they are.
export type {
  ReservedSql as PostgresReservedSql,
  Sql as PostgresSql,
  TransactionSql as PostgresTransactionSql,
} from "postgres";
export {
  migrate,
  migrationSql,
  type NativePartitioning,
  type StoreMigrationOptions,
} from "./migration.ts";
export {
  type DataOf,
  type DecodedEvent,
  defineEvents,
  type DomainEvent,
  type EventCodec,
  type EventRegistry,
  eventType,
  type EventTypeDefinition,
  UnknownEventError,
} from "./event_registry.ts";
