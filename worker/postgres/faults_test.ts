// The worker's promise under real faults, one fault per test, each on real PostgreSQL and (where
// the fault is about a process) in a real child process running this same file:
// - a handler that overruns batchTimeout, ignoring its signal, never moves the checkpoint
//   without its writes;
// - a graceful stop (SIGTERM → abort) while a handler keeps writing commits nothing outside the
//   batch;
// - a batch's backend terminated (pg_terminate_backend), ended by the server's idle timeout while
//   the handler blocks the event loop, or ended while the process is paused (SIGSTOP/SIGCONT), is
//   a failed batch that is retried, never a dead process; the same for an append whose backend is
//   terminated mid-statement.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import postgres from "postgres";
import { type RunningChild, spawnScript } from "../../internal/child_process.ts";
import { any } from "../../store/expected_version.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { draft, tick, until } from "../support_test.ts";
import { BatchTimeoutError } from "../errors.ts";
import type { Consumer, WorkerTransaction } from "../types.ts";
import { Worker } from "../worker.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";

const CHILD_ENV = "EVENTSALSA_WORKER_FAULTS_CHILD";

type Mode = "stop" | "terminate" | "terminateIdle" | "block" | "pause" | "append";

interface ChildPlan {
  mode: Mode;
  url: string;
  schema: string;
  workerId: string;
}

/** The event at which the `terminate`, `block` and `pause` children misbehave, once. */
const TARGET = 7;
const BATCH_TIMEOUT = 1_000;
/** What the worker sets as idle_in_transaction_session_timeout: batchTimeout + 1 s. */
const SERVER_IDLE_TIMEOUT = BATCH_TIMEOUT + 1_000;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Claims a one-time misbehaviour outside the batch (autocommit), so only the first try does it. */
async function claim(sql: postgres.Sql, what: string): Promise<boolean> {
  const rows = await sql`INSERT INTO claims (what) VALUES (${what}) ON CONFLICT DO NOTHING
    RETURNING what`;
  return rows.length === 1;
}

async function child(plan: ChildPlan): Promise<void> {
  process.on("uncaughtException", (error) => {
    say(`FATAL ${error?.stack ?? error}`);
    process.exit(70);
  });
  process.on("unhandledRejection", (error) => {
    say(`FATAL unhandled rejection ${(error as Error)?.stack ?? error}`);
    process.exit(70);
  });
  const sql = postgres(plan.url, {
    max: 8,
    onnotice: () => {},
    fetch_types: false, // see the chaos test: postgres.js's unhandled type fetch on reconnect
    connection: { search_path: plan.schema, application_name: `faults-${plan.workerId}` },
  });
  const store = new PostgresStore();
  if (plan.mode === "append") {
    // The store opens its own transaction (given the pool); the parent terminates its backend
    // while the insert waits on a lock.
    try {
      await store.append(sql, any(), [draft("Order")]);
      say("APPENDED");
    } catch (error) {
      say(`REJECTED ${(error as { code?: string }).code}`);
    }
    await store.append(sql, any(), [draft("Order")]);
    say("DONE");
    await sql.end({ timeout: 1 });
    return;
  }
  const insert = (tx: WorkerTransaction, consumer: string, position: number) =>
    tx`INSERT INTO effects (consumer, position) VALUES (${consumer}, ${position})`;
  const consumers: Consumer[] = plan.mode === "stop"
    ? ["c0", "c1", "c2"].map((name) => ({
      name,
      async handle(tx, event, context) {
        await insert(tx, name, event.globalPosition);
        await new Promise((resolve) => setTimeout(resolve, 2));
        if (context.signal.aborted) {
          // A handler that does not look at its signal: it keeps writing for a while.
          const until = Date.now() + 150;
          for (let i = 1; Date.now() < until; i++) {
            await insert(tx, name, 1_000_000 + event.globalPosition * 1_000 + i).catch(() => {});
            await new Promise((resolve) => setImmediate(resolve));
          }
        }
      },
    }))
    : [{
      name: "faulty",
      async handle(tx, event) {
        await insert(tx, "faulty", event.globalPosition);
        if (event.globalPosition !== TARGET || !await claim(sql, plan.mode)) return;
        const [{ pid }] = await tx`SELECT pg_backend_pid() AS pid`;
        say(`HOLD ${pid}`);
        if (plan.mode === "block") {
          // Blocks the event loop past the server's idle-in-transaction timeout.
          const end = Date.now() + SERVER_IDLE_TIMEOUT + 1_500;
          while (Date.now() < end) { /* busy */ }
        } else if (plan.mode === "terminate") {
          // The parent kills the backend while this statement runs on it.
          await tx`SELECT pg_sleep(1.5)`;
        } else {
          // terminateIdle: the parent kills the idle backend; pause: it stops this process.
          await new Promise((resolve) => setTimeout(resolve, 1_500));
        }
        await insert(tx, "faulty", 1_000_000 + event.globalPosition);
      },
    }];
  const worker = new Worker(sql, store, consumers, {
    workerId: plan.workerId,
    batchSize: plan.mode === "stop" ? 100 : 5,
    batchPause: 0,
    gapCheckInterval: 0,
    pollInterval: 50,
    maxPollInterval: 200,
    batchTimeout: plan.mode === "stop" ? 30_000 : BATCH_TIMEOUT,
    heartbeatInterval: 500,
    heartbeatTimeout: 15_000,
    maxConsecutiveFailures: 50,
    logger: {
      error: (message, fields) => say(`LOG ${message} ${JSON.stringify(fields).slice(0, 300)}`),
    },
  });
  const controller = new AbortController();
  process.on("SIGTERM", () => controller.abort());
  say("READY");
  await worker.start(controller.signal);
  say("STOPPED");
  await sql.end({ timeout: 1 });
  process.exit(0);
}

function spawn(plan: ChildPlan): RunningChild {
  return spawnScript(import.meta.url, { [CHILD_ENV]: JSON.stringify(plan) }, {
    collectStderr: true,
  });
}

/**
 * Sends `name` to the child by pid: Deno's `ChildProcess.kill("SIGCONT")` does nothing after a
 * SIGSTOP (it returns false), `process.kill` works in both runtimes.
 */
function signal(c: RunningChild, name: "SIGSTOP" | "SIGCONT"): void {
  try {
    process.kill(c.proc.pid!, name);
  } catch {
    // already gone
  }
}

/** Nothing in the child's output says it died of an uncaught error. */
function assertNoCrash(c: RunningChild, what: string): void {
  const bad = c.lines.filter((l) => /FATAL|TypeError|Uncaught|uncaught/.test(l));
  assert.deepEqual(bad, [], `${what}: the process reported a crash`);
}

async function stopChild(c: RunningChild, what: string): Promise<void> {
  c.proc.kill("SIGTERM");
  const code = await Promise.race([c.exited, tick(20_000).then(() => "hung")]);
  // Deno's node:child_process reports a child that handled SIGTERM and exited 0 as killed by
  // SIGTERM (code null); Bun reports 0. The child's own last line tells that it stopped.
  assert.ok(
    code === 0 || (code === null && c.lines.includes("STOPPED")),
    `${what}: a graceful stop exits 0, got ${code} (${c.lines.slice(-5).join(" | ")})`,
  );
  assert.ok(c.lines.includes("STOPPED"), `${what}: start() resolved after the abort`);
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else {
  describe("the worker's promise under real faults", () => {
    it(
      "a handler overrunning batchTimeout (signal ignored) never moves the checkpoint without its writes",
      { timeout: 60_000 },
      async (t) => {
        const h = await pgHarness();
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          // Every checkpoint write records how many effects its own transaction sees: a write
          // outside the batch sees fewer than the position it claims.
          await h.sql.unsafe(`
            CREATE TABLE checkpoint_audit (position BIGINT, effects BIGINT, xid TEXT);
            CREATE FUNCTION audit_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              INSERT INTO checkpoint_audit VALUES (NEW.last_position,
                (SELECT count(*) FROM read_model WHERE consumer = NEW.consumer_name),
                pg_current_xact_id()::text);
              RETURN NEW;
            END $$;
            CREATE TRIGGER audit AFTER UPDATE OF last_position ON consumer_checkpoints
              FOR EACH ROW EXECUTE FUNCTION audit_checkpoint();`);
          for (let i = 0; i < 10; i++) await h.append();
          const timeouts: unknown[] = [];
          for (const form of ["handle", "handleBatch"] as const) {
            const name = `slow_${form}`;
            const slow = async (tx: WorkerTransaction, position: number, attempt: number) => {
              await tx`INSERT INTO read_model (consumer, position, handled_by)
                VALUES (${name}, ${position}, 'w')`;
              if (position === 10 && attempt <= 3) {
                await new Promise((resolve) => setTimeout(resolve, 3_000)); // ignores the signal
              }
            };
            const consumer: Consumer = form === "handle"
              ? { name, handle: (tx, e, ctx) => slow(tx, e.globalPosition, ctx.attempt) }
              : {
                name,
                async handleBatch(tx, events, ctx) {
                  for (const e of events) await slow(tx, e.globalPosition, ctx.attempt);
                },
              };
            const worker = new Worker(h.sql, h.store, [consumer], {
              workerId: `w-${form}`,
              batchTimeout: 1_000,
              pollInterval: 100,
              maxPollInterval: 200,
              observer: {
                batchFailed: (f) => {
                  if (f.error instanceof BatchTimeoutError) timeouts.push(f.error);
                },
              },
            });
            const running = worker.start();
            await until(async () => (await h.checkpoint(name)) === 10, {
              timeoutMs: 40_000,
              what: `${name} reaches 10`,
            });
            await worker.stop();
            await running;
            assert.deepEqual(await h.rows(name), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], name);
          }
          assert.ok(timeouts.length >= 6, `batch timeouts happened (${timeouts.length})`);
          // Let the timed-out handlers finish their sleeps: whatever they try then is refused.
          await tick(3_500);
          const audit = await h.sql`SELECT position, effects FROM checkpoint_audit`;
          for (const row of audit) {
            assert.ok(
              Number(row.effects) >= Number(row.position),
              `checkpoint ${row.position} written with ${row.effects} effects visible`,
            );
          }
          for (const name of ["slow_handle", "slow_handleBatch"]) {
            assert.equal(await h.checkpoint(name), 10);
            assert.deepEqual(await h.rows(name), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], name);
          }
        } finally {
          await h.close();
        }
      },
    );

    it(
      "a graceful stop (SIGTERM) while handlers keep writing commits nothing outside the batch",
      { timeout: 120_000 },
      async (t) => {
        const h = await pgHarness();
        const children: RunningChild[] = [];
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          await h.sql`CREATE TABLE effects (consumer TEXT, position BIGINT,
            PRIMARY KEY (consumer, position))`;
          await h.sql`CREATE TABLE claims (what TEXT PRIMARY KEY)`;
          const total = 1_500;
          for (let i = 0; i < total; i += 100) {
            const id = crypto.randomUUID();
            await h.sql.begin((tx) =>
              h.store.append(tx, any(), Array.from({ length: 100 }, () => draft("Order", id)))
            );
          }
          const checkEffects = async (stop: number) => {
            for (const name of ["c0", "c1", "c2"]) {
              const checkpoint = await h.checkpoint(name);
              const rows = await h.sql`SELECT position FROM effects WHERE consumer = ${name}
                ORDER BY position`;
              assert.deepEqual(
                rows.map((r) => Number(r.position)),
                Array.from({ length: checkpoint }, (_, i) => i + 1),
                `stop ${stop}, ${name}: effects are exactly the positions up to checkpoint ${checkpoint}`,
              );
            }
          };
          for (let stop = 1; stop <= 4; stop++) {
            const c = spawn({ mode: "stop", url: h.db.url, schema: h.db.schema, workerId: "w-s" });
            children.push(c);
            await until(() => c.lines.includes("READY"), { timeoutMs: 20_000, what: "READY" });
            // Stop it mid-backlog, while batches of 100 run (a batch takes a few hundred ms).
            const [before] = await h.sql`SELECT count(*)::int AS n FROM effects`;
            await until(async () => {
              const [now] = await h.sql`SELECT count(*)::int AS n FROM effects`;
              return now.n >= before.n + 20;
            }, { timeoutMs: 20_000, what: "batches running" });
            await tick(50 + 40 * stop);
            await stopChild(c, `stop ${stop}`);
            assertNoCrash(c, `stop ${stop}`);
            await checkEffects(stop);
          }
          const last = spawn({ mode: "stop", url: h.db.url, schema: h.db.schema, workerId: "w-s" });
          children.push(last);
          await until(async () => {
            const rows = await h.sql`SELECT min(last_position)::int AS m FROM consumer_checkpoints`;
            return rows[0].m === total;
          }, { timeoutMs: 60_000, what: "every consumer caught up" });
          await stopChild(last, "last");
          assertNoCrash(last, "last");
          await checkEffects(5);
        } finally {
          for (const c of children) c.proc.kill("SIGKILL");
          await Promise.all(children.map((c) => c.exited));
          await h.close();
        }
      },
    );

    for (const mode of ["terminate", "terminateIdle", "block", "pause"] as const) {
      const what = {
        terminate: "its batch's backend is terminated (pg_terminate_backend) mid-statement",
        terminateIdle: "its batch's backend is terminated while the handler awaits something else",
        block: "the handler blocks the event loop past the server's idle-in-transaction timeout",
        pause: "the process is paused (SIGSTOP) until the server ends its session, then resumed",
      }[mode];
      it(
        `a worker process survives when ${what}: the batch fails, is retried, every event once`,
        { timeout: 90_000 },
        async (t) => {
          const h = await pgHarness();
          let c: RunningChild | null = null;
          try {
            if (skipWithoutConcurrency(t, h.db)) return;
            await h.sql`CREATE TABLE effects (consumer TEXT, position BIGINT,
              PRIMARY KEY (consumer, position))`;
            await h.sql`CREATE TABLE claims (what TEXT PRIMARY KEY)`;
            for (let i = 0; i < 12; i++) await h.append();
            const child = c = spawn({ mode, url: h.db.url, schema: h.db.schema, workerId: "w-f" });
            await until(() => child.lines.some((l) => l.startsWith("HOLD ")), {
              timeoutMs: 30_000,
              what: "the batch holding the target",
            });
            const pid = Number(child.lines.find((l) => l.startsWith("HOLD "))!.slice(5));
            if (mode === "terminate") {
              await until(async () => {
                const rows = await h.sql`SELECT 1 FROM pg_stat_activity
                  WHERE pid = ${pid} AND state = 'active' AND query LIKE '%pg_sleep%'`;
                return rows.length === 1;
              }, { timeoutMs: 10_000, what: "the handler's statement running" });
            }
            if (mode === "terminate" || mode === "terminateIdle") {
              const [row] = await h.sql`SELECT pg_terminate_backend(${pid}) AS ok`;
              assert.equal(row.ok, true);
            } else if (mode === "pause") {
              signal(child, "SIGSTOP");
              // The server ends the silent transaction; then the process wakes up to a dead socket.
              await until(async () => {
                const rows = await h.sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid}`;
                return rows.length === 0;
              }, { timeoutMs: 20_000, what: "the server ended the paused session" });
              signal(child, "SIGCONT");
            }
            await until(async () => (await h.checkpoint("faulty")) === 12, {
              timeoutMs: 40_000,
              what: `checkpoint 12 (${child.lines.slice(-3).join(" | ")})`,
            });
            const rows = await h.sql`SELECT position FROM effects ORDER BY position`;
            assert.deepEqual(
              rows.map((r) => Number(r.position)),
              Array.from({ length: 12 }, (_, i) => i + 1),
              "every event once; nothing from the broken batch",
            );
            await stopChild(child, mode);
            assertNoCrash(child, mode);
          } finally {
            if (c !== null) {
              signal(c, "SIGCONT");
              c.proc.kill("SIGKILL");
              await c.exited;
            }
            await h.close();
          }
        },
      );
    }

    it(
      "a stop in the middle of many consumers' batches leaves no connection open",
      { timeout: 90_000 },
      async (t) => {
        const h = await pgHarness();
        // The worker's own connections (cancel, LISTEN) inherit the pool's application_name.
        const tag = `eventsalsa_stop_${process.pid}_${Date.now()}`;
        const pool = h.db.connect({ max: 41, connection: { application_name: tag } });
        const open = async () => {
          const [{ n }] = await h.sql`SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = ${tag}`;
          return n as number;
        };
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          await h.sql.unsafe(`INSERT INTO events (aggregate_type, aggregate_id, aggregate_version,
              event_id, event_type, payload)
            SELECT 'Order', 'o-' || g, 1, gen_random_uuid(), 'OrderPlaced', '\\x7b7d'::bytea
            FROM generate_series(1, 4000) g`);
          // Each stop lands while most of forty consumers have a short batch in flight: each is
          // cancelled, and those cancels were still queued on the worker's cancel connection when
          // it was closed (postgres.js then answered them on a new connection it never closed).
          for (let round = 0; round < 4; round++) {
            const consumers = Array.from({ length: 40 }, (_, i): Consumer => ({
              name: `busy_${round}_${i}`,
              handle: () => {},
            }));
            let batches = 0;
            const worker = new Worker(pool, h.store, consumers, {
              workerId: `w-stop-${round}`,
              batchSize: 50,
              observer: { batchCommitted: () => void batches++ },
            });
            const running = worker.start();
            await until(() => batches >= 400, { timeoutMs: 30_000, what: "400 batches" });
            await worker.stop();
            await running;
          }
          await pool.end({ timeout: 5 });
          // A connection left open would keep the process alive after the stop.
          await until(async () => (await open()) === 0, {
            timeoutMs: 5_000,
            what: "no connection of the stopped workers left",
          });
        } finally {
          await pool.end({ timeout: 0 }).catch(() => {});
          await h.close();
        }
      },
    );
    it(
      "hanging consumers never starve a healthy one: the pool is checked, and a sized pool keeps its pace",
      { timeout: 60_000 },
      async (t) => {
        const h = await pgHarness();
        const pool = postgres(h.db.url, {
          max: 5,
          onnotice: () => {},
          connection: { search_path: h.db.schema },
        });
        const release: Array<() => void> = [];
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          const hanging = ["h0", "h1", "h2"].map((name): Consumer => ({
            name,
            async handle(_tx, _event, context) {
              await new Promise<void>((resolve) => {
                release.push(resolve);
                context.signal.addEventListener("abort", () => resolve());
              });
            },
          }));
          const healthy = h.projection("healthy");
          const small = postgres(h.db.url, { max: 2, onnotice: () => {} });
          assert.throws(
            () => new Worker(small, h.store, [...hanging, healthy]),
            (e: Error) =>
              e.name === "WorkerConfigError" && /max 2 connections.*max: 5/.test(e.message),
          );
          await small.end();
          const worker = new Worker(pool, h.store, [...hanging, healthy], {
            workerId: "w-pool",
            batchTimeout: 60_000,
            pollInterval: 50,
            maxPollInterval: 100,
          });
          const running = worker.start();
          await h.append();
          // First all three hang, each holding a connection in its open batch…
          await until(() => release.length === 3, {
            timeoutMs: 15_000,
            what: "the three hanging consumers inside their first batch",
          });
          // …then, far below batchTimeout, the healthy one handles everything meanwhile.
          for (let i = 0; i < 9; i++) await h.append();
          await until(async () => (await h.checkpoint("healthy")) === 10, {
            timeoutMs: 15_000,
            what: "the healthy consumer handles 10 events while three others hang",
          });
          assert.equal(release.length, 3, "the three hanging batches are still open");
          await worker.stop();
          await running;
        } finally {
          for (const r of release) r();
          await pool.end({ timeout: 1 });
          await h.close();
        }
      },
    );

    it(
      "an append whose backend is terminated mid-statement rejects with a catchable error; the process lives on",
      { timeout: 60_000 },
      async (t) => {
        const h = await pgHarness();
        let c: RunningChild | null = null;
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          await h.sql`CREATE TABLE claims (what TEXT PRIMARY KEY)`;
          await h.append();
          // Hold a lock that the child's insert into the events table waits on.
          const locker = await h.sql.reserve();
          await locker`BEGIN`;
          await locker`LOCK TABLE events IN EXCLUSIVE MODE`;
          const child = c = spawn({
            mode: "append",
            url: h.db.url,
            schema: h.db.schema,
            workerId: "a",
          });
          let pid = 0;
          await until(async () => {
            const rows = await h.sql`SELECT pid FROM pg_stat_activity
              WHERE application_name = 'faults-a' AND wait_event_type = 'Lock'`;
            if (rows.length === 1) pid = Number(rows[0].pid);
            return pid !== 0;
          }, { timeoutMs: 20_000, what: "the append waiting on the lock" });
          await h.sql`SELECT pg_terminate_backend(${pid})`;
          await tick(200);
          await locker`ROLLBACK`;
          locker.release();
          const code = await Promise.race([child.exited, tick(20_000).then(() => "hung")]);
          assertNoCrash(child, "append");
          assert.ok(child.lines.some((l) => l.startsWith("REJECTED ")), child.lines.join(" | "));
          assert.ok(child.lines.includes("DONE"), child.lines.join(" | "));
          assert.equal(code, 0);
          const [row] = await h.sql`SELECT count(*)::int AS n FROM events`;
          assert.equal(row.n, 2, "the first append left nothing; the second one landed");
        } finally {
          if (c !== null) {
            c.proc.kill("SIGKILL");
            await c.exited;
          }
          await h.close();
        }
      },
    );
  });
}
