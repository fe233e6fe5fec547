/**
 * Filters in SQL: `deno run -A bench/worker_filter.ts [--events 1000000]` (needs DATABASE_URL;
 * runs in its own schema). The log holds N events of which 1 % are of a rare type (aggregate type
 * `Rare`, event type `RareNoted`); a fresh consumer of that type catches up from position 0.
 *
 * Lines, as events of the log passed per second (all N, not only the matches):
 * - `eventTypes: ["RareNoted"]` and `aggregateTypes: ["Rare"]`, against the same consumer
 *   filtering in its handler instead — what a type filter cost before filters moved into SQL
 *   (every window read every row in full, `batchSize` positions at a time). Goal: ≥ 20×.
 * - the `eventTypes` line again with an `(event_type, global_position)` index, which the
 *   migration does not create (it would cost every append);
 * - a filter that matches 99 % of the log (`aggregateTypes: ["Order"]`) against an unfiltered
 *   consumer: a dense filter must not cost more than reading everything.
 *
 * Both sides use `batchSize: 1000`, `batchPause: 0`; whole runs alternate, medians of three.
 */
import postgres from "postgres";
import { migrate as migrateStore } from "../store/migration.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { type Consumer, migrate } from "../worker/mod.ts";
import {
  type BenchResult,
  catchUpWorker,
  compare,
  databaseUrl,
  numberArgument,
  printTable,
} from "./runner.ts";

const BATCH = 1_000;

/** Runs the filter benchmarks over a log of `events` events; returns the results. */
export async function filterBenchmarks(url: string, events: number): Promise<BenchResult[]> {
  const schema = `eventsalsa_bench_filter_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(url, { max: 8, onnotice: () => {}, connection: { search_path: schema } });
  const results: BenchResult[] = [];
  try {
    await migrateStore(sql);
    await migrate(sql);
    // Setup only: every hundredth event is the rare type, the rest orders over 1,000 aggregates.
    await sql.unsafe(`INSERT INTO events (aggregate_type, aggregate_id, aggregate_version, event_id,
        event_type, payload, metadata)
      SELECT CASE WHEN g % 100 = 0 THEN 'Rare' ELSE 'Order' END, 'agg-' || (g % 1000),
        g / 1000 + 1, gen_random_uuid(),
        CASE WHEN g % 100 = 0 THEN 'RareNoted' ELSE 'OrderPlaced' END,
        convert_to('{"total":' || g || ',"note":"a payload of a typical size"}', 'UTF8'),
        '{"source":"bench"}'::jsonb
      FROM generate_series(1, ${events}) g`);
    await sql.unsafe(`VACUUM ANALYZE events`);
    const store = new PostgresStore();
    let run = 0;
    let handled = 0;

    /**
     * A fresh consumer catches up to `target`; it must have handled at least `least` events (a
     * filter that matched nothing would only look fast).
     */
    const catchUp = async (target: number, shape: Omit<Consumer, "name">, least: number) => {
      const name = `filter_${++run}`;
      const before = handled;
      await catchUpWorker(sql, store, [{ name, ...shape } as Consumer], target, {
        workerId: `bench-${run}`,
        batchSize: BATCH,
      });
      const n = handled - before;
      if (n < least) throw new Error(`${name} handled ${n} events, expected at least ${least}`);
    };
    const rare = Math.floor(events / 100);
    const count = () => void handled++;
    const inHandler = (test: (e: { aggregateType: string; eventType: string }) => boolean) => ({
      handle: (_tx: unknown, event: { aggregateType: string; eventType: string }) => {
        if (test(event)) handled++;
      },
    });

    for (
      const [label, filter, test] of [
        [
          'eventTypes: ["RareNoted"]',
          { eventTypes: ["RareNoted"] },
          (e: { eventType: string }) => e.eventType === "RareNoted",
        ],
        [
          'aggregateTypes: ["Rare"]',
          { aggregateTypes: ["Rare"] },
          (e: { aggregateType: string }) => e.aggregateType === "Rare",
        ],
      ] as const
    ) {
      results.push(
        await compare({
          name: `catch-up of a 1 % type, ${label} vs filtering in the handler (${events} events)`,
          ops: events,
          run: () => catchUp(events, { ...filter, handle: count }, rare),
          baseline: () => catchUp(events, inHandler(test as (e: unknown) => boolean), rare),
          rounds: 3,
          warmup: 0,
        }),
      );
    }
    // The lever for event types: an index like the store's aggregate one (not created by the
    // migration: it costs every append; see docs/worker.md, Type filters).
    await sql.unsafe(`CREATE INDEX bench_event_type ON events (event_type, global_position)`);
    await sql.unsafe(`ANALYZE events`);
    results.push(
      await compare({
        name:
          `catch-up of a 1 % type, eventTypes with an (event_type, global_position) index (${events} events)`,
        ops: events,
        run: () => catchUp(events, { eventTypes: ["RareNoted"], handle: count }, rare),
        baseline: () =>
          catchUp(
            events,
            inHandler((e: { eventType: string }) => e.eventType === "RareNoted"),
            rare,
          ),
        rounds: 3,
        warmup: 0,
      }),
    );
    await sql.unsafe(`DROP INDEX bench_event_type`);
    const dense = Math.min(events, 200_000);
    results.push(
      await compare({
        name: `catch-up of a 99 % filter vs no filter (first ${dense} events)`,
        ops: dense,
        run: () =>
          catchUp(dense, { aggregateTypes: ["Order"], handle: count }, dense - dense / 100),
        baseline: () => catchUp(dense, { handle: count }, dense),
        rounds: 3,
        warmup: 0,
      }),
    );
  } finally {
    await sql.end();
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("worker_filter.ts");
  if (url) {
    const events = numberArgument("events", 1_000_000);
    console.log(`Filter benchmarks on DATABASE_URL, ${events} events, ${new Date().toISOString()}`);
    printTable(await filterBenchmarks(url, events));
  }
}
