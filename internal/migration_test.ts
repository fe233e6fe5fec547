import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { testDatabase } from "../testing/test_database.ts";
import { migrate as migrateStore } from "../store/migration.ts";
import { migrate as migrateWorker, workerSchema } from "../worker/postgres/migration.ts";
import { parseIdentifier } from "./sql_identifier.ts";
import {
  type ComponentSchema,
  componentSchema,
  ddlChecksum,
  migrateSchemas,
  migrationScript,
  schemaStates,
  type SchemaVersion,
} from "./migration.ts";

const V1: SchemaVersion = {
  version: 1,
  description: "notes table",
  sql: "CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY);",
};
// Not idempotent on purpose: running it twice fails, so "applied once" is observable.
const V2: SchemaVersion = {
  version: 2,
  description: "notes get a body",
  sql: "ALTER TABLE notes ADD COLUMN body TEXT NOT NULL DEFAULT '';",
};

function notes(versions: SchemaVersion[]): ComponentSchema {
  return componentSchema("store", parseIdentifier("notes", "table"), versions);
}

describe("schema versions", () => {
  it("an upgrade applies only the versions a database lacks, each once, with its checksum", async () => {
    const db = await testDatabase();
    try {
      const [first] = await migrateSchemas(db.sql, [notes([V1])]);
      assert.deepEqual(first.applied, [1]);
      assert.equal(first.current, 1);
      // The library grows a version 2: a database at version 1 moves forward.
      const [behind] = await schemaStates(db.sql, [notes([V1, V2])]);
      assert.deepEqual(behind.pending, [{ version: 2, description: "notes get a body" }]);
      assert.equal(behind.current, 1);
      assert.equal(behind.expected, 2);
      const [second] = await migrateSchemas(db.sql, [notes([V1, V2])]);
      assert.deepEqual(second.applied, [2]);
      const [third] = await migrateSchemas(db.sql, [notes([V1, V2])]);
      assert.deepEqual(third.applied, [], "nothing runs twice");
      const rows = await db.sql`SELECT version, checksum, description
        FROM eventsalsa_schema_versions WHERE component = 'store' AND target = 'notes'
        ORDER BY version`;
      assert.deepEqual(rows.map((r) => [r.version, r.checksum, r.description]), [
        [1, await ddlChecksum(V1.sql), V1.description],
        [2, await ddlChecksum(V2.sql), V2.description],
      ]);
      // An older library sees a database ahead of it.
      const [old] = await schemaStates(db.sql, [notes([V1])]);
      assert.equal(old.ahead, true);
      assert.deepEqual(old.pending, []);
    } finally {
      await db.close();
    }
  });

  it("a failing version rolls back with its record; the versions before it stay", async () => {
    const db = await testDatabase();
    try {
      const broken = { version: 2, description: "broken", sql: "ALTER TABLE nowhere ADD x INT;" };
      await assert.rejects(migrateSchemas(db.sql, [notes([V1, broken])]), /nowhere/);
      const [state] = await schemaStates(db.sql, [notes([V1, broken])]);
      assert.equal(state.current, 0, "one transaction: version 1 rolled back too");
      const [[table]] = await db.sql`SELECT to_regclass('notes')::text`.values();
      assert.equal(table, null);
    } finally {
      await db.close();
    }
  });

  it("concurrent migrations record each version once", async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      const pools = [db.connect({ max: 1 }), db.connect({ max: 1 }), db.connect({ max: 1 })];
      const outcomes = await Promise.all(pools.map((pool) => migrateStore(pool)));
      assert.equal(outcomes.length, 3);
      const [[count]] = await db.sql`SELECT count(*)::int FROM eventsalsa_schema_versions`.values();
      assert.equal(count, 1);
    } finally {
      await db.close();
    }
  });

  it("the printed script records what it applies, like migrateSchemas", async () => {
    const db = await testDatabase();
    try {
      const schema = notes([V1, V2]);
      // As psql would run it: one session (postgres.js takes BEGIN only with max: 1).
      const session = db.supportsConcurrency ? db.connect({ max: 1 }) : db.sql;
      await session.unsafe(await migrationScript([{ schema, versions: schema.versions }]));
      const [state] = await schemaStates(db.sql, [schema]);
      assert.equal(state.current, 2);
      assert.deepEqual(state.pending, []);
    } finally {
      await db.close();
    }
  });

  it("a worker schema of its own: the versions table lands in the schema its DDL creates", async () => {
    const db = await testDatabase();
    const schema = `${db.schema}_ops`;
    try {
      await migrateWorker(db.sql, { consumerCheckpointsTable: `${schema}.checkpoints` });
      const rows = await db.sql.unsafe(
        `SELECT component, target, version FROM "${schema}".eventsalsa_schema_versions`,
      );
      assert.deepEqual(rows.map((r) => [r.component, r.target, r.version]), [
        ["worker", `${schema}.checkpoints`, 1],
      ]);
      const [state] = await schemaStates(db.sql, [
        workerSchema({ consumerCheckpointsTable: `${schema}.checkpoints` }),
      ]);
      assert.equal(state.current, 1);
      assert.equal(state.versionsTable, `${schema}.eventsalsa_schema_versions`);
    } finally {
      await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.close();
    }
  });

  it("the versions table sits beside the principal table", () => {
    assert.equal(notes([V1]).versionsTable.quoted, `"eventsalsa_schema_versions"`);
    const qualified = componentSchema("worker", parseIdentifier("ops.checkpoints", "t"), [V1]);
    assert.equal(qualified.versionsTable.quoted, `"ops"."eventsalsa_schema_versions"`);
    assert.equal(qualified.target, "ops.checkpoints");
  });
});
