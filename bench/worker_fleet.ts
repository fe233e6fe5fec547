/**
 * Worker fleet benchmarks: `deno run -A bench/worker_fleet.ts [--events 100000]` (or
 * `bun bench/worker_fleet.ts`). Needs DATABASE_URL (a real PostgreSQL); without it, says so and
 * exits 0. Runs in its own schema; every worker is a separate OS process (this file, as a child).
 *
 * 1. Catch-up throughput of 20 consumers (no-op handler, batch 100) over N events with 1, 2 and
 *    4 worker processes, as handled events per second (20 × N per run). Each run has a schema of
 *    its own; the fleet is started and balanced first, then the N events appear in one committed
 *    insert; the clock runs from that commit until every checkpoint is at N (two runs, median).
 *    Baselines: for 1 process, 20 hand-written postgres.js read-and-checkpoint loops
 *    running concurrently in one process on a pool of the same size (the raw database work);
 *    for 2 and 4 processes, the 1-process fleet (the ratio is the speed-up).
 * 2. Time from a worker joining (its `start()`) to its first committed batch, while a fleet of
 *    one runs and events keep arriving.
 * 3. Time from SIGKILL of the leader to new assignments (every consumer on a survivor), for both
 *    leader strategies, with heartbeatTimeout 2 s, heartbeatInterval 500 ms, rebalanceInterval
 *    500 ms: detection is bounded by the heartbeat timeout.
 *
 * Output: one JSON line per throughput benchmark (`{"name","ops_per_s","baseline_ops_per_s",
 * "ratio"}`), one JSON line per time (`{"name","ms","runs"}`), then a table.
 */
import type { ChildProcess } from "node:child_process";
import { spawnScript } from "../internal/child_process.ts";
import process from "node:process";
import postgres from "postgres";
import { migrate as migrateStore } from "../store/migration.ts";
import { any } from "../store/expected_version.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { type LeaderStrategy, migrate, Worker, type WorkerOptions } from "../worker/mod.ts";
import {
  type BenchResult,
  databaseUrl,
  FLEET_OPTIONS,
  median,
  numberArgument,
  poll,
  printTable,
  stopChildren,
} from "./runner.ts";

const CHILD_ENV = "EVENTSALSA_BENCH_FLEET_CHILD";
const CONSUMERS = 20;
const BATCH = 100;
const POOL = CONSUMERS + 1;

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
  prefix: string;
  options: WorkerOptions;
}

/** Consumer names of one run. */
const names = (prefix: string) =>
  Array.from({ length: CONSUMERS }, (_, i) => `${prefix}_${String(i).padStart(2, "0")}`);

/** The child: one worker running the 20 no-op consumers; reports its first committed batch. */
async function child(plan: ChildPlan): Promise<void> {
  const sql = postgres(plan.url, {
    max: POOL,
    onnotice: () => {},
    connection: { search_path: plan.schema },
  });
  let started = 0;
  let reported = false;
  const worker = new Worker(
    sql,
    new PostgresStore(),
    names(plan.prefix).map((name) => ({ name, handle() {} })),
    {
      ...plan.options,
      workerId: plan.workerId,
      observer: {
        batchCommitted: () => {
          if (reported) return;
          reported = true;
          process.stdout.write(`FIRST_BATCH ${performance.now() - started}\n`);
        },
      },
    },
  );
  const stop = () => void worker.stop();
  process.on("SIGTERM", stop);
  started = performance.now();
  await worker.start();
  await sql.end();
  process.exit(0);
}

interface Child {
  readonly id: string;
  readonly proc: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<void>;
}

function spawnChild(plan: ChildPlan): Child {
  const child = spawnScript(import.meta.url, { [CHILD_ENV]: JSON.stringify(plan) });
  return {
    id: plan.workerId,
    proc: child.proc,
    lines: child.lines,
    exited: child.exited.then(() => {}),
  };
}

const pollFor = (check: () => Promise<boolean>, what: string, timeoutMs = 300_000, stepMs = 20) =>
  poll(check, what, timeoutMs, stepMs);

/** Runs the fleet benchmarks on `url`; returns throughput results and times. */
export async function fleetBenchmarks(
  url: string,
  events: number,
): Promise<{ results: BenchResult[]; times: Array<{ name: string; ms: number; runs: number }> }> {
  const schema = `eventsalsa_bench_fleet_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(url, {
    max: POOL,
    onnotice: () => {},
    connection: { search_path: schema },
  });
  const results: BenchResult[] = [];
  const times: Array<{ name: string; ms: number; runs: number }> = [];
  const children: Child[] = [];
  const fast: WorkerOptions = { ...FLEET_OPTIONS, batchSize: BATCH };
  let run = 0;
  const spawnTracked = (plan: ChildPlan) => {
    const c = spawnChild(plan);
    children.push(c);
    return c;
  };
  const start = (prefix: string, id: string, options: WorkerOptions = fast) =>
    spawnTracked({ url, schema, workerId: id, prefix, options });
  // N events over 1,000 aggregates in one statement (the store's own speed is bench/store.ts's).
  const fillSql = (n: number) =>
    `INSERT INTO events (aggregate_type, aggregate_id, aggregate_version, event_id, event_type,
      payload, metadata)
    SELECT 'Order', 'order-' || (g % 1000), g / 1000 + 1, gen_random_uuid(), 'OrderPlaced',
      convert_to('{"total":' || g || '}', 'UTF8'), '{"source":"bench"}'::jsonb
    FROM generate_series(1, ${n}) g`;
  const fillEvents = fillSql(events);
  // The join and failover runs (sections 2 and 3) time no catch-up: each fleet first catches up
  // untimed on the main schema's log, so it holds a short one.
  const backlog = 1_000;
  const assignedTo = async (prefix: string) =>
    await sql`SELECT worker_id, count(*)::int AS n FROM consumer_assignments
      WHERE consumer_name LIKE ${prefix + "\\_%"} GROUP BY 1`;
  const balanced = async (prefix: string, ids: string[]) => {
    const rows = await assignedTo(prefix);
    const counts = new Map(rows.map((r) => [r.worker_id as string | null, r.n as number]));
    const total = ids.reduce((sum, id) => sum + (counts.get(id) ?? 0), 0);
    const values = ids.map((id) => counts.get(id) ?? 0);
    return total === CONSUMERS && Math.max(...values) - Math.min(...values) <= 1;
  };
  const allAt = async (prefix: string, position: number) => {
    const [row] = await sql`SELECT count(*)::int AS n FROM consumer_checkpoints
      WHERE consumer_name LIKE ${prefix + "\\_%"} AND last_position >= ${position}`;
    return row.n === CONSUMERS;
  };
  try {
    await migrateStore(sql);
    await migrate(sql);
    await sql.unsafe(fillSql(backlog));
    await sql.unsafe(`VACUUM ANALYZE events`);

    // 1. Catch-up throughput: each run in a schema of its own, the fleet (or the raw loops)
    // ready before the N events appear in one committed insert; timed from that commit until
    // every checkpoint is at N.
    const runSchema = async () => {
      const name = `${schema}_${++run}`;
      await admin.unsafe(`CREATE SCHEMA ${name}`);
      const pool = postgres(url, {
        max: POOL,
        onnotice: () => {},
        connection: { search_path: name },
      });
      await migrateStore(pool);
      await migrate(pool);
      return { name, pool };
    };
    const fill = (pool: postgres.Sql) => pool.unsafe(fillEvents);
    const dropSchema = async (name: string, pool: postgres.Sql) => {
      await pool.end();
      await admin.unsafe(`DROP SCHEMA ${name} CASCADE`);
    };
    const baselineRun = async () => {
      const { name: runName, pool } = await runSchema();
      const consumers = names("raw");
      await pool`INSERT INTO consumer_checkpoints (consumer_name) SELECT unnest(${consumers}::text[])`;
      await fill(pool);
      const started = performance.now();
      await Promise.all(consumers.map(async (name) => {
        let checkpoint = 0;
        while (checkpoint < events) {
          checkpoint = await pool.begin(async (tx) => {
            const rows = await tx.unsafe(
              `SELECT global_position, aggregate_type, aggregate_id, aggregate_version, event_id,
                event_type, event_version, payload, metadata, created_at, trace_id, correlation_id,
                causation_id FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2`,
              [checkpoint, BATCH],
            ).values();
            const last = Number(rows[rows.length - 1][0]);
            await tx`UPDATE consumer_checkpoints SET last_position = ${last} WHERE consumer_name = ${name}`;
            return last;
          });
        }
      }));
      const rate = CONSUMERS * events / ((performance.now() - started) / 1000);
      await dropSchema(runName, pool);
      return rate;
    };
    const fleetRun = async (size: number) => {
      const { name: runName, pool } = await runSchema();
      const prefix = "fleet";
      const ids = Array.from({ length: size }, (_, i) => `w${i + 1}`);
      const fleet = ids.map((id) =>
        spawnTracked({ url, schema: runName, workerId: id, prefix, options: fast })
      );
      const at = async (position: number) => {
        const [row] = await pool`SELECT count(*)::int AS n FROM consumer_checkpoints
          WHERE last_position >= ${position}`;
        return row.n === CONSUMERS;
      };
      await pollFor(async () => {
        const rows = await pool`SELECT worker_id, count(*)::int AS n FROM consumer_assignments
          GROUP BY 1`;
        const counts = ids.map((id) => rows.find((r) => r.worker_id === id)?.n ?? 0);
        return counts.reduce((a, b) => a + b, 0) === CONSUMERS &&
          Math.max(...counts) - Math.min(...counts) <= 1;
      }, `${size} processes balanced`);
      await fill(pool);
      const started = performance.now();
      await pollFor(() => at(events), "the catch-up", 600_000, 5);
      const rate = CONSUMERS * events / ((performance.now() - started) / 1000);
      await stopChildren(fleet, "SIGTERM");
      await dropSchema(runName, pool);
      return rate;
    };
    const baseline = median([await baselineRun(), await baselineRun()]);
    let single = 0;
    for (const size of [1, 2, 4]) {
      const rate = median([await fleetRun(size), await fleetRun(size)]);
      if (size === 1) single = rate;
      const reference = size === 1 ? baseline : single;
      const result: BenchResult = {
        name: `fleet catch-up, ${CONSUMERS} consumers, ${size} process${
          size === 1 ? "" : "es"
        } (${events} events)`,
        opsPerSecond: rate,
        baselineOpsPerSecond: reference,
        ratio: rate / reference,
        spread: 0,
        note: size === 1 ? "baseline: 20 raw loops, one process" : "baseline: 1 process",
      };
      console.log(JSON.stringify({
        name: result.name,
        ops_per_s: Math.round(rate),
        baseline_ops_per_s: Math.round(reference),
        ratio: Number(result.ratio!.toFixed(3)),
      }));
      results.push(result);
    }

    // 2. Join to first batch, while events keep arriving.
    const store = new PostgresStore();
    let appending = true;
    const appender = (async () => {
      while (appending) {
        await store.append(sql, any(), [{
          aggregateType: "Order",
          aggregateId: `live-${Math.floor(Math.random() * 100)}`,
          eventType: "OrderPlaced",
          payload: new Uint8Array([1]),
        }]);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const joins: number[] = [];
    for (let i = 0; i < 3; i++) {
      const prefix = `join${++run}`;
      const first = start(prefix, `${prefix}-w1`);
      await pollFor(() => balanced(prefix, [first.id]), "the first worker");
      await pollFor(async () => {
        const [row] = await sql`SELECT min(last_position)::int AS low FROM consumer_checkpoints
          WHERE consumer_name LIKE ${prefix + "\\_%"}`;
        return row.low >= backlog;
      }, "the first worker caught up");
      const joiner = start(prefix, `${prefix}-w2`);
      await pollFor(
        () => Promise.resolve(joiner.lines.some((l) => l.startsWith("FIRST_BATCH"))),
        "the joiner's first batch",
      );
      joins.push(Number(joiner.lines.find((l) => l.startsWith("FIRST_BATCH"))!.split(" ")[1]));
      await stopChildren([first, joiner], "SIGTERM");
    }
    appending = false;
    await appender;
    times.push({ name: "worker join to its first batch", ms: median(joins), runs: joins.length });

    // 3. Leader kill to new assignments.
    for (const strategy of ["advisory", "lease"] as LeaderStrategy[]) {
      const kills: number[] = [];
      for (let i = 0; i < 3; i++) {
        const prefix = `kill${++run}`;
        const ids = [1, 2, 3].map((n) => `${prefix}-w${n}`);
        const fleet = ids.map((id) => start(prefix, id, { ...fast, leaderStrategy: strategy }));
        await pollFor(() => balanced(prefix, ids), "three processes balanced");
        const [{ latest }] = await sql`SELECT max(global_position)::int AS latest FROM events`;
        await pollFor(() => allAt(prefix, latest), "caught up before the kill");
        let leader: string | null = null;
        await pollFor(async () => {
          const rows = await sql`SELECT leader_id FROM worker_leader_election
            WHERE leader_id IS NOT NULL`;
          leader = rows.length === 1 && ids.includes(rows[0].leader_id)
            ? rows[0].leader_id as string
            : null;
          return leader !== null;
        }, "a leader");
        const victim = fleet.find((c) => c.id === leader)!;
        const survivors = ids.filter((id) => id !== leader);
        const killed = performance.now();
        victim.proc.kill("SIGKILL");
        await pollFor(() => balanced(prefix, survivors), "new assignments", 60_000, 5);
        kills.push(performance.now() - killed);
        await stopChildren(fleet, "SIGTERM");
      }
      times.push({
        name: `leader kill to new assignments (${strategy}, heartbeatTimeout 2000 ms)`,
        ms: median(kills),
        runs: kills.length,
      });
    }
    for (const t of times) {
      console.log(JSON.stringify({ name: t.name, ms: Math.round(t.ms), runs: t.runs }));
    }
  } finally {
    await stopChildren(children, "SIGKILL");
    await sql.end();
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return { results, times };
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else if (import.meta.main) {
  const url = databaseUrl("worker_fleet.ts");
  if (url) {
    const events = numberArgument("events", 40_000);
    console.log(
      `Worker fleet benchmarks on DATABASE_URL, ${events} events, ${new Date().toISOString()}`,
    );
    const { results, times } = await fleetBenchmarks(url, events);
    printTable(results);
    for (const t of times) console.log(`${t.name}: ${Math.round(t.ms)} ms (median of ${t.runs})`);
  }
}
