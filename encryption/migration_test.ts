import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InvalidInputError } from "./errors.ts";
import { keyStoreTables, migrationSql } from "./migration.ts";
import { PostgresKeyStore } from "./postgres_key_store.ts";

// The Go library's embedded 001_encryption_keys.sql, verbatim.
const GO_DDL = `CREATE TABLE IF NOT EXISTS infrastructure.encryption_keys (
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

CREATE INDEX IF NOT EXISTS idx_encryption_keys_active
    ON infrastructure.encryption_keys(scope, scope_id, revoked_at)
    WHERE revoked_at IS NULL;

CREATE INDEX IF NOT EXISTS idx_encryption_keys_system_key_id
    ON infrastructure.encryption_keys(system_key_id);

CREATE INDEX IF NOT EXISTS idx_encryption_keys_scope
    ON infrastructure.encryption_keys(scope, scope_id, key_version DESC);
`;

describe("migrationSql", () => {
  it("29. for Go's default table, the keys part is Go's file byte for byte (but quoted)", () => {
    const ddl = migrationSql({ table: "infrastructure.encryption_keys" });
    const goPart = ddl.slice(0, GO_DDL.length + 40).split("\n-- eventsalsa")[0];
    assert.equal(goPart.replaceAll('"', ""), GO_DDL);
    assert.ok(ddl.includes('"infrastructure"."encryption_keys"'));
    assert.ok(
      ddl.includes('CREATE TABLE IF NOT EXISTS "infrastructure"."encryption_keys_tombstones"'),
    );
  });

  it("30. custom names rename the table and its indexes", () => {
    const ddl = migrationSql({ table: "custom_schema.custom_keys" });
    assert.ok(ddl.includes('CREATE TABLE IF NOT EXISTS "custom_schema"."custom_keys" ('));
    assert.ok(ddl.includes('ON "custom_schema"."custom_keys"(scope, scope_id, revoked_at)'));
    assert.ok(ddl.includes('"idx_custom_keys_active"'));
    assert.ok(!ddl.includes("infrastructure"));
    assert.ok(!ddl.includes("encryption_keys"));
    assert.ok(ddl.includes('"custom_schema"."custom_keys_tombstones"'));
  });

  it("31. invalid names are InvalidInputError", () => {
    for (
      const table of ["custom-schema.keys", "a.b.c", "", "x; DROP TABLE y", "Mixed_Case", "1abc"]
    ) {
      assert.throws(() => migrationSql({ table }), InvalidInputError, table);
      assert.throws(() => new PostgresKeyStore({ table }), InvalidInputError, table);
    }
    assert.throws(() => migrationSql({ tombstoneTable: "bad-name" }), InvalidInputError);
    assert.throws(() => migrationSql({ table: "k", tombstoneTable: "k" }), InvalidInputError);
    assert.throws(
      () => migrationSql({ table: "x".repeat(60) }),
      InvalidInputError,
      "derived index name too long",
    );
  });

  it("defaults to unqualified names resolved through search_path", () => {
    const tables = keyStoreTables();
    assert.equal(tables.keys.quoted, '"encryption_keys"');
    assert.equal(tables.tombstones.quoted, '"encryption_keys_tombstones"');
    const store = new PostgresKeyStore();
    assert.equal(store.table, "encryption_keys");
    assert.equal(store.tombstoneTable, "encryption_keys_tombstones");
    assert.ok(!migrationSql().includes("CREATE SCHEMA"));
  });

  it("createSchema adds CREATE SCHEMA IF NOT EXISTS for each schema used", () => {
    const ddl = migrationSql({ table: "a.keys", tombstoneTable: "b.graves", createSchema: true });
    assert.ok(
      ddl.startsWith('CREATE SCHEMA IF NOT EXISTS "a";\n\nCREATE SCHEMA IF NOT EXISTS "b";'),
    );
    assert.ok(ddl.includes('CREATE TABLE IF NOT EXISTS "b"."graves"'));
  });
});
