import type { Sql } from "postgres";
import {
  derivedIdentifier,
  IdentifierError,
  literal,
  parseIdentifier,
  type SqlIdentifier,
} from "../internal/sql_identifier.ts";
import { type ComponentSchema, componentSchema, migrateSchemas } from "../internal/migration.ts";
import { ValidationError } from "./errors.ts";

/**
 * Native range partitioning of the events table on `global_position`.
 *
 * @example
 * ```ts
 * import type { NativePartitioning } from "@eventsalsa/eventsalsa/store";
 * const partitioning: NativePartitioning = { strategy: "native", partitionSize: 10_000_000 };
 * ```
 */
export interface NativePartitioning {
  /** Only `"native"` (PostgreSQL declarative partitioning) is supported. */
  strategy: "native";
  /** Positions per partition; 10,000,000 when omitted. */
  partitionSize?: number;
  /** Partitions created up front; 4 when omitted. Later ones are created by the operator. */
  initialPartitions?: number;
}

/**
 * Options for the store's schema.
 *
 * @example
 * ```ts
 * import type { StoreMigrationOptions } from "@eventsalsa/eventsalsa/store";
 * const options: StoreMigrationOptions = { eventsTable: "es.events", headsTable: "es.aggregate_heads" };
 * ```
 */
export interface StoreMigrationOptions {
  /** Events table, optionally schema-qualified; `events` when omitted. */
  eventsTable?: string;
  /** Aggregate heads table, optionally schema-qualified; `aggregate_heads` when omitted. */
  headsTable?: string;
  /** Range partitioning of the events table; none when omitted. */
  partitioning?: NativePartitioning | null;
}

/** The store's table names, validated and quoted, with the names derived from them. */
export interface StoreTables {
  readonly events: SqlIdentifier;
  readonly heads: SqlIdentifier;
  readonly sequence: SqlIdentifier;
}

/** Validates table names; shared by the migration and the store so both agree on every name. */
export function storeTables(
  options: { eventsTable?: string; headsTable?: string } = {},
): StoreTables {
  try {
    const events = parseIdentifier(options.eventsTable ?? "events", "eventsTable");
    return {
      events,
      heads: parseIdentifier(options.headsTable ?? "aggregate_heads", "headsTable"),
      sequence: derivedIdentifier(events, `${events.name}_global_position_seq`, "sequence name"),
    };
  } catch (error) {
    if (error instanceof IdentifierError) throw new ValidationError(error.message);
    throw error;
  }
}

function positiveInteger(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(`${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/**
 * Name of the partition holding positions `from` to `to` inclusive, e.g.
 * `partitionName("events", 1, 5)` is `"events_p0000000001_p0000000005"`. Internal (tests check
 * partitions by name); not exported by the package.
 */
export function partitionName(eventsTable: string, from: number, to: number): string {
  const pad = (n: number) => String(n).padStart(10, "0");
  return `${eventsTable}_p${pad(from)}_p${pad(to)}`;
}

/**
 * The DDL for the store's tables: idempotent (`IF NOT EXISTS` throughout), with the position
 * sequence at `CACHE 1` so positions are drawn in time order (the worker's gap rule depends on it).
 *
 * @example
 * ```ts
 * import { migrationSql } from "@eventsalsa/eventsalsa/store";
 * console.log(migrationSql({ eventsTable: "events", partitioning: { strategy: "native" } }));
 * ```
 */
export function migrationSql(options: StoreMigrationOptions = {}): string {
  const { events, heads, sequence } = storeTables(options);
  const idx = (suffix: string) =>
    derivedIdentifier(events, `idx_${events.name}_${suffix}`, "index name").name;
  const partitioning = options.partitioning ?? null;
  if (partitioning !== null && partitioning.strategy !== "native") {
    throw new ValidationError(
      `partitioning strategy must be "native", got ${JSON.stringify(partitioning.strategy)}`,
    );
  }
  const columns = `
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    aggregate_version BIGINT NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    event_version INT NOT NULL DEFAULT 1,
    payload BYTEA NOT NULL,
    trace_id TEXT,
    correlation_id TEXT,
    causation_id TEXT,
    metadata JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object')`;
  const lines = [
    `-- eventsalsa store schema (idempotent)`,
    `CREATE SEQUENCE IF NOT EXISTS ${sequence.quoted} AS BIGINT CACHE 1;`,
  ];
  if (partitioning === null) {
    lines.push(
      `CREATE TABLE IF NOT EXISTS ${events.quoted} (
    global_position BIGINT NOT NULL DEFAULT nextval(${literal(sequence.quoted)}),${columns},
    PRIMARY KEY (global_position),
    UNIQUE (event_id),
    UNIQUE (aggregate_type, aggregate_id, aggregate_version)
);`,
      `ALTER SEQUENCE ${sequence.quoted} OWNED BY ${events.quoted}.global_position;`,
    );
  } else {
    const size = positiveInteger(partitioning.partitionSize, 10_000_000, "partitionSize");
    const count = positiveInteger(partitioning.initialPartitions, 4, "initialPartitions");
    lines.push(
      `CREATE TABLE IF NOT EXISTS ${events.quoted} (
    global_position BIGINT NOT NULL DEFAULT nextval(${literal(sequence.quoted)}),${columns},
    PRIMARY KEY (global_position)
) PARTITION BY RANGE (global_position);`,
      `-- Partitioned tables cannot enforce uniqueness without the partition key: aggregate_heads is`,
      `-- the only version guard and event_id is not unique here.`,
      `CREATE INDEX IF NOT EXISTS ${
        idx("aggregate")
      } ON ${events.quoted} (aggregate_type, aggregate_id, aggregate_version);`,
    );
    for (let p = 0; p < count; p++) {
      const from = p * size + 1;
      const to = (p + 1) * size;
      const partition = derivedIdentifier(
        events,
        partitionName(events.name, from, to),
        "partition name",
      );
      lines.push(
        `CREATE TABLE IF NOT EXISTS ${partition.quoted} PARTITION OF ${events.quoted} FOR VALUES FROM (${from}) TO (${
          to + 1
        });`,
      );
    }
  }
  lines.push(
    `CREATE INDEX IF NOT EXISTS ${
      idx("aggregate_type_position")
    } ON ${events.quoted} (aggregate_type, global_position);`,
    `CREATE TABLE IF NOT EXISTS ${heads.quoted} (
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    aggregate_version BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);`,
  );
  return lines.join("\n") + "\n";
}

export { applyMigration, MIGRATION_LOCK_KEY } from "../internal/migration.ts";

/**
 * The store's schema versions; this library expects the last. Version 1 is {@link migrationSql}'s
 * DDL (idempotent, so databases migrated before versions were recorded are brought under them).
 * A later change appends a version here, and its DDL to `migrationSql`'s output.
 */
export function storeSchema(options: StoreMigrationOptions = {}): ComponentSchema {
  return componentSchema("store", storeTables(options).events, [{
    version: 1,
    description: "events table, position sequence (CACHE 1), aggregate heads, indexes",
    sql: migrationSql(options),
  }]);
}

/**
 * Creates the store's tables if they do not exist, in one transaction under the migration lock,
 * and records the schema version in `eventsalsa_schema_versions` beside the events table (a
 * recorded version is not run again).
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate } from "@eventsalsa/eventsalsa/store";
 * await migrate(postgres(process.env.DATABASE_URL!), { eventsTable: "events" });
 * ```
 */
export async function migrate(
  sql: Sql,
  options: StoreMigrationOptions = {},
): Promise<void> {
  await migrateSchemas(sql, [storeSchema(options)]);
}
