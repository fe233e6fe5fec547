/**
 * The PostgreSQL adapter of the snapshot port: one table, a monotonic upsert, and a load that
 * reads the snapshot and the events after it in one statement.
 *
 * @module
 */
import { toHex } from "../internal/postgres_array.ts";
import type { SqlExecutor } from "../internal/postgres_client.ts";
import { affected, run } from "../internal/postgres_query.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import { parseIdentifier } from "../internal/sql_identifier.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import type { EventStore } from "../store/types.ts";
import { checkAggregate } from "../store/validation.ts";
import { snapshotTable } from "./migration.ts";
import {
  checkMaxSchemaVersion,
  checkSnapshotIdentity,
  checkStoredSnapshot,
  type SnapshotAndStream,
  type SnapshotIdentity,
  type SnapshotStore,
  type StoredSnapshot,
} from "./snapshots.ts";
import { bytesFromHex } from "../internal/hex.ts";
import { EVENT_COLUMNS, eventsFromRows } from "../store/event_row.ts";

/**
 * Options for {@link PostgresSnapshotStore}.
 *
 * @example
 * ```ts
 * import { PostgresSnapshotStore, type PostgresSnapshotStoreOptions } from "@eventsalsa/eventsalsa/command";
 * const options: PostgresSnapshotStoreOptions = { table: "app.snapshots" };
 * const snapshots = new PostgresSnapshotStore(options);
 * ```
 */
export interface PostgresSnapshotStoreOptions {
  /** The snapshots table, optionally schema-qualified; `snapshots` when omitted. */
  table?: string;
}

/**
 * Snapshots in a PostgreSQL table (create it with the command module's `migrate`). Stateless
 * apart from its configuration; every method takes the caller's postgres.js transaction or the
 * pool.
 *
 * - `put` is monotonic: a stored snapshot at a higher aggregate version is never replaced by an
 *   older one (two writers racing each other, a slow after-commit write), except an orphan the
 *   handler found and names.
 * - `getWithStream`, for a `PostgresStore`, reads the snapshot and the events from its version on
 *   in one statement (one round trip), joined on the store's own events table.
 * - The table is a cache: truncating it changes nothing but speed.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate, PostgresSnapshotStore } from "@eventsalsa/eventsalsa/command";
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrate(sql, { table: "snapshots" });
 * const snapshots = new PostgresSnapshotStore({ table: "snapshots" });
 * console.log(await snapshots.get(sql, "Account", "acc-1", 1)); // null until one is written
 * ```
 */
export class PostgresSnapshotStore implements SnapshotStore<SqlExecutor> {
  /** The table as configured (unquoted text). */
  readonly table: string;
  readonly #quoted: string;
  readonly #getSql: string;
  readonly #putSql: string;
  readonly #pruneSql: string;
  /** The one-statement load, per events table (a store's table name is fixed, so this stays small). */
  readonly #withStreamTexts = new Map<string, string>();

  /** Validates the table name and prepares the SQL text. */
  constructor(options: PostgresSnapshotStoreOptions = {}) {
    const table = snapshotTable(options.table);
    this.table = table.text;
    const T = table.quoted;
    this.#quoted = T;
    this.#getSql = `SELECT aggregate_version, schema_version, event_id, encoding,
      encode(payload, 'hex'), created_at FROM ${T} WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema_version <= $3
      ORDER BY schema_version DESC LIMIT 1`;
    // Monotonic: an existing row is replaced only by a snapshot at the same or a higher version,
    // or when it is the very orphan row the caller names ($8, $9).
    this.#putSql = `INSERT INTO ${T} AS s (aggregate_type, aggregate_id, schema_version,
      aggregate_version, event_id, encoding, payload)
      VALUES ($1, $2, $3, $4, $5::uuid, $6, decode($7, 'hex'))
      ON CONFLICT (aggregate_type, aggregate_id, schema_version) DO UPDATE SET
        aggregate_version = excluded.aggregate_version, event_id = excluded.event_id,
        encoding = excluded.encoding, payload = excluded.payload, created_at = now()
      WHERE excluded.aggregate_version >= s.aggregate_version
        OR (s.aggregate_version = $8::bigint AND s.event_id = $9::uuid)
      RETURNING 1`;
    this.#pruneSql = `DELETE FROM ${T} WHERE aggregate_type = $1 AND schema_version < $2`;
  }

  /**
   * The snapshot with the highest schema version ≤ `maxSchemaVersion`, or null.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresSnapshotStore } from "@eventsalsa/eventsalsa/command";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const snapshot = await new PostgresSnapshotStore().get(sql, "Account", "acc-1", 2);
   * ```
   */
  async get(
    tx: SqlExecutor,
    aggregateType: string,
    aggregateId: string,
    maxSchemaVersion: number,
  ): Promise<StoredSnapshot | null> {
    const key = checkAggregate(aggregateType, aggregateId);
    const rows = await run(tx, this.#getSql, [
      key.aggregateType,
      key.aggregateId,
      checkMaxSchemaVersion(maxSchemaVersion),
    ]);
    if (rows.length === 0) return null;
    const [version, schema, eventId, encoding, payload, createdAt] = rows[0];
    return {
      aggregateType: key.aggregateType,
      aggregateId: key.aggregateId,
      aggregateVersion: toSafeNumber(version, "aggregate_version"),
      schemaVersion: schema as number,
      eventId: eventId as string,
      encoding: encoding as string,
      payload: bytesFromHex([payload as string])[0],
      createdAt: createdAt as Date,
    };
  }

  /**
   * Writes the snapshot unless a higher version is stored under its key (see
   * `SnapshotStore.put`); resolves to whether it was written. One statement.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresSnapshotStore } from "@eventsalsa/eventsalsa/command";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const written = await new PostgresSnapshotStore().put(sql, {
   *   aggregateType: "Account",
   *   aggregateId: "acc-1",
   *   schemaVersion: 1,
   *   aggregateVersion: 100,
   *   eventId: "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6f",
   *   encoding: "json",
   *   payload: new TextEncoder().encode('{"balance":5}'),
   * }, null);
   * ```
   */
  async put(
    tx: SqlExecutor,
    snapshot: StoredSnapshot,
    replacing: SnapshotIdentity | null,
  ): Promise<boolean> {
    const s = checkStoredSnapshot(snapshot);
    const r = checkSnapshotIdentity(replacing);
    const rows = await run(tx, this.#putSql, [
      s.aggregateType,
      s.aggregateId,
      s.schemaVersion,
      s.aggregateVersion,
      s.eventId,
      s.encoding,
      toHex(s.payload),
      r === null ? null : r.aggregateVersion,
      r === null ? null : r.eventId,
    ]);
    return rows.length === 1;
  }

  /**
   * Deletes an aggregate type's snapshots of schema versions below `schemaVersion` (retention
   * after a schema bump, once no running code reads them); resolves to the rows deleted.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresSnapshotStore } from "@eventsalsa/eventsalsa/command";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const deleted = await new PostgresSnapshotStore().prune(sql, "Account", 3);
   * ```
   */
  async prune(tx: SqlExecutor, aggregateType: string, schemaVersion: number): Promise<number> {
    const type = checkAggregate(aggregateType, "-").aggregateType;
    return await affected(tx, this.#pruneSql, [type, checkMaxSchemaVersion(schemaVersion)]);
  }

  /**
   * For a `PostgresStore`: the snapshot and the events from its version on (or the whole stream
   * when there is no snapshot) in one statement. For any other store, `undefined` (the handler then
   * uses `get` and `readStream`). The statement bypasses the store's `readStream`, so it records no
   * `readStream` span when the store has telemetry.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresSnapshotStore } from "@eventsalsa/eventsalsa/command";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const loaded = await new PostgresSnapshotStore().getWithStream(sql, new PostgresStore(), "Account", "acc-1", 1);
   * ```
   */
  async getWithStream(
    tx: SqlExecutor,
    eventStore: EventStore<SqlExecutor>,
    aggregateType: string,
    aggregateId: string,
    maxSchemaVersion: number,
  ): Promise<SnapshotAndStream | undefined> {
    if (!(eventStore instanceof PostgresStore)) return undefined;
    const key = checkAggregate(aggregateType, aggregateId);
    const rows = await run(tx, this.#withStreamSql(eventStore.eventsTable), [
      key.aggregateType,
      key.aggregateId,
      checkMaxSchemaVersion(maxSchemaVersion),
    ]);
    let snapshot: StoredSnapshot | null = null;
    const eventRows: (readonly unknown[])[] = [];
    for (const row of rows) {
      if (Number(row[0]) !== 0) {
        eventRows.push(row);
        continue;
      }
      snapshot = {
        aggregateType: key.aggregateType,
        aggregateId: key.aggregateId,
        aggregateVersion: toSafeNumber(row[4], "aggregate_version"),
        eventId: row[5] as string,
        encoding: row[6] as string,
        schemaVersion: row[7] as number,
        payload: bytesFromHex([row[8] as string])[0],
        createdAt: row[10] as Date,
      };
    }
    const events = eventsFromRows(eventRows, 1); // the kind first, then the store's columns
    const sorted = events.every((e, i) =>
      i === 0 || events[i - 1].aggregateVersion <= e.aggregateVersion
    );
    // UNION ALL keeps each branch's order in practice, but SQL does not promise it.
    if (!sorted) events.sort((a, b) => a.aggregateVersion - b.aggregateVersion);
    return { snapshot, events };
  }

  #withStreamSql(eventsTable: string): string {
    let text = this.#withStreamTexts.get(eventsTable);
    if (text === undefined) {
      const E = parseIdentifier(eventsTable, "eventsTable").quoted;
      // Row 0 (kind 0) is the snapshot, laid over the event columns; then the events from the
      // snapshot's version on, the snapshot's own event first, so the caller can check that the
      // stream still holds it. Without a snapshot, the whole stream.
      text = `WITH s AS MATERIALIZED (SELECT aggregate_version, schema_version, event_id, encoding,
          payload, created_at FROM ${this.#quoted}
        WHERE aggregate_type = $1 AND aggregate_id = $2 AND schema_version <= $3
        ORDER BY schema_version DESC LIMIT 1)
      SELECT 0 AS kind, NULL::bigint, NULL::text, NULL::text, s.aggregate_version, s.event_id,
        s.encoding, s.schema_version, encode(s.payload, 'hex'), NULL::jsonb, s.created_at,
        NULL::text, NULL::text, NULL::text
      FROM s
      UNION ALL
      (SELECT 1, ${EVENT_COLUMNS}
      FROM ${E} WHERE aggregate_type = $1 AND aggregate_id = $2
        AND aggregate_version >= COALESCE((SELECT aggregate_version FROM s), 1)
      ORDER BY aggregate_version)`;
      this.#withStreamTexts.set(eventsTable, text);
    }
    return text;
  }
}
