import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { testDatabase } from "../../testing/test_database.ts";
import { WorkerConfigError } from "../errors.ts";
import { migrate, migrationSql } from "./migration.ts";

describe("worker migrationSql", () => {
  it("creates the six tables with their keys, foreign keys and indexes", () => {
    const ddl = migrationSql();
    for (
      const expected of [
        `CREATE TABLE IF NOT EXISTS "worker_nodes"`,
        `CREATE TABLE IF NOT EXISTS "consumer_assignments"`,
        `worker_id TEXT REFERENCES "worker_nodes" (worker_id) ON DELETE SET NULL`,
        `CREATE TABLE IF NOT EXISTS "consumer_checkpoints"`,
        `last_position BIGINT NOT NULL DEFAULT 0`,
        `CREATE TABLE IF NOT EXISTS "consumer_gap_skips"`,
        `skipped_positions BIGINT[] NOT NULL`,
        `CREATE TABLE IF NOT EXISTS "consumer_dead_letters"`,
        `PRIMARY KEY (consumer_name, global_position)`,
        `CREATE INDEX IF NOT EXISTS "idx_worker_nodes_heartbeat"`,
        `CREATE INDEX IF NOT EXISTS "idx_consumer_assignments_worker"`,
        `CREATE INDEX IF NOT EXISTS "idx_consumer_gap_skips_consumer"`,
        `CREATE TABLE IF NOT EXISTS "worker_leader_election"`,
        `leader_id TEXT REFERENCES "worker_nodes" (worker_id) ON DELETE CASCADE`,
      ]
    ) assert.ok(ddl.includes(expected), expected);
    assert.ok(!ddl.includes("CREATE SCHEMA"));
  });

  it("uses custom names, creates their schemas and keeps index names next to their tables", () => {
    const ddl = migrationSql({
      workerNodesTable: "infra.nodes",
      consumerDeadLettersTable: "ops.dlq",
      leaderElectionTable: "infra.leader",
    });
    assert.ok(ddl.includes(`CREATE TABLE IF NOT EXISTS "infra"."leader"`));
    assert.ok(ddl.includes(`CREATE SCHEMA IF NOT EXISTS "infra";`));
    assert.ok(ddl.includes(`CREATE SCHEMA IF NOT EXISTS "ops";`));
    assert.ok(ddl.includes(`CREATE TABLE IF NOT EXISTS "infra"."nodes"`));
    assert.ok(ddl.includes(`REFERENCES "infra"."nodes" (worker_id)`));
    assert.ok(
      ddl.includes(
        `CREATE INDEX IF NOT EXISTS "idx_nodes_heartbeat" ON "infra"."nodes" (heartbeat_at);`,
      ),
    );
    assert.ok(ddl.includes(`CREATE TABLE IF NOT EXISTS "ops"."dlq"`));
  });

  it("rejects names that are not identifiers", () => {
    assert.throws(() => migrationSql({ consumerGapSkipsTable: "gap skips" }), WorkerConfigError);
    assert.throws(() => migrationSql({ workerNodesTable: "a.b.c" }), /workerNodesTable/);
    assert.throws(() => migrationSql({ workerNodesTable: "n".repeat(60) }), /longer than 63 bytes/);
  });

  it("applies schema-qualified names", { timeout: 30_000 }, async () => {
    const db = await testDatabase();
    const schema = `${db.schema}_infra`;
    try {
      const options = {
        workerNodesTable: `${schema}.nodes`,
        consumerAssignmentsTable: `${schema}.assignments`,
      };
      await migrate(db.sql, options);
      await migrate(db.sql, options);
      const indexes = await db
        .sql`SELECT indexname FROM pg_indexes WHERE schemaname = ${schema} ORDER BY 1`;
      assert.deepEqual(indexes.map((i) => i.indexname), [
        "assignments_pkey",
        "idx_assignments_worker",
        "idx_nodes_heartbeat",
        "nodes_pkey",
      ]);
    } finally {
      await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.close();
    }
  });

  it("applies idempotently", { timeout: 30_000 }, async () => {
    const db = await testDatabase();
    try {
      await migrate(db.sql);
      await migrate(db.sql);
      const tables = await db.sql`SELECT table_name FROM information_schema.tables
        WHERE table_schema = ${db.schema} ORDER BY table_name`;
      assert.deepEqual(tables.map((t) => t.table_name), [
        "consumer_assignments",
        "consumer_checkpoints",
        "consumer_dead_letters",
        "consumer_gap_skips",
        "eventsalsa_schema_versions",
        "worker_leader_election",
        "worker_nodes",
      ]);
    } finally {
      await db.close();
    }
  });
});
