// The simulation's invariants on real PostgreSQL with real processes: three worker processes
// share six consumers; the one that owns p0 is killed with SIGKILL in the middle of a batch (its
// handler has written through `tx` and the batch is still open). The survivors take its
// consumers over; every consumer ends with every position handled exactly once, in order, by the
// worker that owned it at the time, and the two survivors hold three consumers each. The test
// runs this same file as the child process.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import postgres from "postgres";
import { assignmentProblems } from "../../testing/assignment_invariants.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { FAST_FLEET, spawnWorkerChild, tick, until, type WorkerChild } from "../support_test.ts";
import type { Consumer } from "../types.ts";
import { Worker } from "../worker.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";

const CHILD_ENV = "EVENTSALSA_WORKER_FLEET_CHILD";
const CONSUMERS = ["p0", "p1", "p2", "p3", "p4", "p5"];
const EVENTS = 40;
const STALL_AT = 20;

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
}

/** The child: a worker running all six consumers; p0 stalls once, mid-batch, at STALL_AT. */
async function child(plan: ChildPlan): Promise<void> {
  const sql = postgres(plan.url, {
    max: CONSUMERS.length + 1,
    onnotice: () => {},
    connection: { search_path: plan.schema },
  });
  const consumers: Consumer[] = CONSUMERS.map((name) => ({
    name,
    async handle(tx, event, context) {
      await tx`INSERT INTO handled (consumer, position, worker)
        VALUES (${name}, ${event.globalPosition}, ${context.workerId})`;
      if (name === "p0" && event.globalPosition === STALL_AT) {
        // Claimed outside the batch (autocommit): only the first owner stalls.
        const claimed =
          await sql`INSERT INTO stall (id) VALUES (1) ON CONFLICT DO NOTHING RETURNING id`;
        if (claimed.length === 1) {
          process.stdout.write(`STALLED ${plan.workerId}\n`);
          await new Promise(() => {}); // the batch stays open until the process is killed
        }
      }
    },
  }));
  const worker = new Worker(sql, new PostgresStore(), consumers, {
    workerId: plan.workerId,
    batchSize: 5,
    ...FAST_FLEET,
  });
  process.stdout.write(`READY ${plan.workerId}\n`);
  await worker.start();
}

type Child = WorkerChild;

function spawnChild(plan: ChildPlan): Child {
  return spawnWorkerChild(import.meta.url, CHILD_ENV, plan);
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else {
  describe("worker processes on PostgreSQL", () => {
    it(
      "3 processes, the owner of p0 killed with SIGKILL mid-batch: exactly once, in order, balanced after",
      { timeout: 90_000 },
      async (t) => {
        const h = await pgHarness();
        const children: Child[] = [];
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          await h.sql`CREATE TABLE handled (seq BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL,
            position BIGINT NOT NULL, worker TEXT NOT NULL, UNIQUE (consumer, position))`;
          await h.sql`CREATE TABLE stall (id INT PRIMARY KEY)`;
          for (const id of ["w-a", "w-b", "w-c"]) {
            children.push(spawnChild({ url: h.db.url, schema: h.db.schema, workerId: id }));
          }
          const deadline = { timeoutMs: 45_000 };
          const assignments = async () =>
            new Map(
              (await h.sql`SELECT consumer_name, worker_id FROM consumer_assignments`).map((
                r,
              ) => [r.consumer_name as string, r.worker_id as string | null]),
            );
          const balancedOver = async (ids: string[]) => {
            const members = ids.map((workerId) => ({ workerId, consumers: CONSUMERS }));
            const current = await assignments();
            return current.size === CONSUMERS.length &&
              assignmentProblems(members, current).length === 0;
          };
          await until(() => balancedOver(["w-a", "w-b", "w-c"]), {
            ...deadline,
            what: "six consumers over three processes",
          });
          for (let i = 0; i < EVENTS; i++) await h.append();
          await until(() => children.some((c) => c.lines.some((l) => l.startsWith("STALLED"))), {
            ...deadline,
            what: "the owner of p0 stalled mid-batch",
          });
          const victim = children.find((c) => c.lines.some((l) => l.startsWith("STALLED")))!;
          const [open] = await h.sql`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND state = 'idle in transaction'
              AND query LIKE 'INSERT INTO stall%'`;
          assert.equal(open.n, 0, "the stall claim committed on its own");
          victim.proc.kill("SIGKILL");
          assert.equal(await victim.exited, null, "killed by a signal");
          const survivors = children.filter((c) => c !== victim).map((c) => c.id);
          // Its row stays (no cleanup) until it is no longer live; then its consumers move.
          await until(() => balancedOver(survivors), {
            ...deadline,
            what: `the survivors ${survivors} take over`,
          });
          await until(async () => {
            const [row] = await h.sql`SELECT count(*)::int AS n FROM consumer_checkpoints
              WHERE last_position = ${EVENTS}`;
            return row.n === CONSUMERS.length;
          }, { ...deadline, what: "every consumer caught up" });
          const owners = await assignments();
          const counts = [...owners.values()].reduce<Record<string, number>>(
            (acc, w) => ({ ...acc, [w!]: (acc[w!] ?? 0) + 1 }),
            {},
          );
          assert.deepEqual(Object.values(counts), [3, 3], JSON.stringify(counts));
          for (const name of CONSUMERS) {
            const rows = await h.sql`SELECT position, worker FROM handled WHERE consumer = ${name}
              ORDER BY seq`;
            assert.deepEqual(
              rows.map((r) => Number(r.position)),
              Array.from({ length: EVENTS }, (_, i) => i + 1),
              `${name}: every position exactly once, in order`,
            );
            if (name === "p0") {
              // The killed batch (the one holding STALL_AT) never committed: STALL_AT and
              // whatever else it held came from a survivor.
              for (const r of rows) {
                if (r.worker === victim.id) {
                  assert.ok(Number(r.position) < STALL_AT, `p0@${r.position} by the victim`);
                }
              }
              const stalled = rows.find((r) => Number(r.position) === STALL_AT)!;
              assert.notEqual(stalled.worker, victim.id);
            }
          }
          const nodes = await h.sql`SELECT worker_id FROM worker_nodes
            WHERE heartbeat_at >= now() - interval '1500 milliseconds' ORDER BY 1`;
          assert.deepEqual(nodes.map((n) => n.worker_id), survivors);
        } finally {
          for (const c of children) c.proc.kill("SIGKILL");
          await Promise.all(children.map((c) => c.exited));
          await tick(10);
          await h.close();
        }
      },
    );
  });
}
