// Effectively once across real crashes: a worker process is killed (process.exit, no cleanup)
// after its handler wrote through `tx` and before the batch committed. The read model's primary
// key on (consumer, position) would reject any write committed twice; the final state must hold
// every position exactly once. The test runs this same file as the child process.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnScript } from "../../internal/child_process.ts";
import process from "node:process";
import postgres from "postgres";
import { PostgresStore } from "../../store/postgres_store.ts";
import { until } from "../support_test.ts";
import { Worker } from "../worker.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";

const CHILD_ENV = "EVENTSALSA_WORKER_CRASH_CHILD";
const CRASH_EXIT = 77;

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
  crashAt: number;
}

/** The child: runs a worker whose handler exits the process at `crashAt`, before the commit. */
async function child(plan: ChildPlan): Promise<void> {
  const sql = postgres(plan.url, {
    max: 4,
    onnotice: () => {},
    connection: { search_path: plan.schema },
  });
  const worker = new Worker(sql, new PostgresStore(), [{
    name: "once",
    async handle(tx, event, context) {
      await tx`INSERT INTO read_model (consumer, position, handled_by)
        VALUES ('once', ${event.globalPosition}, ${context.workerId})`;
      if (event.globalPosition === plan.crashAt) process.exit(CRASH_EXIT);
    },
  }], {
    workerId: plan.workerId,
    batchSize: 5,
    pollInterval: 20,
    batchPause: 0,
    gapCheckInterval: 0,
    // The previous child died without cleanup: its row must stop counting as live soon.
    heartbeatInterval: 100,
    heartbeatTimeout: 1_000,
    rebalanceInterval: 200,
  });
  await worker.start();
}

function runChild(plan: ChildPlan): Promise<number | null> {
  return spawnScript(import.meta.url, { [CHILD_ENV]: JSON.stringify(plan) }).exited;
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else {
  describe("effectively once across crashes", () => {
    it(
      "a worker killed between handle and commit never commits a write twice",
      { timeout: 60_000 },
      async (t) => {
        const h = await pgHarness();
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          for (let i = 0; i < 20; i++) await h.append();
          for (const [index, crashAt] of [7, 14].entries()) {
            const code = await runChild({
              url: h.db.url,
              schema: h.db.schema,
              workerId: `crash-${index}`,
              crashAt,
            });
            assert.equal(code, CRASH_EXIT, "the child died in its handler");
            // The batch holding crashAt was lost with the process; everything before it is in.
            const rows = await h.rows("once");
            assert.deepEqual(rows, Array.from({ length: rows.length }, (_, i) => i + 1));
            assert.ok(
              rows.length < crashAt,
              `nothing from the crashed batch (${rows.length} < ${crashAt})`,
            );
            assert.equal(await h.checkpoint("once"), rows.length);
          }
          // The last child's row stays until its heartbeat is older than the survivor's timeout.
          const survivor = h.worker([h.projection("once")], {
            heartbeatInterval: 100,
            heartbeatTimeout: 2_000,
            rebalanceInterval: 100,
          });
          const running = survivor.start();
          await until(async () => (await h.checkpoint("once")) === 20, {
            clock: h.clock,
            step: 100,
          });
          assert.deepEqual(await h.rows("once"), Array.from({ length: 20 }, (_, i) => i + 1));
          const byWorker = await h
            .sql`SELECT handled_by, count(*)::int AS n FROM read_model GROUP BY 1 ORDER BY 1`;
          assert.equal(byWorker.reduce((sum, r) => sum + r.n, 0), 20);
          await survivor.stop();
          await running;
        } finally {
          await h.close();
        }
      },
    );
  });
}
