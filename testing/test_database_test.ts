import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { testDatabase } from "./test_database.ts";
import { readEnv } from "../internal/env.ts";

describe("testDatabase", () => {
  it("resolves the configured server first, else falls back to the embedded PGlite", async () => {
    const db = await testDatabase();
    try {
      const configured = readEnv("EVENTSALSA_TEST_DATABASE_URL") ?? readEnv("DATABASE_URL");
      if (configured) {
        assert.equal(db.kind, "postgres");
        assert.equal(db.url, configured);
        assert.equal(db.supportsConcurrency, true);
      } else {
        assert.ok(db.kind === "docker" || db.kind === "pglite");
      }
      const [[schema]] = await db.sql`SELECT current_schema()`.values();
      assert.equal(schema, db.schema);
    } finally {
      await db.close();
    }
  });

  it("gives every test its own schema and drops it on close", async () => {
    const first = await testDatabase();
    await first.sql`CREATE TABLE private_notes (body text)`;
    await first.sql`INSERT INTO private_notes VALUES ('first')`;
    const firstSchema = first.schema;
    await first.close();
    const second = await testDatabase();
    try {
      assert.notEqual(second.schema, firstSchema);
      await assert.rejects(second.sql`SELECT * FROM private_notes`, /does not exist/);
      const [[left]] = await second.sql`SELECT count(*)::int FROM information_schema.schemata
        WHERE schema_name = ${firstSchema}`.values();
      assert.equal(left, 0);
    } finally {
      await second.close();
    }
  });

  it("the embedded engine can be forced and reports why concurrency tests skip", async () => {
    const db = await testDatabase({ server: "embedded" });
    try {
      assert.equal(db.kind, "pglite");
      assert.equal(db.supportsConcurrency, false);
      assert.match(db.concurrencySkipReason!, /PGlite/);
      const [[one]] = await db.sql`SELECT 1::int`.values();
      assert.equal(one, 1);
    } finally {
      await db.close();
    }
  });
});
