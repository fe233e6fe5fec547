// Acceptance scenarios for one worker process (numbered 1, 6–11 and 20, after the Go library's
// worker scenarios), plus the gap rule (docs/design.md) on real transactions, on PostgreSQL. The
// worker runs on a fake clock: nothing sleeps for real; where PostgreSQL has to act (a NOTIFY
// arriving, a held transaction) the test polls for the outcome with a bounded deadline.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BatchTimeoutError, ConsecutiveFailuresError } from "../errors.ts";
import { until } from "../support_test.ts";
import type { GapWait } from "../types.ts";
import { withPgHarness } from "./harness_test.ts";
import { status } from "./status.ts";
import { readEnv } from "../../internal/env.ts";

const T = { timeout: 60_000 };

// EVENTSALSA_TEST_PGBOUNCER_URL (set by .ci/run): once more through a real PgBouncer in
// transaction pooling mode, with the lease strategy (docs/pgbouncer.md).
const PGBOUNCER = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
const VARIANTS: Array<{ name: string; prepare: boolean; pooler?: string }> = [
  { name: "prepare: true", prepare: true },
  { name: "prepare: false", prepare: false },
  ...(PGBOUNCER
    ? [{ name: "through PgBouncer, lease, prepare: false", prepare: false, pooler: PGBOUNCER }]
    : []),
];

for (const { name, prepare, pooler } of VARIANTS) {
  describe(`Worker on PostgreSQL (${name})`, () => {
    it(
      "scenario 1: a global and two scoped consumers; every checkpoint reaches the latest position",
      T,
      async (t) => {
        await withPgHarness(t, { prepare, pooler, needsConcurrency: false }, async (h) => {
          const worker = h.worker([
            h.projection("all"),
            h.projection("accounts", { aggregateTypes: ["Account"] }),
            h.projection("orders", { aggregateTypes: ["Order"] }),
          ]);
          const running = worker.start();
          for (let i = 0; i < 3; i++) await h.append("Account");
          for (let i = 0; i < 2; i++) await h.append("Order");
          await until(async () => {
            const checkpoints = await Promise.all(
              ["all", "accounts", "orders"].map((c) => h.checkpoint(c)),
            );
            return checkpoints.every((c) => c === 5);
          }, { clock: h.clock, step: 100, what: "all checkpoints at 5" });
          assert.deepEqual(await h.rows("all"), [1, 2, 3, 4, 5]);
          assert.deepEqual(await h.rows("accounts"), [1, 2, 3]);
          assert.deepEqual(await h.rows("orders"), [4, 5]);
          const owners = await h.sql`SELECT DISTINCT worker_id FROM consumer_assignments`;
          assert.deepEqual(owners.map((r) => r.worker_id), [worker.id]);
          await worker.stop();
          await running;
          const after = await h.sql`SELECT count(*)::int AS n FROM worker_nodes`;
          assert.equal(after[0].n, 0, "a stopped worker removes its registration");
        });
      },
    );

    it(
      "scenario 8: a held append longer than any threshold: the consumer waits, names the blocker, then handles it in order",
      T,
      async (t) => {
        await withPgHarness(t, { prepare, pooler }, async (h) => {
          await h.append(); // 1
          const held = await h.hold(); // 2
          await h.append(); // 3
          await h.append(); // 4
          const waits: GapWait[] = [];
          // Slow background timers keep the simulated hour cheap (each fake timer costs real work).
          const worker = h.worker([h.projection("ordered")], {
            dispatcherInterval: 600_000,
            heartbeatInterval: 600_000,
            batchPause: 1_000,
            gapCheckInterval: 1_000,
            gapReportInterval: 5_000,
            observer: { gapWaiting: (g) => waits.push(g) },
          });
          const running = worker.start();
          await until(() => waits.length > 0, {
            clock: h.clock,
            step: 1_000,
            what: "a gap report",
          });
          assert.deepEqual(await h.rows("ordered"), [1]);
          await h.clock.advance(3_600_000); // an hour: longer than any threshold
          await until(() => waits.some((w) => w.waitingMs >= 3_600_000), {
            clock: h.clock,
            step: 1_000,
            what: "a report after an hour",
            // Real time: the simulated hour's gap checks each read the database (CI flaked at 10 s).
            timeoutMs: 60_000,
          });
          assert.deepEqual(await h.rows("ordered"), [1]);
          assert.equal(await h.checkpoint("ordered"), 1);
          const wait = waits[waits.length - 1];
          assert.equal(wait.position, held.position);
          const blocker = wait.blockers.find((b) => b.pid === held.pid);
          assert.ok(
            blocker,
            `the holding backend ${held.pid} is named: ${JSON.stringify(wait.blockers)}`,
          );
          assert.match(blocker.xid ?? "", /^\d+$/);
          assert.equal(blocker.state, "idle in transaction");
          const report = await status(h.sql);
          const consumer = report.consumers.find((c) => c.name === "ordered")!;
          assert.equal(consumer.gap?.position, held.position);
          assert.ok(
            consumer.gap?.blockers.some((b) => b.pid === held.pid),
            `status names the holding backend ${held.pid}`,
          );
          assert.equal(consumer.lag, 3);
          await held.commit();
          await until(async () => (await h.rows("ordered")).length === 4, {
            clock: h.clock,
            step: 200,
          });
          assert.deepEqual(await h.rows("ordered"), [1, 2, 3, 4]);
          assert.equal(await h.checkpoint("ordered"), 4);
          const skips = await h.sql`SELECT count(*)::int AS n FROM consumer_gap_skips`;
          assert.equal(skips[0].n, 0, "nothing was skipped");
          await until(async () => (await status(h.sql)).consumers[0].gap === null, {
            clock: h.clock,
            step: 200,
          });
          await worker.stop();
          await running;
        });
      },
    );

    it("a rolled-back append: the hole is passed as soon as the rollback happens", T, async (t) => {
      await withPgHarness(t, { prepare, pooler }, async (h) => {
        await h.append(); // 1
        const held = await h.hold(); // 2
        await h.append(); // 3
        const worker = h.worker([h.projection("holes")], {
          batchPause: 200,
          gapCheckInterval: 200,
        });
        const running = worker.start();
        await until(async () => (await h.rows("holes")).length === 1, { clock: h.clock, step: 50 });
        await h.clock.advance(10_000);
        assert.equal(await h.checkpoint("holes"), 1);
        await held.rollback();
        const before = h.clock.now();
        await until(async () => (await h.checkpoint("holes")) === 3, { clock: h.clock, step: 10 });
        assert.ok(
          h.clock.now() - before < 30_000,
          `passed after ${h.clock.now() - before} fake ms`,
        );
        assert.deepEqual(await h.rows("holes"), [1, 3]);
        await worker.stop();
        await running;
      });
    });
  });
}

/** The scenarios below, directly or through a transaction pooler (`pooler`). */
function workerScenarios(pooler: string | undefined): void {
  it(
    "scenario 6: an idle consumer is woken by the dispatcher long before its own poll",
    T,
    async (t) => {
      await withPgHarness(t, { pooler }, async (h) => {
        const worker = h.worker([h.projection("wake")], {
          pollInterval: 60_000,
          maxPollInterval: 60_000,
          dispatcherInterval: 200,
        });
        const running = worker.start();
        await until(async () => (await status(h.sql)).workers.length === 1, {
          clock: h.clock,
          step: 100,
        });
        await h.clock.advance(1_500);
        const before = h.clock.now();
        await h.append();
        await until(async () => (await h.rows("wake")).length === 1, { clock: h.clock, step: 20 });
        assert.ok(
          h.clock.now() - before < 10_000,
          `handled after ${h.clock.now() - before} fake ms`,
        );
        assert.equal(await h.checkpoint("wake"), 1);
        await worker.stop();
        await running;
      });
    },
  );

  it(
    "scenario 7: a mid-batch failure commits nothing; the events before the failing one commit without it",
    T,
    async (t) => {
      await withPgHarness(t, { pooler }, async (h) => {
        let failing = true;
        const attempts = new Map<number, number>();
        const failures: unknown[] = [];
        const flaky = h.projection("flaky");
        const worker = h.worker([{
          ...flaky,
          async handle(tx, event, context) {
            attempts.set(event.globalPosition, (attempts.get(event.globalPosition) ?? 0) + 1);
            if (event.globalPosition === 2 && failing) throw new Error("not yet");
            await flaky.handle!(tx, event, context);
          },
        }], {
          maxConsecutiveFailures: 100,
          observer: { batchFailed: (f) => failures.push(f.error) },
        });
        for (let i = 0; i < 3; i++) await h.append();
        const running = worker.start();
        await until(() => failures.length >= 3, { clock: h.clock, step: 250 });
        // The failed batch [1, 2, 3] committed nothing; its prefix [1] committed on its own.
        assert.deepEqual(await h.rows("flaky"), [1]);
        assert.equal(await h.checkpoint("flaky"), 1);
        assert.equal(attempts.get(3), undefined, "nothing after the failing event ran");
        failing = false;
        await until(async () => (await h.checkpoint("flaky")) === 3, { clock: h.clock, step: 250 });
        assert.deepEqual(await h.rows("flaky"), [1, 2, 3]);
        assert.equal(attempts.get(1), 2, "handled in the failed batch, then in its prefix");
        await worker.stop();
        await running;
      });
    },
  );

  it("maxConsecutiveFailures: start rejects with ConsecutiveFailuresError", T, async (t) => {
    await withPgHarness(t, { needsConcurrency: false, pooler }, async (h) => {
      await h.append();
      const worker = h.worker(
        [{ name: "doomed", handle: () => Promise.reject(new Error("boom")) }],
        {
          maxConsecutiveFailures: 2,
        },
      );
      const outcome = worker.start().then(() => null, (error) => error);
      await until(() => !worker.running, { clock: h.clock, step: 500 });
      const error = await outcome;
      assert.ok(error instanceof ConsecutiveFailuresError, String(error));
      assert.equal(error.failures, 2);
    });
  });

  it(
    "scenarios 9/10: maxGapWait skips a hole that outlived it, with an audit row",
    T,
    async (t) => {
      await withPgHarness(t, { pooler }, async (h) => {
        const held = await h.hold(); // 1
        for (let i = 0; i < 2; i++) await h.append(); // 2, 3
        const worker = h.worker([h.projection("impatient")], {
          maxGapWait: 5_000,
          batchPause: 500,
          gapCheckInterval: 500,
        });
        const running = worker.start();
        await h.clock.advance(4_000);
        await until(async () => (await status(h.sql)).workers.length === 1, {
          clock: h.clock,
          step: 100,
        });
        assert.deepEqual(await h.rows("impatient"), []);
        await until(async () => (await h.checkpoint("impatient")) === 3, {
          clock: h.clock,
          step: 500,
        });
        assert.deepEqual(await h.rows("impatient"), [2, 3]);
        const audit = await h
          .sql`SELECT consumer_name, worker_id, gap_position, skip_to_position, skipped_positions,
        highest_visible_position FROM consumer_gap_skips`;
        assert.deepEqual(audit.map((r) => ({ ...r })), [{
          consumer_name: "impatient",
          worker_id: worker.id,
          gap_position: String(held.position),
          skip_to_position: "3",
          skipped_positions: ["1"],
          highest_visible_position: "3",
        }]);
        assert.equal((await status(h.sql)).consumers[0].gapSkips, 1);
        await held.rollback();
        await worker.stop();
        await running;
      });
    },
  );

  it("scenario 11: a new worker resumes from the checkpoint", T, async (t) => {
    await withPgHarness(t, { needsConcurrency: false, pooler }, async (h) => {
      for (let i = 0; i < 3; i++) await h.append();
      const w1 = h.worker([h.projection("resume")]);
      const r1 = w1.start();
      await until(async () => (await h.checkpoint("resume")) === 3, { clock: h.clock, step: 100 });
      await w1.stop();
      await r1;
      for (let i = 0; i < 2; i++) await h.append();
      const w2 = h.worker([h.projection("resume")]);
      const r2 = w2.start();
      await until(async () => (await h.checkpoint("resume")) === 5, { clock: h.clock, step: 100 });
      const handled = await h.sql`SELECT position, handled_by FROM read_model ORDER BY position`;
      assert.deepEqual(handled.map((r) => [Number(r.position), r.handled_by]), [
        [1, w1.id],
        [2, w1.id],
        [3, w1.id],
        [4, w2.id],
        [5, w2.id],
      ]);
      await w2.stop();
      await r2;
    });
  });

  it(
    "scenario 20: the notify dispatcher reconnects after its LISTEN backend is terminated",
    T,
    async (t) => {
      // Mixed case on purpose: LISTEN and the store's pg_notify must quote the channel alike.
      const channel = `Worker_Events_${crypto.randomUUID().slice(0, 8)}`;
      await withPgHarness(t, { notifyChannel: channel, pooler }, async (h) => {
        const listener = async () => {
          const rows = await h
            .sql`SELECT pid FROM pg_stat_activity WHERE query = ${`LISTEN "${channel}"`}`;
          return rows.length === 1 ? Number(rows[0].pid) : null;
        };
        // The fake clock never moves: only notifications can wake the consumer.
        const worker = h.worker([h.projection("notified")], {
          dispatcher: "notify",
          pollInterval: 600_000,
          maxPollInterval: 600_000,
          notifyReconcileInterval: 600_000,
        });
        const running = worker.start();
        await until(async () => (await listener()) !== null, { what: "LISTEN" });
        const first = (await listener())!;
        await h.append();
        await until(async () => (await h.rows("notified")).length === 1, {
          what: "first notification",
        });
        await h.sql`SELECT pg_terminate_backend(${first})`;
        await until(async () => {
          const pid = await listener();
          return pid !== null && pid !== first;
        }, { what: "a new LISTEN backend" });
        await h.append();
        await until(async () => (await h.rows("notified")).length === 2, {
          what: "wakeup after reconnecting",
        });
        await h.append();
        await until(async () => (await h.rows("notified")).length === 3, {
          what: "a notification on the new connection",
        });
        assert.deepEqual(await h.rows("notified"), [1, 2, 3]);
        await worker.stop();
        await running;
        await until(async () => (await listener()) === null, { what: "the listener closed" });
      });
    },
  );

  it(
    "a batch past batchTimeout is cancelled in PostgreSQL, rolled back and retried",
    T,
    async (t) => {
      await withPgHarness(t, { pooler }, async (h) => {
        await h.append();
        let sleep = true;
        const failures: unknown[] = [];
        const projection = h.projection("sleepy");
        const worker = h.worker([{
          ...projection,
          async handle(tx, event, context) {
            await projection.handle!(tx, event, context);
            if (sleep) {
              sleep = false;
              await tx`SELECT pg_sleep(60)`;
            }
          },
        }], { batchTimeout: 2_000, observer: { batchFailed: (f) => failures.push(f.error) } });
        const running = worker.start();
        const sleeping = async () =>
          (await h
            .sql`SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`)
            .length;
        await until(async () => (await sleeping()) === 1, {
          clock: h.clock,
          step: 1,
          what: "pg_sleep running",
        });
        await h.clock.advance(2_000);
        await until(() => failures.length === 1, { what: "the timeout" });
        assert.ok(failures[0] instanceof BatchTimeoutError, String(failures[0]));
        await until(async () => (await sleeping()) === 0, { what: "the statement cancelled" });
        assert.deepEqual(await h.rows("sleepy"), [], "the timed-out batch was rolled back");
        await until(async () => (await h.rows("sleepy")).length === 1, {
          clock: h.clock,
          step: 250,
        });
        assert.equal(await h.checkpoint("sleepy"), 1);
        await worker.stop();
        await running;
      });
    },
  );

  it("a handler cannot use the transaction after its batch ended", T, async (t) => {
    await withPgHarness(t, { needsConcurrency: false, pooler }, async (h) => {
      await h.append();
      let kept: import("../types.ts").WorkerTransaction | null = null;
      const worker = h.worker([{ name: "leaky", handle: (tx) => void (kept = tx) }]);
      const running = worker.start();
      await until(async () => (await h.checkpoint("leaky")) === 1, { clock: h.clock, step: 100 });
      assert.throws(() => kept!`SELECT 1`, /batch transaction of consumer leaky is over/);
      assert.throws(() => kept!.unsafe("SELECT 1"), /is over/);
      await worker.stop();
      await running;
    });
  });
}

describe("Worker on PostgreSQL", () => workerScenarios(undefined));
if (PGBOUNCER) {
  describe("Worker on PostgreSQL (through PgBouncer, lease)", () => workerScenarios(PGBOUNCER));
}
