import type { Sql } from "postgres";
import { quotePart } from "../../internal/sql_identifier.ts";
import { type ComponentSchema, componentSchema, migrateSchemas } from "../../internal/migration.ts";
import type { WorkerTableOptions } from "../options.ts";
import { indexName, workerTables } from "./tables.ts";

/**
 * The DDL of the worker's tables: idempotent (`IF NOT EXISTS` throughout), schemas created for
 * schema-qualified names. Tables: worker registrations (with the consumers each registered),
 * consumer assignments (fence rows), checkpoints (with the current gap wait, for `status`), the
 * `maxGapWait` skip audit, dead letters, and the leader row (the lease of the `lease` strategy;
 * for `advisory`, who holds the lock, for `status`).
 *
 * @example
 * ```ts
 * import { migrationSql } from "@eventsalsa/eventsalsa/worker";
 * console.log(migrationSql({ consumerCheckpointsTable: "infra.consumer_checkpoints" }));
 * ```
 */
export function migrationSql(options: WorkerTableOptions = {}): string {
  const t = workerTables(options);
  const schemas = new Set(
    [t.nodes, t.assignments, t.checkpoints, t.gapSkips, t.deadLetters, t.leader]
      .map((table) => table.schema)
      .filter((schema): schema is string => schema !== null),
  );
  const lines = [`-- eventsalsa worker schema (idempotent)`];
  for (const schema of schemas) lines.push(`CREATE SCHEMA IF NOT EXISTS ${quotePart(schema)};`);
  lines.push(
    `CREATE TABLE IF NOT EXISTS ${t.nodes.quoted} (
    worker_id TEXT PRIMARY KEY,
    consumers TEXT[] NOT NULL DEFAULT '{}',
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);`,
    `CREATE INDEX IF NOT EXISTS ${
      indexName(t.nodes, "heartbeat")
    } ON ${t.nodes.quoted} (heartbeat_at);`,
    `CREATE TABLE IF NOT EXISTS ${t.assignments.quoted} (
    consumer_name TEXT PRIMARY KEY,
    worker_id TEXT REFERENCES ${t.nodes.quoted} (worker_id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);`,
    `CREATE INDEX IF NOT EXISTS ${
      indexName(t.assignments, "worker")
    } ON ${t.assignments.quoted} (worker_id);`,
    `CREATE TABLE IF NOT EXISTS ${t.checkpoints.quoted} (
    consumer_name TEXT PRIMARY KEY,
    last_position BIGINT NOT NULL DEFAULT 0 CHECK (last_position >= 0),
    gap_position BIGINT,
    gap_since TIMESTAMPTZ,
    gap_blockers JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);`,
    `CREATE TABLE IF NOT EXISTS ${t.gapSkips.quoted} (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer_name TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    gap_position BIGINT NOT NULL,
    skip_to_position BIGINT NOT NULL,
    skipped_positions BIGINT[] NOT NULL,
    highest_visible_position BIGINT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);`,
    `CREATE INDEX IF NOT EXISTS ${
      indexName(t.gapSkips, "consumer")
    } ON ${t.gapSkips.quoted} (consumer_name, created_at DESC);`,
    `CREATE TABLE IF NOT EXISTS ${t.deadLetters.quoted} (
    consumer_name TEXT NOT NULL,
    global_position BIGINT NOT NULL,
    event_id UUID NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INT NOT NULL,
    skipped BOOLEAN NOT NULL,
    worker_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at TIMESTAMPTZ,
    redriven_at TIMESTAMPTZ,
    PRIMARY KEY (consumer_name, global_position)
);`,
    `CREATE TABLE IF NOT EXISTS ${t.leader.quoted} (
    lease_key TEXT PRIMARY KEY CHECK (lease_key = 'leader'),
    leader_id TEXT REFERENCES ${t.nodes.quoted} (worker_id) ON DELETE CASCADE,
    strategy TEXT NOT NULL CHECK (strategy IN ('advisory', 'lease')),
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);`,
  );
  return lines.join("\n") + "\n";
}

/**
 * The worker's schema versions; this library expects the last. Version 1 is {@link migrationSql}'s
 * DDL (idempotent). The versions table sits beside the checkpoints table.
 */
export function workerSchema(options: WorkerTableOptions = {}): ComponentSchema {
  return componentSchema("worker", workerTables(options).checkpoints, [{
    version: 1,
    description: "workers, assignments, checkpoints, gap skips, dead letters, leader election",
    sql: migrationSql(options),
  }]);
}

/**
 * Creates the worker's tables if they do not exist, in one transaction under the same advisory
 * lock as the store's migration (concurrent starts do not race), and records the schema version
 * in `eventsalsa_schema_versions` beside the checkpoints table (a recorded version is not run
 * again). The CLI's `migrate` does the same; it needs no CLI.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate } from "@eventsalsa/eventsalsa/worker";
 * await migrate(postgres(process.env.DATABASE_URL!));
 * ```
 */
export async function migrate(sql: Sql, options: WorkerTableOptions = {}): Promise<void> {
  await migrateSchemas(sql, [workerSchema(options)]);
}
