/**
 * Worker benchmarks: `deno run -A bench/worker.ts [--events 100000, the default]` (or `bun bench/worker.ts`).
 * Needs DATABASE_URL (a real PostgreSQL); without it, says so and exits 0. Runs in its own schema.
 *
 * Catch-up of N events from position 0 by a fresh consumer, as events/s:
 * - a no-op consumer, against a hand-written postgres.js loop that reads a batch (1,000, or
 *   `--batch N`) and writes the checkpoint in one transaction (BEGIN, SELECT, UPDATE, COMMIT);
 * - a one-upsert-per-event SQL projection, against the same loop plus the same upsert per event.
 *
 * The worker does more per batch than the baseline (the fence locks the assignment and checkpoint
 * rows and checks ownership; the gap rule checks the window), so the ratio is the price of those
 * guarantees. Each worker round also includes the worker's start-up — registration, leader
 * election, the leader's assignment and the sync that starts the consumer, a few tens of
 * milliseconds — which weighs on small sizes. The project's target: ≥ 0.8×. Rounds alternate baseline
 * and worker; medians of seven count (with three, one round on a busier backend or core moved the
 * ratio by 0.15). Several processes: bench/worker_fleet.ts.
 */
import postgres from "postgres";
import { migrate as migrateStore } from "../store/migration.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { type Consumer, migrate, type WorkerTransaction } from "../worker/mod.ts";
import {
  type BenchResult,
  catchUpWorker,
  compare,
  databaseUrl,
  median,
  numberArgument,
  printJson,
  printTable,
} from "./runner.ts";

/** Events per batch, both sides (`--batch`); issue 17's lines are at 1,000. */
const BATCH = numberArgument("batch", 1_000);

const COLUMNS =
  "global_position, aggregate_type, aggregate_id, aggregate_version, event_id, event_type, " +
  "event_version, payload, metadata, created_at, trace_id, correlation_id, causation_id";

/** Runs both worker benchmarks on `url` with `events` events; returns the results. */
export async function workerBenchmarks(url: string, events: number): Promise<BenchResult[]> {
  const schema = `eventsalsa_bench_worker_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(url, { max: 8, onnotice: () => {}, connection: { search_path: schema } });
  // 50 consumers in one worker need a connection each and one to spare; opened once, outside the
  // timed rounds (the single consumer's pool is warm too).
  const many = 50;
  const manyPool = postgres(url, {
    max: many + 1,
    onnotice: () => {},
    connection: { search_path: schema },
  });
  const results: BenchResult[] = [];
  try {
    await migrateStore(sql);
    await migrate(sql);
    await sql.unsafe(`CREATE TABLE projection (consumer TEXT, id TEXT, n INT NOT NULL,
      PRIMARY KEY (consumer, id))`);
    // Setup only: N events over 1,000 aggregates, written in bulk (the store's own speed is
    // bench/store.ts's business).
    await sql.unsafe(`INSERT INTO events (aggregate_type, aggregate_id, aggregate_version, event_id,
        event_type, payload, metadata)
      SELECT 'Order', 'order-' || (g % 1000), g / 1000 + 1, gen_random_uuid(), 'OrderPlaced',
        convert_to('{"total":' || g || '}', 'UTF8'), '{"source":"bench"}'::jsonb
      FROM generate_series(1, ${events}) g`);
    await sql.unsafe(`VACUUM ANALYZE events`);
    const store = new PostgresStore();
    let run = 0;
    /** Per round, events/s after each side's first batch (start-up and first read excluded). */
    const steady = { worker: [] as number[], baseline: [] as number[] };
    const steadyRate = (events: number, first: number, last: number) =>
      events / ((last - first) / 1000);

    /** The worker catches a fresh consumer up to `target`, noting its rate after the first batch. */
    const catchUp = async (handle: (name: string) => Consumer["handle"], target: number) => {
      const name = `worker_${++run}`;
      let first: { at: number; to: number } | null = null;
      await catchUpWorker(sql, store, [{ name, handle: handle(name) }], target, {
        workerId: `bench-${run}`,
        batchSize: BATCH,
      }, (b) => {
        first ??= { at: performance.now(), to: b.to };
        if (b.to >= target) {
          steady.worker.push(steadyRate(b.to - first.to, first.at, performance.now()));
        }
      });
    };

    /** `count` fresh no-op consumers in one worker catch up to `target`. */
    const catchUpMany = async (count: number, target: number) => {
      const consumers = Array.from({ length: count }, () => ({
        name: `many_${++run}`,
        handle: () => {},
      }));
      await catchUpWorker(manyPool, store, consumers, target, {
        workerId: `bench-${run}`,
        batchSize: BATCH,
      });
    };

    /** The raw loop: read a batch, (optionally) upsert per event, write the checkpoint; one tx. */
    const baseline = async (upsert: boolean, target: number) => {
      const name = `baseline_${++run}`;
      await sql`INSERT INTO consumer_checkpoints (consumer_name) VALUES (${name})`;
      let checkpoint = 0;
      let first: { at: number; to: number } | null = null;
      while (checkpoint < target) {
        checkpoint = await sql.begin(async (tx) => {
          const rows = await tx.unsafe(
            `SELECT ${COLUMNS} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2`,
            [checkpoint, BATCH],
            { prepare: true },
          ).values();
          if (upsert) {
            for (const row of rows) {
              await tx`INSERT INTO projection (consumer, id, n) VALUES (${name}, ${row[
                2
              ] as string}, 1)
                ON CONFLICT (consumer, id) DO UPDATE SET n = projection.n + 1`;
            }
          }
          const last = Number(rows[rows.length - 1][0]);
          await tx`UPDATE consumer_checkpoints SET last_position = ${last} WHERE consumer_name = ${name}`;
          return last;
        });
        first ??= { at: performance.now(), to: checkpoint };
      }
      steady.baseline.push(steadyRate(checkpoint - first!.to, first!.at, performance.now()));
    };

    const noop = (): Consumer["handle"] => () => {};
    const upsert = (name: string): Consumer["handle"] => async (tx: WorkerTransaction, event) => {
      await tx`INSERT INTO projection (consumer, id, n) VALUES (${name}, ${event.aggregateId}, 1)
        ON CONFLICT (consumer, id) DO UPDATE SET n = projection.n + 1`;
    };

    results.push(
      await compare({
        name: `worker catch-up, no-op consumer (${events} events, batch ${BATCH})`,
        ops: events,
        run: () => catchUp(noop, events),
        baseline: () => baseline(false, events),
        rounds: 7,
      }),
    );
    // The same rounds after each side's first batch: catch-up itself, without the worker's start-up
    // (registration, election, assignment: tens of milliseconds) and the first read. The warm-up
    // round (the first of each) does not count, as in `compare`.
    const workerRounds = steady.worker.slice(1);
    const workerSteady = median(workerRounds);
    const baselineSteady = median(steady.baseline.slice(1));
    const steadyResult = {
      name:
        `worker catch-up after the first batch, no-op consumer (${events} events, batch ${BATCH})`,
      opsPerSecond: workerSteady,
      baselineOpsPerSecond: baselineSteady,
      ratio: workerSteady / baselineSteady,
      spread: (Math.max(...workerRounds) - Math.min(...workerRounds)) / workerSteady,
    };
    printJson(steadyResult);
    results.push(steadyResult);
    // Fifty consumers in one process read the same windows: each window is read once and shared.
    // The ratio is each one's rate against one consumer's alone (goal ≥ 0.25).
    const manyEvents = Math.min(events, 50_000);
    results.push(
      await compare({
        name: `50 no-op consumers in one worker, each against one alone (${manyEvents} events)`,
        ops: manyEvents,
        run: () => catchUpMany(many, manyEvents),
        baseline: () => catchUp(noop, manyEvents),
        rounds: 3,
      }),
    );
    // A quarter of the events: at one round trip per event a full catch-up takes seconds, and
    // this machine's speed drifts over seconds; more, shorter rounds follow it better.
    const upsertEvents = Math.ceil(events / 4 / BATCH) * BATCH;
    results.push(
      await compare({
        name: `worker catch-up, one upsert per event (${upsertEvents} events, batch ${BATCH})`,
        ops: upsertEvents,
        run: () => catchUp(upsert, upsertEvents),
        baseline: () => baseline(true, upsertEvents),
        rounds: 11,
      }),
    );
  } finally {
    await sql.end();
    await manyPool.end();
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("worker.ts");
  if (url) {
    const events = numberArgument("events", 100_000);
    console.log(`Worker benchmarks on DATABASE_URL, ${events} events, ${new Date().toISOString()}`);
    printTable(await workerBenchmarks(url, events));
  }
}
