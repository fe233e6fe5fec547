/**
 * Partitioned consumer benchmark: `deno run -A bench/worker_partitions.ts [--events 100000]
 * [--partitions 4] [--runs 3]` (or `bun bench/worker_partitions.ts`). Needs DATABASE_URL (a real
 * PostgreSQL); without it, says so and exits 0. Every worker is a separate OS process (this file,
 * as a child).
 *
 * Catch-up of ONE projection — one upsert per event through the batch transaction, into a table
 * keyed by aggregate — over N events of 1,000 aggregates, as events per second:
 *
 * 1. declared without partitions, in 1 process (one loop: the reference);
 * 2. declared with `partitions: P`, in 1, 2 and 4 processes (P loops spread over the fleet).
 *
 * Each run has a schema of its own; the fleet is started and balanced first, then the N events
 * appear in one committed insert; the clock runs from that commit until every checkpoint of the
 * consumer is at N. Each run checks that the projection counted every event exactly once. Ratios:
 * the 1-process partitioned run against the unpartitioned one; the 2- and 4-process runs against
 * the 1-process partitioned run (the speed-up from adding processes). Medians of `--runs` runs.
 *
 * Output: one JSON line per configuration (`{"name","ops_per_s","baseline_ops_per_s","ratio",
 * "runs"}`), then a table.
 */
import type { ChildProcess } from "node:child_process";
import process from "node:process";
import postgres from "postgres";
import { spawnScript } from "../internal/child_process.ts";
import { migrate as migrateStore } from "../store/migration.ts";
import { migrate, Worker, type WorkerOptions } from "../worker/mod.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import {
  type BenchResult,
  databaseUrl,
  debug,
  FLEET_OPTIONS,
  median,
  numberArgument,
  poll,
  printTable,
  stopChildren,
} from "./runner.ts";

const CHILD_ENV = "EVENTSALSA_BENCH_PARTITIONS_CHILD";
const BATCH = 100;
const CONSUMER = "order_totals";

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
  /** The consumer's `partitions` (1: declared without). */
  partitions: number;
  options: WorkerOptions;
}

/** The child: one worker running the projection. */
async function child(plan: ChildPlan): Promise<void> {
  const sql = postgres(plan.url, {
    max: plan.partitions + 1,
    onnotice: () => {},
    fetch_types: false,
    connection: { search_path: plan.schema },
  });
  const worker = new Worker(sql, new PostgresStore(), [{
    name: CONSUMER,
    ...(plan.partitions > 1 ? { partitions: plan.partitions } : {}),
    async handle(tx, event) {
      await tx`INSERT INTO order_totals (id, n) VALUES (${event.aggregateId}, 1)
        ON CONFLICT (id) DO UPDATE SET n = order_totals.n + 1`;
    },
  }], { ...plan.options, workerId: plan.workerId });
  process.on("SIGTERM", () => void worker.stop());
  await worker.start();
  await sql.end();
  process.exit(0);
}

interface Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  /** Set when the process has ended (a crashed worker fails the run at once). */
  readonly ended: { value: boolean };
}

function spawnChild(plan: ChildPlan): Child {
  const child = spawnScript(import.meta.url, { [CHILD_ENV]: JSON.stringify(plan) });
  const ended = { value: false };
  return { proc: child.proc, exited: child.exited.then(() => void (ended.value = true)), ended };
}

const pollFor = (check: () => Promise<boolean>, what: string, timeoutMs = 600_000, stepMs = 20) =>
  poll(check, what, timeoutMs, stepMs);

/** Runs the benchmark on `url`; returns one result per configuration. */
export async function partitionBenchmarks(
  url: string,
  events: number,
  partitions: number,
  runs: number,
): Promise<BenchResult[]> {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  const prefix = `eventsalsa_bench_partitions_${Date.now()}`;
  const children: Child[] = [];
  const fast: WorkerOptions = { ...FLEET_OPTIONS, batchSize: BATCH };
  // N events over 1,000 aggregates in one statement (versions dense per aggregate).
  const fillEvents = `INSERT INTO events (aggregate_type, aggregate_id, aggregate_version, event_id,
      event_type, payload, metadata)
    SELECT 'Order', 'order-' || (g % 1000), g / 1000 + 1, gen_random_uuid(), 'OrderPlaced',
      convert_to('{"total":' || g || '}', 'UTF8'), '{"source":"bench"}'::jsonb
    FROM generate_series(1, ${events}) g`;
  let run = 0;
  /** One catch-up: `processes` workers, the consumer with `count` partitions; events/s. */
  const catchUp = async (count: number, processes: number): Promise<number> => {
    const schema = `${prefix}_${++run}`;
    await admin.unsafe(`CREATE SCHEMA ${schema}`);
    const pool = postgres(url, {
      max: 2,
      onnotice: () => {},
      connection: { search_path: schema },
    });
    const fleet: Child[] = [];
    try {
      await migrateStore(pool);
      await migrate(pool);
      await pool`CREATE TABLE order_totals (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`;
      for (let i = 0; i < processes; i++) {
        const c = spawnChild({
          url,
          schema,
          workerId: `w${i + 1}`,
          partitions: count,
          options: fast,
        });
        fleet.push(c);
        children.push(c);
      }
      const loops = Math.max(1, count);
      const each = Math.floor(loops / processes);
      const alive = () => {
        if (fleet.some((c) => c.ended.value)) throw new Error("a worker process ended");
      };
      await pollFor(
        async () => {
          alive();
          const rows = await pool`SELECT worker_id, count(*)::int AS n FROM consumer_assignments
          WHERE worker_id IS NOT NULL GROUP BY 1`;
          const counts = rows.map((r) => r.n as number);
          return counts.reduce((a, b) => a + b, 0) === loops &&
            rows.length === Math.min(processes, loops) && Math.min(...counts) >= each;
        },
        `${processes} processes balanced`,
        120_000,
      );
      await pool.unsafe(fillEvents);
      const started = performance.now();
      await pollFor(
        async () => {
          alive();
          const [row] = await pool`SELECT count(*)::int AS n FROM consumer_checkpoints
          WHERE last_position >= ${events}`;
          return row.n === loops;
        },
        "the catch-up",
        900_000,
        5,
      );
      const rate = events / ((performance.now() - started) / 1000);
      const [check] = await pool`SELECT coalesce(sum(n), 0)::int AS total FROM order_totals`;
      if (check.total !== events) {
        throw new Error(`the projection counted ${check.total} events, not ${events}`);
      }
      debug(`${count} partitions, ${processes} processes: ${Math.round(rate)} events/s`);
      return rate;
    } finally {
      await stopChildren(fleet, "SIGTERM");
      await pool.end();
      await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    }
  };
  const results: BenchResult[] = [];
  const report = (
    name: string,
    rates: number[],
    reference: number,
    note: string,
  ) => {
    const rate = median(rates);
    const result: BenchResult = {
      name,
      opsPerSecond: rate,
      baselineOpsPerSecond: reference,
      ratio: rate / reference,
      // (max − min) / median of the runs, as the runner's other results.
      spread: (Math.max(...rates) - Math.min(...rates)) / rate,
      note,
    };
    console.log(JSON.stringify({
      name,
      ops_per_s: Math.round(rate),
      baseline_ops_per_s: Math.round(reference),
      ratio: Number(result.ratio!.toFixed(3)),
      runs: rates.map(Math.round),
    }));
    results.push(result);
  };
  try {
    const measure = async (count: number, processes: number) => {
      const rates: number[] = [];
      for (let i = 0; i < runs; i++) rates.push(await catchUp(count, processes));
      return rates;
    };
    const singleRates = await measure(1, 1);
    const single = median(singleRates);
    report(
      `catch-up, one upsert per event, unpartitioned, 1 process (${events} events)`,
      singleRates,
      single,
      "the reference",
    );
    let one = 0;
    for (const processes of [1, 2, 4]) {
      const rates = await measure(partitions, processes);
      if (processes === 1) one = median(rates);
      report(
        `catch-up, one upsert per event, ${partitions} partitions, ${processes} process${
          processes === 1 ? "" : "es"
        } (${events} events)`,
        rates,
        processes === 1 ? single : one,
        processes === 1 ? "baseline: unpartitioned, 1 process" : "baseline: 1 process",
      );
    }
  } finally {
    await stopChildren(children, "SIGKILL");
    await admin.end();
  }
  return results;
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else if (import.meta.main) {
  const url = databaseUrl("worker_partitions.ts");
  if (url) {
    const events = numberArgument("events", 100_000);
    const partitions = numberArgument("partitions", 4);
    const runs = numberArgument("runs", 3);
    console.log(
      `Partitioned consumer benchmark on DATABASE_URL, ${events} events, ${partitions} ` +
        `partitions, ${new Date().toISOString()}`,
    );
    printTable(await partitionBenchmarks(url, events, partitions, runs));
  }
}
