/**
 * eventsalsa: event sourcing on PostgreSQL for Deno and Bun. This root module re-exports what code
 * that appends and reads events needs, a subset of `@eventsalsa/eventsalsa/store` (same objects);
 * everything else lives in its component: `/store` (options, migrations, typed events, telemetry
 * types, `SqlExecutor`), `/command`, `/worker` (including `Clock`), `/encryption` and `/testing`.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { exact, PostgresStore } from "@eventsalsa/eventsalsa";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * const store = new PostgresStore();
 * const stream = await store.readStream(sql, "Order", "o-1");
 * await sql.begin((tx) =>
 *   store.append(tx, exact(stream.version), [
 *     { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderShipped", payload: new Uint8Array() },
 *   ])
 * );
 * ```
 *
 * @module
 */
export {
  any,
  type AppendResult,
  ConcurrencyError,
  DuplicateEventIdError,
  type Event,
  type EventStore,
  exact,
  type ExpectedVersion,
  type JsonObject,
  type JsonValue,
  NoEventsError,
  noStream,
  type PersistedEvent,
  PostgresStore,
  type Stream,
  streamExists,
  ValidationError,
} from "./store/mod.ts";
