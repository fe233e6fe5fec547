// waitForPosition over the checkpoints table, against a real worker on PostgreSQL.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { any } from "../../store/expected_version.ts";
import { WaitTimeoutError, WorkerConfigError } from "../errors.ts";
import { Worker } from "../worker.ts";
import type { WorkerTransaction } from "../types.ts";
import { until } from "../support_test.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { waitForPosition } from "./wait.ts";

describe("waitForPosition on PostgreSQL", () => {
  it("resolves once the consumer has handled the position: its read model has the write", async (t) => {
    const h = await pgHarness({ notifyChannel: "wait_events" });
    try {
      if (skipWithoutConcurrency(t, h.db)) return;
      const worker = new Worker(h.sql, h.store, [{
        name: "slow_view",
        async handle(tx: WorkerTransaction, event) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          await tx`INSERT INTO read_model (consumer, position, handled_by)
            VALUES ('slow_view', ${event.globalPosition}, 'w')`;
        },
      }], { workerId: "wait-1", batchSize: 2 });
      const running = worker.start();
      try {
        // A name without a checkpoint row is refused at once: wait for the registration first.
        await until(
          async () =>
            (await h.sql`SELECT 1 FROM consumer_checkpoints WHERE consumer_name = 'slow_view'`)
              .length === 1,
          { what: "the registration" },
        );
        for (let round = 0; round < 3; round++) {
          const { globalPositions } = await h.store.append(h.sql, any(), [
            {
              aggregateType: "O",
              aggregateId: `o-${round}`,
              eventType: "E",
              payload: new Uint8Array(),
            },
            {
              aggregateType: "O",
              aggregateId: `o-${round}`,
              eventType: "E",
              payload: new Uint8Array(),
            },
          ]);
          const last = globalPositions.at(-1)!;
          await waitForPosition(h.sql, last, { consumers: ["slow_view"], timeout: 30_000 });
          // Read-your-writes: the moment it resolves, the projection has every event up to `last`.
          assert.deepEqual(
            (await h.rows("slow_view")).filter((p) => p <= last).length,
            last,
          );
        }
        await waitForPosition(h.sql, 0, { consumers: ["slow_view"] });
        // The same through the worker: its own consumers by default; others' are refused.
        const { globalPositions } = await h.store.append(h.sql, any(), [
          { aggregateType: "O", aggregateId: "o-w", eventType: "E", payload: new Uint8Array() },
        ]);
        await worker.waitForPosition(globalPositions[0], { timeout: 30_000 });
        assert.ok((await h.rows("slow_view")).includes(globalPositions[0]));
        await assert.rejects(
          worker.waitForPosition(1, { consumers: ["someone_elses"] }),
          WorkerConfigError,
        );
      } finally {
        await worker.stop();
        await running;
      }
    } finally {
      await h.close();
    }
  });

  it("times out naming the consumers still behind; refuses unknown names; honours a signal", async () => {
    const h = await pgHarness();
    try {
      await h
        .sql`INSERT INTO consumer_checkpoints (consumer_name, last_position) VALUES ('stuck', 3)`;
      await assert.rejects(
        waitForPosition(h.sql, 10, { consumers: ["stuck"], timeout: 200 }),
        (error: unknown) => {
          assert.ok(error instanceof WaitTimeoutError);
          assert.equal(error.position, 10);
          assert.deepEqual(error.lagging, [{ consumer: "stuck", checkpoint: 3 }]);
          return true;
        },
      );
      await assert.rejects(
        waitForPosition(h.sql, 1, { consumers: ["stuck", "typo"] }),
        (error: unknown) => error instanceof WorkerConfigError && /typo/.test(error.message),
      );
      await assert.rejects(waitForPosition(h.sql, 1, { consumers: [] }), WorkerConfigError);
      await assert.rejects(waitForPosition(h.sql, -1, { consumers: ["stuck"] }), WorkerConfigError);
      const controller = new AbortController();
      const waiting = waitForPosition(h.sql, 10, {
        consumers: ["stuck"],
        signal: controller.signal,
      });
      controller.abort(new Error("request ended"));
      await assert.rejects(waiting, /request ended/);
      await h.sql`UPDATE consumer_checkpoints SET last_position = 10 WHERE consumer_name = 'stuck'`;
      await waitForPosition(h.sql, 10, { consumers: ["stuck"], timeout: 1_000 });
    } finally {
      await h.close();
    }
  });
});
