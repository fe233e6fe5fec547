// Filters in SQL (./window_sql.ts): the statement gives the same window as the core's `windowOf`
// over random logs with holes, for every filter shape; and on real transactions a filtered
// consumer still waits at every hole — one held by an append of a type it does not handle too —
// while it passes the positions it does not handle without fetching them.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { migrate as migrateStore } from "../../store/migration.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { testDatabase } from "../../testing/test_database.ts";
import { any } from "../../store/expected_version.ts";
import { draft, until } from "../support_test.ts";
import { typeFilter, windowOf, type WindowSpec } from "../core/window.ts";
import { withPgHarness } from "./harness_test.ts";
import { storeTables } from "../../store/migration.ts";
import { run } from "../../internal/postgres_query.ts";
import { windowFromRows, windowStatements } from "./window_sql.ts";

const T = { timeout: 60_000 };
const AGGREGATES = ["Order", "Account", "Rare"];
const EVENTS = ["Placed", "Shipped", "Noted"];

/** A seeded generator (the failing seed is in the assertion message). */
function random(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
}

const pick = <T>(next: () => number, list: readonly T[]): T =>
  list[Math.floor(next() * list.length)];

describe("filtered windows in SQL", () => {
  it("give the same window as windowOf over random logs with holes", T, async () => {
    const db = await testDatabase();
    try {
      await migrateStore(db.sql);
      const next = random(20261130);
      // 400 positions, about a quarter missing, some in long runs; types drawn unevenly.
      const rows: string[] = [];
      for (let p = 1; p <= 400; p++) {
        if (next() < 0.2 || (p > 150 && p < 190)) continue;
        const aggregate = next() < 0.1 ? "Rare" : pick(next, AGGREGATES);
        rows.push(
          `(${p}, '${aggregate}', 'a-${p}', 1, gen_random_uuid(), '${
            pick(next, EVENTS)
          }', '\\x7b7d'::bytea, '{}'::jsonb)`,
        );
      }
      await db.sql.unsafe(`INSERT INTO events (global_position, aggregate_type, aggregate_id,
        aggregate_version, event_id, event_type, payload, metadata) VALUES ${rows.join(",")}`);
      const all = await new PostgresStore().readEvents(db.sql, 0, 1_000);
      const statements = windowStatements(storeTables({}).events);
      const filters = [
        typeFilter(["Rare"], undefined)!,
        typeFilter(undefined, ["Noted"])!,
        typeFilter(["Order", "Rare"], ["Placed", "Noted"])!,
      ];
      for (let round = 0; round < 300; round++) {
        const spec = {
          after: Math.floor(next() * 420),
          limit: 1 + Math.floor(next() * 12),
          scan: 1 + Math.floor(next() * 120),
          filter: pick(next, filters),
        } satisfies WindowSpec;
        const { text, params } = statements.for(spec);
        const fromSql = windowFromRows(await run(db.sql, text, params));
        const expected = windowOf(spec, all.filter((e) => e.globalPosition > spec.after));
        assert.deepEqual(fromSql, expected, `round ${round}: ${JSON.stringify(spec)}`);
      }
    } finally {
      await db.close();
    }
  });

  it(
    "types with quotes, commas, braces, backslashes and NULL as text reach SQL as data",
    T,
    async () => {
      const db = await testDatabase();
      try {
        await migrateStore(db.sql);
        const store = new PostgresStore();
        const hostile = ['a"b', "c,d", "{e}", "f\\g", "NULL", "h'); DROP TABLE events; --", "ü 🐘"];
        for (const type of [...hostile, "Plain"]) {
          await store.append(db.sql, any(), [draft(type, undefined, type)]);
        }
        const all = await store.readEvents(db.sql, 0, 100);
        const statements = windowStatements(storeTables({}).events);
        for (const filter of [typeFilter(hostile, undefined)!, typeFilter(undefined, hostile)!]) {
          const spec = { after: 0, limit: 100, scan: 100, filter } satisfies WindowSpec;
          const { text, params } = statements.for(spec);
          const window = windowFromRows(await run(db.sql, text, params));
          assert.deepEqual(window, windowOf(spec, all));
          assert.deepEqual(window.events.map((e) => e.aggregateType), hostile);
        }
      } finally {
        await db.close();
      }
    },
  );

  it(
    "a filtered consumer waits at a hole held by an append of a type it does not handle, then passes it",
    T,
    async (t) => {
      await withPgHarness(t, {}, async (h) => {
        await h.append("Rare"); // 1
        const held = await h.hold("Order"); // 2: not the consumer's type, still a hole
        await h.append("Order"); // 3
        await h.append("Rare"); // 4
        const worker = h.worker([h.projection("rare", { aggregateTypes: ["Rare"] })], {
          batchPause: 100,
          gapCheckInterval: 100,
        });
        const running = worker.start();
        await until(async () => (await h.rows("rare")).length === 1, {
          clock: h.clock,
          step: 100,
          what: "the event before the hole",
        });
        await h.clock.advance(5_000);
        assert.deepEqual(await h.rows("rare"), [1], "nothing past the held position");
        assert.equal(await h.checkpoint("rare"), 1);
        await held.commit();
        await until(async () => (await h.checkpoint("rare")) === 4, {
          clock: h.clock,
          step: 100,
          what: "the checkpoint past the committed hole",
        });
        assert.deepEqual(await h.rows("rare"), [1, 4]);
        await worker.stop();
        await running;
      });
    },
  );

  it(
    "a held append of the consumer's own type is handled in order once it commits",
    T,
    async (t) => {
      await withPgHarness(t, {}, async (h) => {
        for (let i = 0; i < 5; i++) await h.append("Order"); // 1–5
        const held = await h.hold("Rare"); // 6
        await h.append("Rare"); // 7
        const rolledBack = await h.hold("Rare"); // 8
        await h.append("Order"); // 9
        const worker = h.worker([
          h.projection("rare", { eventTypes: ["OrderPlaced"], aggregateTypes: ["Rare"] }),
        ], {
          batchPause: 100,
          gapCheckInterval: 100,
        });
        const running = worker.start();
        await until(async () => (await h.checkpoint("rare")) === 5, {
          clock: h.clock,
          step: 100,
          what: "the checkpoint up to the first hole",
        });
        assert.deepEqual(await h.rows("rare"), []);
        await rolledBack.rollback();
        await h.clock.advance(2_000);
        assert.equal(await h.checkpoint("rare"), 5, "the earlier hole still holds it");
        await held.commit();
        await until(async () => (await h.checkpoint("rare")) === 9, {
          clock: h.clock,
          step: 100,
          what: "the checkpoint at the end",
        });
        assert.deepEqual(await h.rows("rare"), [6, 7]);
        await worker.stop();
        await running;
      });
    },
  );
});
