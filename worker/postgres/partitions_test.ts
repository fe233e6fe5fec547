// Partitioned consumers on real PostgreSQL with real processes: one consumer declared with
// `partitions: 6` runs in three worker processes (two partitions each). Events of 24 aggregates
// keep arriving; one partition's handler stalls mid-batch and its process is killed with SIGKILL.
// The survivors take its partitions over (three each); every event is handled exactly once, by
// the partition its aggregate hashes to, each aggregate's versions in order. `waitForPosition`
// with the declared name waits for every partition. Also, in one process: a changed partition
// count is refused at start, and the standalone wait matches partitions by exact prefix (no
// pattern characters). The test runs this same file as the child process.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import postgres from "postgres";
import { any } from "../../store/expected_version.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { partitionIndex } from "../core/partitions.ts";
import { WaitTimeoutError, WorkerConfigError, WorkerSetupError } from "../errors.ts";
import { FAST_FLEET, spawnWorkerChild, tick, until, type WorkerChild } from "../support_test.ts";
import type { Consumer } from "../types.ts";
import { Worker } from "../worker.ts";
import { type PgHarness, pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { waitForPosition } from "./wait.ts";

const CHILD_ENV = "EVENTSALSA_WORKER_PARTITIONS_CHILD";
const PARTITIONS = 6;
const AGGREGATES = 24;
const ROUNDS = 10;
/** The stall happens at the first event of this aggregate's 5th version. */
const STALL_AGGREGATE = "order-7";
const STALL_VERSION = 5;

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
}

/** The child: a worker running `orders` as 6 partitions; one handler stalls once, mid-batch. */
async function child(plan: ChildPlan): Promise<void> {
  const sql = postgres(plan.url, {
    max: PARTITIONS + 1,
    onnotice: () => {},
    connection: { search_path: plan.schema },
  });
  const orders: Consumer = {
    name: "orders",
    partitions: PARTITIONS,
    async handle(tx, event, context) {
      await tx`INSERT INTO handled (partition, aggregate, version, position, worker)
        VALUES (${context.partition!.index}, ${event.aggregateId}, ${event.aggregateVersion},
          ${event.globalPosition}, ${context.workerId})`;
      await tx`INSERT INTO totals (aggregate, events) VALUES (${event.aggregateId}, 1)
        ON CONFLICT (aggregate) DO UPDATE SET events = totals.events + 1`;
      if (event.aggregateId === STALL_AGGREGATE && event.aggregateVersion === STALL_VERSION) {
        // Claimed outside the batch (autocommit): only the first owner stalls.
        const claimed =
          await sql`INSERT INTO stall (id) VALUES (1) ON CONFLICT DO NOTHING RETURNING id`;
        if (claimed.length === 1) {
          process.stdout.write(`STALLED ${plan.workerId} ${context.consumer}\n`);
          await new Promise(() => {}); // the batch stays open until the process is killed
        }
      }
    },
  };
  const worker = new Worker(sql, new PostgresStore(), [orders], {
    workerId: plan.workerId,
    batchSize: 4,
    ...FAST_FLEET,
  });
  process.stdout.write(`READY ${plan.workerId}\n`);
  await worker.start();
}

type Child = WorkerChild;

function spawnChild(plan: ChildPlan): Child {
  return spawnWorkerChild(import.meta.url, CHILD_ENV, plan);
}

/** Runs a worker on the harness (fake clock advancing) until `done`, then stops it. */
async function runUntil(
  h: PgHarness,
  pool: postgres.Sql,
  consumers: Consumer[],
  done: () => Promise<boolean>,
): Promise<void> {
  const worker = h.worker(consumers, { pollInterval: 50 }, pool);
  const running = worker.start();
  try {
    const deadline = Date.now() + 20_000;
    while (!await done()) {
      if (Date.now() > deadline) throw new Error("timed out");
      await h.clock.advance(100);
      await tick(5);
    }
  } finally {
    await worker.stop();
    await running;
  }
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else {
  describe("partitioned consumers on PostgreSQL", () => {
    it(
      "6 partitions over 3 processes, one SIGKILLed mid-batch: exactly once, per-aggregate order, moved",
      { timeout: 120_000 },
      async (t) => {
        const h = await pgHarness();
        const children: Child[] = [];
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          await h.sql`CREATE TABLE handled (seq BIGSERIAL PRIMARY KEY, partition INT NOT NULL,
            aggregate TEXT NOT NULL, version BIGINT NOT NULL, position BIGINT NOT NULL,
            worker TEXT NOT NULL)`;
          await h.sql`CREATE TABLE totals (aggregate TEXT PRIMARY KEY, events INT NOT NULL)`;
          await h.sql`CREATE TABLE stall (id INT PRIMARY KEY)`;
          const ids = ["w-a", "w-b", "w-c"];
          for (const id of ids) {
            children.push(spawnChild({ url: h.db.url, schema: h.db.schema, workerId: id }));
          }
          const deadline = { timeoutMs: 60_000 };
          const owners = async () =>
            new Map(
              (await h.sql`SELECT consumer_name, worker_id FROM consumer_assignments`).map((
                r,
              ) => [r.consumer_name as string, r.worker_id as string | null]),
            );
          const spreadOver = async (workers: string[], each: number) => {
            const current = await owners();
            if (current.size !== PARTITIONS) return false;
            return workers.every((w) =>
              [...current.values()].filter((o) => o === w).length === each
            );
          };
          await until(() => spreadOver(ids, 2), { ...deadline, what: "two partitions each" });
          assert.deepEqual(
            [...(await owners()).keys()].sort(),
            Array.from({ length: PARTITIONS }, (_, i) => `orders#${i}of${PARTITIONS}`),
          );
          // Rounds of one event per aggregate, so every partition's window holds others' events.
          let latest = 0;
          const appendRound = async () => {
            for (let a = 0; a < AGGREGATES; a++) {
              const result = await h.store.append(h.sql, any(), [{
                aggregateType: "Order",
                aggregateId: `order-${a}`,
                eventType: "OrderPlaced",
                payload: new Uint8Array([1]),
              }]);
              latest = result.globalPositions[0];
            }
          };
          for (let round = 0; round < ROUNDS / 2; round++) await appendRound();
          await until(() => children.some((c) => c.lines.some((l) => l.startsWith("STALLED"))), {
            ...deadline,
            what: "a handler stalled mid-batch",
          });
          const stalledLine = children.flatMap((c) => c.lines).find((l) =>
            l.startsWith("STALLED")
          )!;
          const [, victimId, stalledPartition] = stalledLine.split(" ");
          const victim = children.find((c) => c.id === victimId)!;
          assert.equal(
            stalledPartition,
            `orders#${partitionIndex("Order", STALL_AGGREGATE, PARTITIONS)}of${PARTITIONS}`,
          );
          // The declared name waits for every partition: the stalled one holds it.
          await assert.rejects(
            waitForPosition(h.sql, latest, { consumers: ["orders"], timeout: 300 }),
            (error: unknown) => error instanceof WaitTimeoutError && /orders/.test(error.message),
          );
          // The others go on meanwhile (they are independent).
          for (let round = ROUNDS / 2; round < ROUNDS; round++) await appendRound();
          victim.proc.kill("SIGKILL");
          assert.equal(await victim.exited, null, "killed by a signal");
          const survivors = ids.filter((id) => id !== victimId);
          await until(() => spreadOver(survivors, 3), {
            ...deadline,
            what: `the survivors ${survivors} take three partitions each`,
          });
          await waitForPosition(h.sql, latest, { consumers: ["orders"], timeout: 60_000 });
          const rows = await h.sql`SELECT partition, aggregate, version, position, worker
            FROM handled ORDER BY seq`;
          const events = await h.sql`SELECT global_position, aggregate_id FROM events
            ORDER BY global_position`;
          assert.equal(events.length, AGGREGATES * ROUNDS);
          // Every event exactly once, by its aggregate's partition.
          assert.deepEqual(
            rows.map((r) => Number(r.position)).sort((a, b) => a - b),
            events.map((e) => Number(e.global_position)),
            "every position exactly once",
          );
          for (const r of rows) {
            assert.equal(
              r.partition,
              partitionIndex("Order", r.aggregate as string, PARTITIONS),
              `${r.aggregate} handled by its partition`,
            );
          }
          // Per aggregate, in commit order: versions 1..ROUNDS, in order.
          const versions = new Map<string, number[]>();
          for (const r of rows) {
            const list = versions.get(r.aggregate as string) ?? [];
            list.push(Number(r.version));
            versions.set(r.aggregate as string, list);
          }
          assert.equal(versions.size, AGGREGATES);
          for (const [aggregate, list] of versions) {
            assert.deepEqual(
              list,
              Array.from({ length: ROUNDS }, (_, i) => i + 1),
              `${aggregate}: versions in order, each once`,
            );
          }
          const totals = await h.sql`SELECT count(*)::int AS n, sum(events)::int AS total
            FROM totals`;
          assert.deepEqual({ ...totals[0] }, { n: AGGREGATES, total: AGGREGATES * ROUNDS });
          // Each process ran partitions; the stalled batch never committed: its event came from
          // a survivor.
          assert.deepEqual(new Set(rows.map((r) => r.worker)), new Set(ids));
          const stalled = rows.find((r) =>
            r.aggregate === STALL_AGGREGATE && Number(r.version) === STALL_VERSION
          )!;
          assert.notEqual(stalled.worker, victimId);
          // status shows the partitions as consumers, all caught up.
          const checkpoints = await h.sql`SELECT consumer_name, last_position
            FROM consumer_checkpoints ORDER BY consumer_name`;
          assert.equal(checkpoints.length, PARTITIONS);
          for (const c of checkpoints) assert.equal(Number(c.last_position), latest);
        } finally {
          for (const c of children) c.proc.kill("SIGKILL");
          await Promise.all(children.map((c) => c.exited));
          await tick(10);
          await h.close();
        }
      },
    );

    it(
      "a changed partition count is refused at start; the wait matches partitions by exact prefix",
      {
        timeout: 60_000,
      },
      async (t) => {
        const h = await pgHarness();
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          const pool = h.db.connect({ max: 10 });
          for (let i = 0; i < 6; i++) await h.append();
          const names = ["a_b%", "a\\b", "aXb%"];
          await runUntil(
            h,
            pool,
            names.map((name) => ({ name, partitions: 2, handle() {} })),
            async () => {
              const rows = await h.sql`SELECT count(*)::int AS n FROM consumer_checkpoints
              WHERE last_position = 6`;
              return rows[0].n === 6;
            },
          );
          // `a_b%` must not take `aXb%`'s partitions as its own, nor `a\b` anything else.
          await h.sql`UPDATE consumer_checkpoints SET last_position = 2
          WHERE consumer_name = 'aXb%#1of2'`;
          for (const name of ["a_b%", "a\\b"]) {
            await waitForPosition(h.sql, 6, { consumers: [name], timeout: 0 });
          }
          await assert.rejects(
            waitForPosition(h.sql, 6, { consumers: ["aXb%"], timeout: 0 }),
            WaitTimeoutError,
          );
          await waitForPosition(h.sql, 6, { consumers: ["aXb%#0of2"], timeout: 0 });
          await assert.rejects(
            waitForPosition(h.sql, 6, { consumers: ["a_"], timeout: 0 }),
            WorkerConfigError,
          );
          // Another count for a consumer with rows: refused before registering anything.
          const refused = h.worker([{ name: "a_b%", partitions: 3, handle() {} }], {}, pool);
          await assert.rejects(
            refused.start(),
            (error: unknown) =>
              error instanceof WorkerSetupError &&
              /"a_b%" is declared with 3 partitions, but the worker tables hold its checkpoints as 2/
                .test(error.message),
          );
          const unpartitioned = h.worker([{ name: "a\\b", handle() {} }], {}, pool);
          await assert.rejects(unpartitioned.start(), WorkerSetupError);
          const registered = await h.sql`SELECT count(*)::int AS n FROM worker_nodes`;
          assert.equal(registered[0].n, 0);
          const rows = await h.sql`SELECT count(*)::int AS n FROM consumer_checkpoints`;
          assert.equal(rows[0].n, 6, "no rows of the refused shapes");
          await pool.end();
        } finally {
          await h.close();
        }
      },
    );

    it("carrying an unpartitioned checkpoint over to partitions by hand (the documented SQL)", {
      timeout: 60_000,
    }, async (t) => {
      const h = await pgHarness();
      try {
        if (skipWithoutConcurrency(t, h.db)) return;
        const pool = h.db.connect({ max: 10 });
        for (let i = 0; i < 6; i++) await h.append();
        await runUntil(
          h,
          pool,
          [h.projection("totals")],
          async () => await h.checkpoint("totals") === 6,
        );
        // docs/worker.md, "Partitioned consumers": every worker running it stopped, then
        await h.sql.begin(async (tx) => {
          await tx`INSERT INTO consumer_checkpoints (consumer_name, last_position)
          SELECT 'totals#' || i || 'of3',
            (SELECT last_position FROM consumer_checkpoints WHERE consumer_name = 'totals')
          FROM generate_series(0, 2) AS i`;
          await tx`DELETE FROM consumer_assignments WHERE consumer_name = 'totals'`;
          await tx`DELETE FROM consumer_checkpoints WHERE consumer_name = 'totals'`;
        });
        for (let i = 0; i < 6; i++) await h.append();
        await runUntil(h, pool, [{ ...h.projection("totals"), partitions: 3 }], async () => {
          try {
            await waitForPosition(h.sql, 12, { consumers: ["totals"], timeout: 0 });
            return true;
          } catch {
            return false;
          }
        });
        assert.deepEqual(await h.rows("totals"), Array.from({ length: 12 }, (_, i) => i + 1));
        await pool.end();
      } finally {
        await h.close();
      }
    });
  });
}
