// Detached consumers on real PostgreSQL, with a real crash. A child process runs a worker whose
// detached consumer logs every delivery (auto-commit), and behind the guard of docs/worker.md
// ("Detached consumers": a table of done event ids, checked before and written after) performs
// its side effect. It stalls after handling the third of five events, before the checkpoint is
// saved. While it stalls, the worker holds no transaction open and the consumer's rows are free.
// It is killed with SIGKILL; a second process delivers the five events again: the log has the
// first three twice, the guarded side effect happened once per event. The test runs this same
// file as the child process.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import postgres from "postgres";
import { type RunningChild, spawnScript } from "../../internal/child_process.ts";
import { any } from "../../store/expected_version.ts";
import { draft, FAST_FLEET, tick, until } from "../support_test.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import type { DetachedConsumer } from "../types.ts";
import { Worker } from "../worker.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";

const CHILD_ENV = "EVENTSALSA_WORKER_DETACHED_CHILD";
const EVENTS = 5;
const STALL_AT = 3;

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The child: a worker running the detached `mailer`; the first process to reach STALL_AT stalls. */
async function child(plan: ChildPlan): Promise<void> {
  const sql = postgres(plan.url, {
    max: 4,
    onnotice: () => {},
    fetch_types: false,
    connection: { search_path: plan.schema, application_name: `detached-${plan.workerId}` },
  });
  const mailer: DetachedConsumer = {
    name: "mailer",
    mode: "detached",
    async handle(event, context) {
      // Every delivery, unguarded: redeliveries show here.
      await sql`INSERT INTO deliveries (event_id, position, worker)
        VALUES (${event.eventId}, ${event.globalPosition}, ${context.workerId})`;
      // The guard of docs/worker.md: done ids are checked first and recorded after the effect.
      const [sent] = await sql`SELECT 1 FROM emails_sent WHERE event_id = ${event.eventId}`;
      if (sent === undefined) {
        // The side effect (an e-mail, in the guide).
        await sql`INSERT INTO emails (event_id, worker) VALUES (${event.eventId}, ${context.workerId})`;
        await sql`INSERT INTO emails_sent (event_id) VALUES (${event.eventId})
          ON CONFLICT (event_id) DO NOTHING`;
      }
      if (event.globalPosition === STALL_AT) {
        const claimed =
          await sql`INSERT INTO stall (id) VALUES (1) ON CONFLICT DO NOTHING RETURNING id`;
        if (claimed.length === 1) {
          say(`STALLED ${plan.workerId}`);
          await new Promise(() => {}); // handled; the checkpoint waits until the process dies
        }
      }
    },
  };
  const worker = new Worker(sql, new PostgresStore(), [mailer], {
    workerId: plan.workerId,
    batchSize: 10,
    ...FAST_FLEET,
  });
  say(`READY ${plan.workerId}`);
  await worker.start();
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else {
  describe("detached consumers on PostgreSQL", () => {
    it(
      "no transaction open while the handler runs; SIGKILL before the checkpoint: redelivered, the guarded effect once",
      { timeout: 60_000 },
      async (t) => {
        const h = await pgHarness();
        const children: RunningChild[] = [];
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          await h.sql`CREATE TABLE deliveries (seq BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL,
            position BIGINT NOT NULL, worker TEXT NOT NULL)`;
          await h.sql`CREATE TABLE emails_sent (event_id UUID PRIMARY KEY)`;
          await h.sql`CREATE TABLE emails (seq BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL,
            worker TEXT NOT NULL)`;
          await h.sql`CREATE TABLE stall (id INT PRIMARY KEY)`;
          const user = crypto.randomUUID();
          await h.sql.begin((tx) =>
            h.store.append(
              tx,
              any(),
              Array.from({ length: EVENTS }, () => draft("User", user, "UserRegistered")),
            )
          );
          const spawn = (workerId: string) => {
            const running = spawnScript(import.meta.url, {
              [CHILD_ENV]: JSON.stringify({ url: h.db.url, schema: h.db.schema, workerId }),
            }, { collectStderr: true });
            children.push(running);
            return running;
          };
          const deadline = { timeoutMs: 30_000 };
          const first = spawn("w-a");
          await until(() => first.lines.some((l) => l.startsWith("STALLED")), {
            ...deadline,
            what: `the first process to stall (${first.lines.join(" | ")})`,
          });

          // The handler is blocked: no transaction of the worker stays open meanwhile (sampled
          // five times over a quarter of a second: a batch transaction held across the handler
          // would be in every sample, with the same start; a heartbeat or a probe running at
          // one sample is not), and the consumer's rows can be locked at once.
          const samples: string[][] = [];
          for (let i = 0; i < 5; i++) {
            const open = await h.sql`SELECT pid || '@' || xact_start AS tx FROM pg_stat_activity
              WHERE application_name = 'detached-w-a' AND xact_start IS NOT NULL`;
            samples.push(open.map((row) => row.tx as string));
            await tick(50);
          }
          const held = samples[0].filter((tx) => samples.every((sample) => sample.includes(tx)));
          assert.deepEqual(held, [], "no transaction of the worker stays open");
          const [connected] = await h.sql`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = 'detached-w-a'`;
          assert.ok(connected.n > 0, "the probe sees the worker's connections");
          const locked = await h.sql.begin(async (tx) => {
            await tx`SET LOCAL lock_timeout = '100ms'`;
            return await tx`SELECT a.consumer_name, a.worker_id, c.last_position
              FROM consumer_assignments a JOIN consumer_checkpoints c USING (consumer_name)
              WHERE a.consumer_name = 'mailer' FOR UPDATE NOWAIT`;
          });
          assert.deepEqual(
            locked.map((r) => [r.worker_id, Number(r.last_position)]),
            [["w-a", 0]],
            "the rows are free, and the checkpoint waits for the handlers",
          );

          first.proc.kill("SIGKILL");
          assert.equal(await first.exited, null, "killed by a signal");
          const second = spawn("w-b");
          await until(async () => (await h.checkpoint("mailer")) === EVENTS, {
            ...deadline,
            what: `the second process to catch up (${second.lines.join(" | ")})`,
          });

          const deliveries = await h.sql`SELECT position, worker FROM deliveries ORDER BY seq`;
          assert.deepEqual(
            deliveries.map((r) => `${r.worker}:${r.position}`),
            ["w-a:1", "w-a:2", "w-a:3", "w-b:1", "w-b:2", "w-b:3", "w-b:4", "w-b:5"],
            "at least once: what the killed process handled was delivered again",
          );
          const emails = await h.sql`SELECT e.worker, d.position FROM emails e
            JOIN (SELECT DISTINCT event_id, position FROM deliveries) d USING (event_id)
            ORDER BY e.seq`;
          assert.deepEqual(
            emails.map((r) => `${r.worker}:${r.position}`),
            ["w-a:1", "w-a:2", "w-a:3", "w-b:4", "w-b:5"],
            "the guarded side effect happened once per event",
          );
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
