// Resets and start positions on PostgreSQL: a reset while two workers run the consumer on their
// own pools, fenced against the running batch, with the read model cleared in the same
// transaction; start positions of new consumers.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type postgres from "postgres";
import { any } from "../../store/expected_version.ts";
import { WorkerConfigError } from "../errors.ts";
import type { Consumer, WorkerTransaction } from "../types.ts";
import { until } from "../support_test.ts";
import { Worker } from "../worker.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { resetConsumer } from "./reset.ts";
import { waitForPosition } from "./wait.ts";

const payload = new Uint8Array([1]);

describe("resetConsumer on PostgreSQL", () => {
  it(
    "a rebuild while a fleet runs: every event handled exactly once after the reset, none before it left",
    { timeout: 120_000 },
    async (t) => {
      const h = await pgHarness({ notifyChannel: "reset_events" });
      const pools: postgres.Sql[] = [];
      const workers: Worker[] = [];
      try {
        if (skipWithoutConcurrency(t, h.db)) return;
        // No primary key: a position handled twice would show as two rows.
        await h.sql`CREATE TABLE rebuilt (position BIGINT NOT NULL, generation INT NOT NULL)`;
        await h.sql`CREATE TABLE generation (n INT NOT NULL)`;
        await h.sql`INSERT INTO generation VALUES (1)`;
        const view: Consumer = {
          name: "rebuilt_view",
          async handle(tx: WorkerTransaction, event) {
            await new Promise((resolve) => setTimeout(resolve, 2));
            await tx`INSERT INTO rebuilt SELECT ${event.globalPosition}, n FROM generation`;
          },
          async reset(tx: WorkerTransaction, { toPosition }) {
            await tx`DELETE FROM rebuilt WHERE position > ${toPosition}`;
            await tx`UPDATE generation SET n = n + 1`;
          },
        };
        for (let i = 0; i < 2; i++) {
          const pool = h.db.connect({ max: 3 });
          pools.push(pool);
          const worker = new Worker(pool, h.store, [view], {
            workerId: `reset-w${i}`,
            batchSize: 20,
            dispatcher: "notify",
            assignmentPollInterval: 200,
          });
          workers.push(worker);
        }
        const running = workers.map((w) => w.start());
        const total = 400;
        for (let i = 0; i < total; i += 20) {
          await h.store.append(
            h.sql,
            any(),
            Array.from({ length: 20 }, () => ({
              aggregateType: "R",
              aggregateId: `r-${i}`,
              eventType: "E",
              payload,
            })),
          );
        }
        // Reset in the middle of the catch-up, from outside the workers (as the CLI does).
        await until(async () => (await h.checkpoint("rebuilt_view")) >= 100, {
          timeoutMs: 60_000,
          what: "a quarter of the catch-up",
        });
        const before = await resetConsumer(h.sql, "rebuilt_view", { consumer: view });
        assert.ok(before >= 100 && before < total, `reset mid-run, at ${before}`);
        /** The read model once caught up to `total`: each position exactly once (`what`). */
        const caughtUp = async (what: string) => {
          await waitForPosition(h.sql, total, { consumers: ["rebuilt_view"], timeout: 90_000 });
          const rows = await h.sql<{ position: string; generation: number }[]>`
            SELECT position, generation FROM rebuilt ORDER BY position`;
          assert.deepEqual(
            rows.map((r) => Number(r.position)),
            Array.from({ length: total }, (_, i) => i + 1),
            what,
          );
          return rows;
        };
        const rows = await caughtUp("each position exactly once");
        assert.ok(rows.every((r) => r.generation === 2), "nothing written before the reset left");
        // A reset to a position keeps what the hook keeps and redoes the rest.
        await workers[0].resetConsumer("rebuilt_view", { toPosition: 200 });
        assert.equal(await h.checkpoint("rebuilt_view"), 200);
        const redone = await caughtUp("each position exactly once after the second reset");
        assert.ok(
          redone.every((r) => r.generation === (Number(r.position) <= 200 ? 2 : 3)),
          "kept up to 200, redone after it",
        );
        await Promise.all(workers.map((w) => w.stop()));
        await Promise.all(running);
      } finally {
        await Promise.all(workers.map((w) => w.stop()));
        await Promise.all(pools.map((p) => p.end({ timeout: 1 })));
        await h.close();
      }
    },
  );

  it("refuses a consumer that never registered, and a consumer definition of another name", async () => {
    const h = await pgHarness();
    try {
      await assert.rejects(resetConsumer(h.sql, "nobody"), WorkerConfigError);
      await assert.rejects(
        resetConsumer(h.sql, "a", { consumer: { name: "b", handle() {} } }),
        WorkerConfigError,
      );
      await assert.rejects(resetConsumer(h.sql, "a", { toPosition: -1 }), WorkerConfigError);
    } finally {
      await h.close();
    }
  });
});

describe("start positions on PostgreSQL", () => {
  it('"end" starts after the highest visible position; a number after it', async () => {
    const h = await pgHarness();
    try {
      for (let i = 0; i < 5; i++) await h.append();
      const seen = new Map<string, number[]>();
      const consumer = (name: string, startFrom?: Consumer["startFrom"]): Consumer => ({
        name,
        startFrom,
        handle(_tx, event) {
          seen.set(name, [...(seen.get(name) ?? []), event.globalPosition]);
        },
      });
      const worker = h.worker([consumer("all"), consumer("end", "end"), consumer("after2", 2)], {
        pollInterval: 50,
      });
      const running = worker.start();
      await h.clock.advance(0);
      for (let i = 0; i < 200 && (await h.checkpoint("all")) < 5; i++) {
        await h.clock.advance(100);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await h.append();
      for (let i = 0; i < 400; i++) {
        const cps = await Promise.all(["all", "end", "after2"].map((n) => h.checkpoint(n)));
        if (cps.every((c) => c === 6)) break;
        await h.clock.advance(100);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      assert.deepEqual(seen.get("all"), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(seen.get("end"), [6]);
      assert.deepEqual(seen.get("after2"), [3, 4, 5, 6]);
      await worker.stop();
      await running;
    } finally {
      await h.close();
    }
  });
});
