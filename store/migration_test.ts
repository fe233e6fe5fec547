import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { migrate, migrationSql, partitionName } from "./migration.ts";
import { PostgresStore } from "./postgres_store.ts";
import { ValidationError } from "./errors.ts";
import { any } from "./expected_version.ts";
import { testDatabase } from "../testing/test_database.ts";

describe("migrationSql", () => {
  it("creates the sequence with CACHE 1 and every column", () => {
    const ddl = migrationSql();
    assert.match(
      ddl,
      /CREATE SEQUENCE IF NOT EXISTS "events_global_position_seq" AS BIGINT CACHE 1;/,
    );
    for (
      const column of [
        "aggregate_type TEXT NOT NULL",
        "aggregate_id TEXT NOT NULL",
        "aggregate_version BIGINT NOT NULL",
        "event_id UUID NOT NULL",
        "event_type TEXT NOT NULL",
        "event_version INT NOT NULL",
        "payload BYTEA NOT NULL",
        "trace_id TEXT",
        "correlation_id TEXT",
        "causation_id TEXT",
        "metadata JSONB",
        "created_at TIMESTAMPTZ NOT NULL",
      ]
    ) assert.ok(ddl.includes(column), column);
    assert.match(ddl, /UNIQUE \(event_id\)/);
    assert.match(ddl, /CREATE TABLE IF NOT EXISTS "aggregate_heads"/);
    assert.doesNotMatch(ddl, /PARTITION/);
  });

  it("quotes schema-qualified custom names and derives index names in the same schema", () => {
    const ddl = migrationSql({ eventsTable: "es.my_events", headsTable: "es.my_heads" });
    assert.match(ddl, /CREATE TABLE IF NOT EXISTS "es"\."my_events"/);
    assert.match(ddl, /CREATE SEQUENCE IF NOT EXISTS "es"\."my_events_global_position_seq"/);
    assert.match(
      ddl,
      /CREATE INDEX IF NOT EXISTS idx_my_events_aggregate_type_position ON "es"\."my_events"/,
    );
    assert.match(ddl, /CREATE TABLE IF NOT EXISTS "es"\."my_heads"/);
  });

  it("native partitioning: exact partition DDL, no unique event_id", () => {
    const ddl = migrationSql({
      partitioning: { strategy: "native", partitionSize: 1000, initialPartitions: 3 },
    });
    assert.match(ddl, /PARTITION BY RANGE \(global_position\)/);
    assert.ok(ddl.includes(
      `CREATE TABLE IF NOT EXISTS "events_p0000000001_p0000001000" PARTITION OF "events" FOR VALUES FROM (1) TO (1001);`,
    ));
    assert.ok(
      ddl.includes(
        `"events_p0000002001_p0000003000" PARTITION OF "events" FOR VALUES FROM (2001) TO (3001);`,
      ),
    );
    assert.doesNotMatch(ddl, /p0000003001/);
    assert.doesNotMatch(ddl, /UNIQUE \(event_id\)/);
    assert.equal(partitionName("events", 6, 10), "events_p0000000006_p0000000010");
  });

  it("rejects bad names, sizes and strategies with ValidationError", () => {
    for (
      const bad of [
        { eventsTable: "events; DROP TABLE x" },
        { eventsTable: 'ev"ents' },
        { eventsTable: "a.b.c" },
        { eventsTable: "" },
        { headsTable: "1heads" },
        { eventsTable: "x".repeat(64) },
        { eventsTable: "x".repeat(50) }, // derived sequence name would exceed 63 bytes
        { partitioning: { strategy: "native" as const, partitionSize: 0 } },
        { partitioning: { strategy: "partman" as unknown as "native" } },
      ]
    ) assert.throws(() => migrationSql(bad), ValidationError, JSON.stringify(bad));
    assert.throws(() => new PostgresStore({ notifyChannel: "a.b" }), ValidationError);
    assert.throws(() => new PostgresStore({ notifyChannel: "chan nel" }), ValidationError);
    assert.throws(() => new PostgresStore({ eventsTable: "drop table" }), ValidationError);
  });

  it("applies idempotently, concurrently, and the store works on custom schema-qualified tables", async (t) => {
    const db = await testDatabase();
    try {
      const options = {
        eventsTable: `${db.schema}.ledger`,
        headsTable: `${db.schema}.ledger_heads`,
      };
      if (db.supportsConcurrency) {
        await Promise.all([
          migrate(db.sql, options),
          migrate(db.connect(), options),
          migrate(db.connect(), options),
        ]);
      } else {
        t.diagnostic?.("concurrent migration needs several connections; applied sequentially");
        await migrate(db.sql, options);
        await migrate(db.sql, options);
      }
      const [[cache]] = await db.sql`SELECT cache_size::int FROM pg_sequences
        WHERE schemaname = ${db.schema} AND sequencename = 'ledger_global_position_seq'`.values();
      assert.equal(cache, 1);
      const store = new PostgresStore(options);
      const result = await store.append(db.sql, any(), [
        { aggregateType: "L", aggregateId: "1", eventType: "E", payload: new Uint8Array([7]) },
      ]);
      assert.equal(result.toVersion, 1);
      const [[rows]] = await db.sql`SELECT count(*)::int FROM ${db.sql(db.schema)}.ledger`.values();
      assert.equal(rows, 1);
    } finally {
      await db.close();
    }
  });
});
