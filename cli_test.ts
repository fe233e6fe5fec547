import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "./cli.ts";
import { captureIo } from "./cli/capture_io.ts";
import { testDatabase } from "./testing/test_database.ts";
import { readEnv } from "./internal/env.ts";

describe("eventsalsa CLI", () => {
  it("migrate prints idempotent DDL with custom names", async () => {
    const io = captureIo();
    assert.equal(await runCli(["migrate", "--events-table", "app.ledger"], io), 0);
    const ddl = io.lines.join("\n");
    assert.match(ddl, /CREATE TABLE IF NOT EXISTS "app"\."ledger"/);
    assert.match(ddl, /CACHE 1/);
  });

  it("user mistakes are one line and exit 2; no stack trace", async () => {
    for (
      const args of [
        ["migrate", "--apply"],
        ["migrate", "--events-table", "bad name"],
        ["migrate", "--partition-size", "-3"],
        ["migrate", "--bogus"],
        ["migrate", "--only", "nothing"],
        ["frobnicate"],
      ]
    ) {
      const io = captureIo();
      assert.equal(await runCli(args, io), 2, args.join(" "));
      assert.equal(io.errors.length, 1, args.join(" "));
      assert.doesNotMatch(io.errors[0], /\n\s+at /);
    }
  });

  // EVENTSALSA_TEST_PGBOUNCER_URL (set by .ci/run): also with DATABASE_URL on a real PgBouncer in
  // transaction pooling mode (docs/pgbouncer.md).
  const pgbouncer = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
  for (const pooler of pgbouncer ? [undefined, pgbouncer] : [undefined]) {
    it(
      `migrate --apply creates the schema on DATABASE_URL, twice without error${
        pooler ? " (through PgBouncer)" : ""
      }`,
      async () => {
        await migrateTwice(pooler);
      },
    );
  }
});

async function migrateTwice(pooler: string | undefined): Promise<void> {
  const db = await testDatabase({ pooler });
  try {
    const env = { DATABASE_URL: db.url };
    const table = `${db.schema}.cli_events`;
    const heads = `${db.schema}.cli_heads`;
    for (let i = 0; i < 2; i++) {
      const io = captureIo(env);
      const status = await runCli([
        "migrate",
        "--apply",
        "--only",
        "store",
        "--events-table",
        table,
        "--heads-table",
        heads,
      ], io);
      assert.equal(status, 0, io.errors.join("\n"));
    }
    const [[count]] = await db.sql`SELECT count(*)::int FROM information_schema.tables
        WHERE table_schema = ${db.schema} AND table_name IN ('cli_events', 'cli_heads')`.values();
    assert.equal(count, 2);
  } finally {
    await db.close();
  }
}
