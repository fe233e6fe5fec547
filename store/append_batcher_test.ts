import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { testDatabase } from "../testing/test_database.ts";
import { AppendBatcher } from "./append_batcher.ts";
import { ConcurrencyError, DuplicateEventIdError, ValidationError } from "./errors.ts";
import { any, exact, noStream } from "./expected_version.ts";
import { migrate } from "./migration.ts";
import { PostgresStore } from "./postgres_store.ts";
import type { Event } from "./types.ts";

const payload = new Uint8Array([7]);
const event = (id: string, extra: Partial<Event> = {}): Event => ({
  aggregateType: "Order",
  aggregateId: id,
  eventType: "Placed",
  payload,
  ...extra,
});

/** Settles every promise; returns what each did. */
function settle<T>(promises: Promise<T>[]): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled(promises);
}

describe("AppendBatcher", () => {
  it("coalesces concurrent callers into fewer statements, each with its own result", async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      let statements = 0;
      const sql = db.connect({ max: 2, debug: () => void statements++ });
      await migrate(sql);
      const store = new PostgresStore();
      const batcher = new AppendBatcher(sql, store, { maxInFlight: 2 });
      statements = 0;
      const results = await Promise.all(
        Array.from({ length: 64 }, (_, i) => batcher.append(noStream(), [event(`o-${i}`)])),
      );
      assert.ok(statements < 64, `64 appends took ${statements} statements`);
      const positions = results.map((r) => r.globalPositions[0]);
      assert.equal(new Set(positions).size, 64);
      results.forEach((r, i) => {
        assert.equal(r.events[0].aggregateId, `o-${i}`);
        assert.equal(r.toVersion, 1);
      });
      const [{ n }] = await sql`SELECT count(*)::int AS n FROM events`;
      assert.equal(n, 64);
    } finally {
      await db.close();
    }
  });

  it("one caller's conflict, duplicate id or bad input fails that caller only", async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      const sql = db.connect({ max: 2 });
      await migrate(sql);
      const store = new PostgresStore();
      const taken = crypto.randomUUID();
      await store.append(sql, any(), [event("existing", { eventId: taken })]);
      const batcher = new AppendBatcher(sql, store, { maxInFlight: 1 });
      const calls = [
        batcher.append(noStream(), [event("a")]),
        batcher.append(noStream(), [event("existing")]), // conflict
        batcher.append(any(), [event("b", { eventId: taken })]), // duplicate event id
        batcher.append(any(), [event("c"), { ...event("d") }]), // two aggregates: invalid
        batcher.append(exact(1), [event("existing")]),
        batcher.append(any(), [event("e")]),
      ];
      const outcomes = await settle(calls);
      const [a, conflict, duplicate, invalid, next, e] = outcomes;
      assert.equal(a.status, "fulfilled");
      assert.ok(conflict.status === "rejected" && conflict.reason instanceof ConcurrencyError);
      assert.ok(
        duplicate.status === "rejected" && duplicate.reason instanceof DuplicateEventIdError,
      );
      assert.ok(invalid.status === "rejected" && invalid.reason instanceof ValidationError);
      assert.ok(next.status === "fulfilled" && next.value.toVersion === 2);
      assert.equal(e.status, "fulfilled");
      const rows = await sql`SELECT aggregate_id FROM events ORDER BY global_position`;
      assert.deepEqual(rows.map((r) => r.aggregate_id).sort(), ["a", "e", "existing", "existing"]);
    } finally {
      await db.close();
    }
  });

  it("appends to one aggregate keep the callers' order", async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      const sql = db.connect({ max: 4 });
      await migrate(sql);
      const batcher = new AppendBatcher(sql, new PostgresStore(), { maxInFlight: 4 });
      const results = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => batcher.append(any(), [event("hot", { eventType: `E${i}` })]),
        ),
      );
      assert.deepEqual(
        results.map((r) => r.toVersion),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
    } finally {
      await db.close();
    }
  });

  it("two batchers racing to create one stream: one wins, their other callers are unharmed", async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      const sql = db.connect({ max: 4 });
      await migrate(sql);
      const store = new PostgresStore();
      for (let round = 0; round < 10; round++) {
        const batchers = [new AppendBatcher(sql, store), new AppendBatcher(sql, store)];
        const outcomes = await settle(batchers.flatMap((batcher, b) => [
          batcher.append(noStream(), [event(`race-${round}`)]),
          batcher.append(noStream(), [event(`own-${round}-${b}`)]),
        ]));
        const race = [outcomes[0], outcomes[2]];
        assert.equal(race.filter((o) => o.status === "fulfilled").length, 1);
        for (const lost of race.filter((o) => o.status === "rejected")) {
          assert.ok((lost as PromiseRejectedResult).reason instanceof ConcurrencyError);
        }
        assert.equal(outcomes[1].status, "fulfilled");
        assert.equal(outcomes[3].status, "fulfilled");
      }
    } finally {
      await db.close();
    }
  });

  it("refuses bad options", () => {
    const sql = (() => {}) as never;
    assert.throws(
      () => new AppendBatcher(sql, new PostgresStore(), { maxInFlight: 0 }),
      RangeError,
    );
    assert.throws(() => new AppendBatcher(sql, new PostgresStore(), { maxBatch: 1.5 }), RangeError);
  });
});
