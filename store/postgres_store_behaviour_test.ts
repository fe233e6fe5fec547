import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { testDatabase } from "../testing/test_database.ts";
import { migrate } from "./migration.ts";
import { PostgresStore } from "./postgres_store.ts";
import { any, noStream } from "./expected_version.ts";
import { ConcurrencyError } from "./errors.ts";

const payload = new Uint8Array([1, 2, 3]);

/** `size` events of one aggregate. */
const batchOf = (aggregateType: string, aggregateId: string, size: number) =>
  Array.from({ length: size }, () => ({ aggregateType, aggregateId, eventType: "E", payload }));

describe("PostgresStore behaviour beyond the contract", () => {
  it("an append is one statement, whatever the batch size", async () => {
    const db = await testDatabase();
    const statements: string[] = [];
    try {
      const sql = db.connect({ debug: (_connection, query) => statements.push(query) });
      await migrate(sql);
      const store = new PostgresStore();
      for (const size of [1, 25]) {
        await sql.begin(async (tx) => {
          statements.length = 0;
          await store.append(tx, any(), batchOf("R", `r-${size}`, size));
          assert.equal(statements.length, 1, `batch of ${size}: ${statements.join(" | ")}`);
        });
      }
    } finally {
      await db.close();
    }
  });

  it("given the pool, an append is sent alone: no BEGIN, no COMMIT, one round trip", async () => {
    const db = await testDatabase();
    const statements: string[] = [];
    try {
      const sql = db.connect({ debug: (_connection, query) => statements.push(query) });
      await migrate(sql);
      const store = new PostgresStore();
      for (const size of [1, 25]) {
        statements.length = 0;
        const result = await store.append(sql, any(), batchOf("Pool", `p-${size}`, size));
        assert.equal(statements.length, 1, `batch of ${size}: ${statements.join(" | ")}`);
        assert.equal(result.globalPositions.length, size);
        // Committed on its own: another session sees it at once.
        const [{ n }] =
          await sql`SELECT count(*)::int AS n FROM events WHERE aggregate_id = ${`p-${size}`}`;
        assert.equal(n, size);
      }
      // A conflict still writes nothing and reports the winner's version.
      await assert.rejects(
        store.append(sql, noStream(), [{
          aggregateType: "Pool",
          aggregateId: "p-1",
          eventType: "E",
          payload,
        }]),
        (error) => error instanceof ConcurrencyError && error.actualVersion === 1,
      );
    } finally {
      await db.close();
    }
  });

  it("a prepared append keeps its generic plan: planned once per connection, not per call", async (t) => {
    // A statement PostgreSQL re-plans on every call costs ~150 µs of server CPU per append (see
    // docs/decisions.md); this pins the statement shapes whose generic plan the planner keeps.
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) {
        // Every socket shares PGlite's one session, so its pg_prepared_statements mixes them.
        return t.skip(db.concurrencySkipReason!);
      }
      const sql = db.connect({ max: 1, prepare: true });
      await migrate(sql);
      const store = new PostgresStore();
      const calls = 12;
      for (const [size, expected] of [[1, any()], [10, any()], [3, noStream()]] as const) {
        for (let i = 0; i < calls; i++) {
          await sql.begin((tx) =>
            store.append(
              tx,
              expected,
              Array.from({ length: size }, () => ({
                aggregateType: "P",
                aggregateId: `p-${size}-${i}`,
                eventType: "E",
                payload,
              })),
            )
          );
        }
      }
      const plans = await sql<{ statement: string; generic: string; custom: string }[]>`
        SELECT statement, generic_plans AS generic, custom_plans AS custom
        FROM pg_prepared_statements WHERE statement LIKE 'WITH head AS%'`;
      assert.equal(plans.length, 3, "one prepared statement per append shape");
      for (const plan of plans) {
        // PostgreSQL plans the first five calls for their values, then settles for good.
        assert.equal(Number(plan.custom), 5, plan.statement);
        assert.equal(Number(plan.generic), calls - 5, plan.statement);
      }
    } finally {
      await db.close();
    }
  });

  it("takes a reserved connection like the pool: appends open their own transaction", async () => {
    const db = await testDatabase();
    try {
      await migrate(db.sql);
      const store = new PostgresStore();
      const reserved = await db.sql.reserve();
      try {
        const event = { aggregateType: "Z", aggregateId: "1", eventType: "E", payload };
        const result = await store.append(reserved, noStream(), [event, event]);
        assert.equal(result.toVersion, 2);
        assert.equal((await store.readStream(reserved, "Z", "1")).events.length, 2);
        assert.equal(await store.headVersion(reserved, "Z", "1"), 2);
      } finally {
        reserved.release();
      }
      // Committed, not left open on the reserved connection: the pool sees it.
      assert.equal(await store.headVersion(db.sql, "Z", "1"), 2);
    } finally {
      await db.close();
    }
  });

  it("logs appends and conflicts through the optional logger", async () => {
    const db = await testDatabase();
    try {
      await migrate(db.sql);
      const records: Array<[string, string, Record<string, unknown>]> = [];
      const logger = {
        debug: (message: string, fields: Record<string, unknown>) =>
          records.push(["debug", message, fields]),
        info: (message: string, fields: Record<string, unknown>) =>
          records.push(["info", message, fields]),
        error: (message: string, fields: Record<string, unknown>) =>
          records.push(["error", message, fields]),
      };
      const store = new PostgresStore({ logger });
      const event = { aggregateType: "L", aggregateId: "1", eventType: "E", payload };
      const result = await store.append(db.sql, noStream(), [event]);
      await assert.rejects(store.append(db.sql, noStream(), [event]), ConcurrencyError);
      const info = records.find(([level, message]) =>
        level === "info" && message === "events appended"
      );
      assert.ok(info);
      assert.deepEqual(info[2].globalPositions, result.globalPositions);
      const conflict = records.find(([level]) => level === "error");
      assert.ok(conflict);
      assert.equal(conflict[2].actualVersion, 1);
      assert.equal(conflict[2].expected, "NoStream");
    } finally {
      await db.close();
    }
  });

  it("custom table names and a notify channel stay within their identifiers", async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      await migrate(db.sql, { eventsTable: "Ledger", headsTable: "LedgerHeads" });
      const store = new PostgresStore({
        eventsTable: "Ledger",
        headsTable: "LedgerHeads",
        notifyChannel: "Ledger_Appended",
      });
      const received: string[] = [];
      const listener = await db.sql.listen("Ledger_Appended", (value) => received.push(value));
      const result = await store.append(db.sql, noStream(), [
        { aggregateType: "L", aggregateId: "1", eventType: "E", payload },
      ]);
      const deadline = Date.now() + 5000;
      while (received.length === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await listener.unlisten();
      assert.deepEqual(received, [String(result.globalPositions[0])]);
      const [[count]] = await db.sql`SELECT count(*)::int FROM "Ledger"`.values();
      assert.equal(count, 1);
    } finally {
      await db.close();
    }
  });
});
