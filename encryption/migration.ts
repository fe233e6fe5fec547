/**
 * The key store's schema. The keys table is the Go library's `encryption_keys` table, column for
 * column and constraint for constraint, so Go and TypeScript services can share it; the tombstone
 * table is an addition that Go ignores.
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
import { InvalidInputError } from "./errors.ts";

/**
 * Default keys table, unqualified (resolved through `search_path`). It is not the Go services'
 * table: see {@link GO_KEYS_TABLE}.
 */
export const DEFAULT_KEYS_TABLE = "encryption_keys";

/**
 * The keys table of the Go library's services, `infrastructure.encryption_keys`. The default here
 * is the unqualified `encryption_keys`, another table: a deployment where Go and TypeScript
 * services share keys must name this one, the same way, wherever a table is given (the key store,
 * the migration, the CLI's `--keys-table`), or each side silently keeps keys of its own.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { GO_KEYS_TABLE, migrate, PostgresKeyStore } from "@eventsalsa/eventsalsa/encryption";
 * const sql = postgres(process.env.DATABASE_URL!);
 * // Adds only the tombstone table next to a table the Go services already created.
 * await migrate(sql, { table: GO_KEYS_TABLE, createSchema: true });
 * const store = new PostgresKeyStore({ table: GO_KEYS_TABLE });
 * ```
 */
export const GO_KEYS_TABLE = "infrastructure.encryption_keys";

/**
 * Table names of the PostgreSQL key store.
 *
 * @example
 * ```ts
 * import { GO_KEYS_TABLE, type KeyStoreTableOptions } from "@eventsalsa/eventsalsa/encryption";
 * // Share the Go services' table:
 * const options: KeyStoreTableOptions = { table: GO_KEYS_TABLE };
 * ```
 */
export interface KeyStoreTableOptions {
  /**
   * The keys table, optionally schema-qualified, lower case (so the quoted name is the same table
   * Go's unquoted name resolves to); `encryption_keys` when omitted. To share keys with services
   * on the Go library, pass {@link GO_KEYS_TABLE} (`infrastructure.encryption_keys`, Go's
   * default) or whatever table those services were configured with.
   */
  table?: string;
  /** The tombstone table; `<table>_tombstones` in the same schema when omitted. */
  tombstoneTable?: string;
}

/**
 * Options of {@link migrationSql}.
 *
 * @example
 * ```ts
 * import { type EncryptionMigrationOptions, GO_KEYS_TABLE } from "@eventsalsa/eventsalsa/encryption";
 * const options: EncryptionMigrationOptions = { table: GO_KEYS_TABLE, createSchema: true };
 * ```
 */
export interface EncryptionMigrationOptions extends KeyStoreTableOptions {
  /** Also emit `CREATE SCHEMA IF NOT EXISTS` for the tables' schemas (off by default, as in Go). */
  createSchema?: boolean;
}

/** The key store's tables, validated and quoted. */
export interface KeyStoreTables {
  readonly keys: SqlIdentifier;
  readonly tombstones: SqlIdentifier;
}

function lowerCaseIdentifier(value: unknown, what: string): SqlIdentifier {
  const identifier = parseIdentifier(value, what);
  if (identifier.text !== identifier.text.toLowerCase()) {
    throw new IdentifierError(
      `${what} ${JSON.stringify(identifier.text)} must be lower case (PostgreSQL folds the Go ` +
        `library's unquoted names to lower case; a quoted mixed-case name would be another table)`,
    );
  }
  return identifier;
}

/** Validates the table names; shared by the migration and the store so both agree. */
export function keyStoreTables(options: KeyStoreTableOptions = {}): KeyStoreTables {
  try {
    const keys = lowerCaseIdentifier(options.table ?? DEFAULT_KEYS_TABLE, "table");
    const tombstones = options.tombstoneTable === undefined
      ? derivedIdentifier(keys, `${keys.name}_tombstones`, "tombstone table")
      : lowerCaseIdentifier(options.tombstoneTable, "tombstoneTable");
    if (tombstones.quoted === keys.quoted) {
      throw new IdentifierError("tombstoneTable must differ from table");
    }
    return { keys, tombstones };
  } catch (error) {
    if (error instanceof IdentifierError) throw new InvalidInputError(error.message);
    throw error;
  }
}

/**
 * The DDL of the key store: the Go library's migration (same columns, constraints and indexes;
 * names validated and quoted) followed by the tombstone table. Idempotent (`IF NOT EXISTS`). The
 * schema must exist unless `createSchema` is set.
 *
 * @example
 * ```ts
 * import { GO_KEYS_TABLE, migrationSql } from "@eventsalsa/eventsalsa/encryption";
 * console.log(migrationSql({ table: GO_KEYS_TABLE, createSchema: true }));
 * ```
 */
export function migrationSql(options: EncryptionMigrationOptions = {}): string {
  const { keys, tombstones } = keyStoreTables(options);
  const T = keys.quoted;
  const index = (suffix: string): string => {
    try {
      return quotePart(derivedIdentifier(keys, `idx_${keys.name}_${suffix}`, "index name").name);
    } catch (error) {
      if (error instanceof IdentifierError) throw new InvalidInputError(error.message);
      throw error;
    }
  };
  let out = "";
  if (options.createSchema === true) {
    const schemas = new Set([keys.schema, tombstones.schema].filter((s) => s !== null));
    for (const schema of schemas) out += `CREATE SCHEMA IF NOT EXISTS ${quotePart(schema!)};\n\n`;
  }
  out += `CREATE TABLE IF NOT EXISTS ${T} (
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    key_version INT NOT NULL,
    encrypted_key BYTEA NOT NULL,
    system_key_id TEXT NOT NULL DEFAULT 'default',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    revoked_at TIMESTAMPTZ,
    PRIMARY KEY (scope, scope_id, key_version),
    CONSTRAINT scope_not_empty CHECK (scope <> ''),
    CONSTRAINT scope_id_not_empty CHECK (scope_id <> ''),
    CONSTRAINT key_version_positive CHECK (key_version > 0),
    CONSTRAINT encrypted_key_not_empty CHECK (length(encrypted_key) > 0),
    CONSTRAINT system_key_id_not_empty CHECK (system_key_id <> '')
);

CREATE INDEX IF NOT EXISTS ${index("active")}
    ON ${T}(scope, scope_id, revoked_at)
    WHERE revoked_at IS NULL;

CREATE INDEX IF NOT EXISTS ${index("system_key_id")}
    ON ${T}(system_key_id);

CREATE INDEX IF NOT EXISTS ${index("scope")}
    ON ${T}(scope, scope_id, key_version DESC);
`;
  out += `
-- eventsalsa for TypeScript: tombstones of destroyed keys, so that decrypting after
-- crypto-shredding reports "destroyed" rather than "not found". The Go library ignores this table.
CREATE TABLE IF NOT EXISTS ${tombstones.quoted} (
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    max_key_version INT NOT NULL,
    destroyed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (scope, scope_id),
    CONSTRAINT max_key_version_positive CHECK (max_key_version > 0)
);
`;
  return out;
}

/**
 * The key store's schema versions; this library expects the last. Version 1 is
 * {@link migrationSql}'s DDL (idempotent). The versions table sits beside the keys table; the Go
 * library ignores it.
 */
export function encryptionSchema(options: EncryptionMigrationOptions = {}): ComponentSchema {
  return componentSchema("encryption", keyStoreTables(options).keys, [{
    version: 1,
    description: "encryption keys (the Go library's table) and key tombstones",
    sql: migrationSql(options),
  }]);
}

/**
 * Applies {@link migrationSql} in one transaction under the advisory lock every eventsalsa
 * migration takes (store, worker and encryption tables can be migrated concurrently), and records
 * the schema version in `eventsalsa_schema_versions` beside the keys table (a recorded version is
 * not run again).
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { migrate } from "@eventsalsa/eventsalsa/encryption";
 * await migrate(postgres(process.env.DATABASE_URL!), { table: "encryption_keys" });
 * ```
 */
export async function migrate(
  sql: Sql,
  options: EncryptionMigrationOptions = {},
): Promise<void> {
  await migrateSchemas(sql, [encryptionSchema(options)]);
}
