/**
 * The snapshots table: its DDL, its schema versions, and `migrate`.
 *
 * @module
 */
import type { Sql } from "postgres";
import { type ComponentSchema, componentSchema, migrateSchemas } from "../internal/migration.ts";
import {
  derivedIdentifier,
  IdentifierError,
  parseIdentifier,
  quotePart,
  type SqlIdentifier,
} from "../internal/sql_identifier.ts";
import { ValidationError } from "../store/errors.ts";

/**
 * Options for the snapshots table.
 *
 * @example
 * ```ts
 * import type { SnapshotMigrationOptions } from "@eventsalsa/eventsalsa/command";
 * const options: SnapshotMigrationOptions = { table: "app.account_snapshots" };
 * ```
 */
export interface SnapshotMigrationOptions {
  /** The snapshots table, optionally schema-qualified; `snapshots` when omitted. */
  table?: string;
}

/** The validated table name (a `ValidationError` for a bad one). */
export function snapshotTable(table: string | undefined): SqlIdentifier {
  try {
    return parseIdentifier(table ?? "snapshots", "snapshots table");
  } catch (error) {
    throw error instanceof IdentifierError ? new ValidationError(error.message) : error;
  }
}

/**
 * The DDL of the snapshots table (idempotent). One row per aggregate and state schema version, so
 * code of two schema versions can run side by side (a rolling deploy) without evicting each
 * other's snapshots. `event_id` is the id of the event at `aggregate_version`: a snapshot is used
 * only while the stream holds that very event there. The table holds nothing the events do not:
 * truncate it whenever you like.
 *
 * @example
 * ```ts
 * import { migrationSql } from "@eventsalsa/eventsalsa/command";
 * console.log(migrationSql({ table: "app.snapshots" }));
 * ```
 */
export function migrationSql(options: SnapshotMigrationOptions = {}): string {
  const table = snapshotTable(options.table);
  const lines = [`-- eventsalsa snapshots schema (idempotent)`];
  if (table.schema !== null) lines.push(`CREATE SCHEMA IF NOT EXISTS ${quotePart(table.schema)};`);
  // The primary key's index serves the load (type, id, schema <= n ORDER BY schema DESC LIMIT 1).
  lines.push(`CREATE TABLE IF NOT EXISTS ${table.quoted} (
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    schema_version INT NOT NULL CHECK (schema_version > 0),
    aggregate_version BIGINT NOT NULL CHECK (aggregate_version > 0),
    event_id UUID NOT NULL,
    encoding TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, schema_version)
);`);
  // Checked here so a name too long for PostgreSQL fails now, not as a truncated constraint name.
  derivedIdentifier(table, `${table.name}_pkey`, "snapshots primary key name");
  return lines.join("\n") + "\n";
}

/**
 * The snapshots table's schema versions; this library expects the last. Version 1 is
 * {@link migrationSql}'s DDL.
 */
export function snapshotSchema(options: SnapshotMigrationOptions = {}): ComponentSchema {
  return componentSchema("snapshots", snapshotTable(options.table), [{
    version: 1,
    description: "snapshots table keyed by aggregate and state schema version",
    sql: migrationSql(options),
  }]);
}

/**
 * Creates the snapshots table if it does not exist, in one transaction under the migration lock,
 * and records its schema version in `eventsalsa_schema_versions` beside it.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate } from "@eventsalsa/eventsalsa/command";
 * await migrate(postgres(process.env.DATABASE_URL!), { table: "snapshots" });
 * ```
 */
export async function migrate(sql: Sql, options: SnapshotMigrationOptions = {}): Promise<void> {
  await migrateSchemas(sql, [snapshotSchema(options)]);
}
