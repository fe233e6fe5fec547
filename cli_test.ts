import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type CliIo, runCli } from "./cli.ts";
import { testDatabase } from "./testing/test_database.ts";

function capture(env: Record<string, string> = {}): CliIo & { out_: string[]; err_: string[] } {
  const out_: string[] = [];
  const err_: string[] = [];
  return {
    out_,
    err_,
    out: (line) => out_.push(line),
    err: (line) => err_.push(line),
    env: (name) => env[name],
  };
}

describe("eventsalsa CLI", () => {
  it("migrate prints idempotent DDL with custom names", async () => {
    const io = capture();
    assert.equal(await runCli(["migrate", "--events-table", "app.ledger"], io), 0);
    const ddl = io.out_.join("\n");
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
      const io = capture();
      assert.equal(await runCli(args, io), 2, args.join(" "));
      assert.equal(io.err_.length, 1, args.join(" "));
      assert.doesNotMatch(io.err_[0], /\n\s+at /);
    }
  });

  it("migrate --apply creates the schema on DATABASE_URL, twice without error", async () => {
    const db = await testDatabase();
    try {
      const env = { DATABASE_URL: db.url };
      const table = `${db.schema}.cli_events`;
      const heads = `${db.schema}.cli_heads`;
      for (let i = 0; i < 2; i++) {
        const io = capture(env);
        const status = await runCli([
          "migrate",
          "--apply",
          "--events-table",
          table,
          "--heads-table",
          heads,
        ], io);
        assert.equal(status, 0, io.err_.join("\n"));
      }
      const [[count]] = await db.sql`SELECT count(*)::int FROM information_schema.tables
        WHERE table_schema = ${db.schema} AND table_name IN ('cli_events', 'cli_heads')`.values();
      assert.equal(count, 2);
    } finally {
      await db.close();
    }
  });
});
