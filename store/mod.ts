/**
 * The eventsalsa event store: an append-only PostgreSQL event log with optimistic concurrency and a
 * transaction-first API. You own the postgres.js transaction; the store never commits it.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import { migrate, noStream, PostgresStore } from "@eventsalsa/eventsalsa/store";
 *
 * const sql = postgres(Deno.env.get("DATABASE_URL")!);
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
  VersionRange,
} from "./types.ts";
export {
  any,
  describeExpectedVersion,
  exact,
  type ExpectedVersion,
  noStream,
  streamExists,
} from "./expected_version.ts";
export {
  ConcurrencyError,
  DuplicateEventIdError,
  NoEventsError,
  ValidationError,
} from "./errors.ts";
export type { Logger } from "./logger.ts";
export { PostgresStore, type PostgresStoreOptions, type SqlExecutor } from "./postgres_store.ts";
export {
  applyMigration,
  migrate,
  migrationSql,
  type NativePartitioning,
  partitionName,
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
