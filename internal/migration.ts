import type { Sql } from "postgres";
import type { SqlExecutor } from "./postgres_client.ts";
import { derivedIdentifier, literal, type SqlIdentifier } from "./sql_identifier.ts";
import { begin } from "./transaction.ts";

/**
 * Serialises concurrent migrations of one database (two processes starting at once), for the
 * store, worker and encryption schemas alike.
 */
export const MIGRATION_LOCK_KEY = 7_290_412_853;

/**
 * Applies DDL in one transaction under an advisory lock, so concurrent starts do not race on
 * `CREATE ... IF NOT EXISTS`. Internal: users migrate with each component's `migrate` (or the
 * CLI), which also record schema versions.
 */
export async function applyMigration(sql: Sql, ddl: string): Promise<void> {
  await begin(sql, async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx.unsafe(ddl);
  });
}

/**
 * The table recording which schema versions were applied. There is one beside each component's
 * principal table (the events table, the checkpoints table, the keys table): in its schema, or
 * unqualified (found through `search_path`) when that table's name is unqualified.
 */
export const SCHEMA_VERSIONS_TABLE = "eventsalsa_schema_versions";

/** One schema version of a component. */
export interface SchemaVersion {
  /** 1, 2, 3, ...: versions apply in this order, each once. */
  readonly version: number;
  /** What the version does, in a few words (stored with the row). */
  readonly description: string;
  /**
   * The DDL. It runs once per component and principal table, in the same transaction as the row
   * that records it, so it must either be idempotent (version 1 is: `IF NOT EXISTS` throughout,
   * which is how databases created before versions were recorded are brought under them) or be
   * safe to run exactly once after the versions before it.
   */
  readonly sql: string;
}

/** A component's schema as this version of the library knows it. */
export interface ComponentSchema {
  /** `store`, `worker` or `encryption`. */
  readonly component: string;
  /**
   * The principal table as named in the options (e.g. `app.events`); with `component`, the key of
   * the component's rows in the versions table, so two stores in one schema are told apart.
   */
  readonly target: string;
  /** The versions table beside the principal table. */
  readonly versionsTable: SqlIdentifier;
  /** Every version, ascending from 1; this library expects the last one. */
  readonly versions: readonly SchemaVersion[];
}

/** Builds a {@link ComponentSchema} whose versions table sits beside `principal`. */
export function componentSchema(
  component: string,
  principal: SqlIdentifier,
  versions: readonly SchemaVersion[],
): ComponentSchema {
  return {
    component,
    target: principal.text,
    versionsTable: derivedIdentifier(principal, SCHEMA_VERSIONS_TABLE, "schema versions table"),
    versions,
  };
}

/** Where a component's schema stands in a database. */
export interface ComponentSchemaState {
  readonly component: string;
  readonly target: string;
  /** The versions table consulted, e.g. `app.eventsalsa_schema_versions`. */
  readonly versionsTable: string;
  /** The highest version recorded; 0 when none is (not migrated, or migrated before 0.1.0 recorded versions). */
  readonly current: number;
  /** The version this library expects. */
  readonly expected: number;
  /** Versions not recorded yet, in the order they apply. */
  readonly pending: readonly { readonly version: number; readonly description: string }[];
  /** Whether the database records a version newer than this library knows (upgrade the library). */
  readonly ahead: boolean;
}

/** The DDL of the versions table (idempotent). */
export function schemaVersionsTableSql(table: SqlIdentifier): string {
  return `CREATE TABLE IF NOT EXISTS ${table.quoted} (
    component TEXT NOT NULL,
    target TEXT NOT NULL,
    version INT NOT NULL CHECK (version > 0),
    description TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, target, version)
);
`;
}

/** SHA-256 of a version's DDL, hex: recorded with the version, so what ran can be checked later. */
export async function ddlChecksum(ddl: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(ddl));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The versions recorded for a component (none when the versions table does not exist). */
async function recordedVersions(runner: SqlExecutor, schema: ComponentSchema): Promise<number[]> {
  const [[exists]] = await runner.unsafe(`SELECT to_regclass($1) IS NOT NULL`, [
    schema.versionsTable.quoted,
  ]).values();
  if (exists !== true) return [];
  const rows = await runner.unsafe(
    `SELECT version FROM ${schema.versionsTable.quoted} WHERE component = $1 AND target = $2`,
    [schema.component, schema.target],
  ).values();
  return rows.map((row) => Number(row[0]));
}

function stateOf(schema: ComponentSchema, recorded: readonly number[]): ComponentSchemaState {
  const done = new Set(recorded);
  const expected = schema.versions.at(-1)?.version ?? 0;
  const current = recorded.length === 0 ? 0 : Math.max(...recorded);
  return {
    component: schema.component,
    target: schema.target,
    versionsTable: schema.versionsTable.text,
    current,
    expected,
    pending: schema.versions.filter((v) => !done.has(v.version)).map((v) => ({
      version: v.version,
      description: v.description,
    })),
    ahead: current > expected,
  };
}

/**
 * Where each component's schema stands: the versions recorded and the ones still to apply. Reads
 * only; a missing versions table counts as nothing recorded.
 */
export async function schemaStates(
  sql: SqlExecutor,
  schemas: readonly ComponentSchema[],
): Promise<ComponentSchemaState[]> {
  const states: ComponentSchemaState[] = [];
  for (const schema of schemas) states.push(stateOf(schema, await recordedVersions(sql, schema)));
  return states;
}

/** What {@link migrateSchemas} did for one component. */
export interface MigrationOutcome extends ComponentSchemaState {
  /** The versions applied by this run (empty when the schema was up to date). */
  readonly applied: readonly number[];
}

function recordSql(schema: ComponentSchema, version: SchemaVersion, checksum: string): string {
  return `INSERT INTO ${schema.versionsTable.quoted} ` +
    `(component, target, version, description, checksum) VALUES (${literal(schema.component)}, ` +
    `${literal(schema.target)}, ${version.version}, ${literal(version.description)}, ` +
    `${literal(checksum)}) ON CONFLICT DO NOTHING;\n`;
}

/**
 * Brings each component's schema to the version this library expects: in one transaction, under
 * the migration lock, every version not recorded yet runs and is recorded (component, target,
 * version, checksum of its DDL, time). Already recorded versions are not run again.
 */
export async function migrateSchemas(
  sql: Sql,
  schemas: readonly ComponentSchema[],
): Promise<MigrationOutcome[]> {
  const checksums = await Promise.all(
    schemas.map((schema) => Promise.all(schema.versions.map((v) => ddlChecksum(v.sql)))),
  );
  return await begin(sql, async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    const outcomes: MigrationOutcome[] = [];
    for (const [i, schema] of schemas.entries()) {
      const recorded = await recordedVersions(tx, schema);
      const applied: number[] = [];
      for (const [j, version] of schema.versions.entries()) {
        if (recorded.includes(version.version)) continue;
        await tx.unsafe(version.sql);
        // After the DDL: a worker version may create the schema the versions table lives in.
        await tx.unsafe(
          schemaVersionsTableSql(schema.versionsTable) +
            recordSql(schema, version, checksums[i][j]),
        );
        applied.push(version.version);
      }
      outcomes.push({ ...stateOf(schema, [...recorded, ...applied]), applied });
    }
    return outcomes;
  });
}

/**
 * The SQL script that does what {@link migrateSchemas} does for the given versions: one
 * transaction under the migration lock, each version's DDL followed by the row recording it. For
 * review, or to apply with psql or a migration tool.
 */
export async function migrationScript(
  parts: readonly { schema: ComponentSchema; versions: readonly SchemaVersion[] }[],
): Promise<string> {
  const lines = ["BEGIN;", `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY});`];
  for (const { schema, versions } of parts) {
    for (const version of versions) {
      lines.push(
        "",
        `-- ${schema.component} v${version.version} (${schema.target}): ${version.description}`,
        version.sql.trimEnd(),
        schemaVersionsTableSql(schema.versionsTable).trimEnd(),
        recordSql(schema, version, await ddlChecksum(version.sql)).trimEnd(),
      );
    }
  }
  lines.push("", "COMMIT;");
  return lines.join("\n") + "\n";
}
