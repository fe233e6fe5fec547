/**
 * What the PgBouncer runs of the store, worker and CLI suites stand on: with
 * EVENTSALSA_TEST_PGBOUNCER_URL set (.ci/run starts PgBouncer and sets it), `testDatabase({ pooler })`
 * really goes through a transaction pooler, and each test gets an empty database of its own.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readEnv } from "../internal/env.ts";
import { testDatabase } from "./test_database.ts";

const PGBOUNCER = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");

describe("testDatabase through PgBouncer", {
  skip: PGBOUNCER ? false : "set EVENTSALSA_TEST_PGBOUNCER_URL",
}, () => {
  it("one client connection's transactions run on several server connections", async () => {
    const db = await testDatabase({ pooler: PGBOUNCER });
    try {
      assert.equal(new URL(db.url).port, new URL(PGBOUNCER!).port);
      assert.equal(db.schema, "public");
      // Hold a few transactions open at once, so the pool has several server connections.
      const wide = db.connect({ max: 4 });
      await Promise.all([0, 1, 2, 3].map(() => wide`SELECT pg_sleep(0.2)`));
      const one = db.connect({ max: 1 });
      const pids = new Set<number>();
      for (let i = 0; i < 12; i++) {
        const [[pid]] = await one`SELECT pg_backend_pid()`.values();
        pids.add(Number(pid));
      }
      assert.ok(pids.size > 1, `transaction pooling: ${[...pids].join(", ")}`);
      // The direct pool is one session.
      const direct = db.connectDirect({ max: 1 });
      await direct`SELECT set_config('application_name', 'eventsalsa-direct', false)`;
      const [[name]] = await direct`SELECT current_setting('application_name')`.values();
      assert.equal(name, "eventsalsa-direct");
    } finally {
      await db.close();
    }
  });

  it("every test starts on an empty database, whoever used it before", async () => {
    const first = await testDatabase({ pooler: PGBOUNCER });
    const name = first.url;
    await first.sql`CREATE TABLE leftovers (x int)`;
    await first.sql`CREATE SCHEMA elsewhere`;
    await first.close();
    const second = await testDatabase({ pooler: PGBOUNCER });
    try {
      assert.equal(second.url, name, "the database is reused within a process");
      const tables = await second.sql`SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`;
      assert.deepEqual([...tables], []);
      const [[schema]] = await second.sql`SELECT to_regnamespace('elsewhere')::text`.values();
      assert.equal(schema, null);
      await second.sql`CREATE TABLE leftovers (x int)`;
    } finally {
      await second.close();
    }
  });
});
