/**
 * Freshness: how long after an append commits does a consumer's handler see it? A writer appends
 * one event at a time at a steady rate (100 and 1,000 appends/s), auto-commit, given its own pool;
 * the time an append's promise resolves is taken as its commit time (so each figure slightly
 * undercounts: the commit happened a little earlier). The handler of a no-op consumer, run by a
 * Worker on a pool of its own, notes when it is called with each event. Reported: p50, p99 and max
 * of (handler called − append resolved), with the notify dispatcher and with polling only
 * (`dispatcher: "poll"`), default intervals otherwise. A handler called before its append resolved
 * (the commit's reply was slower than the notification) counts 0 ms.
 *
 * Each measurement starts a fresh consumer (`startFrom: "end"`: the events of earlier measurements
 * are behind it) and times nothing until a warm-up event has reached its handler.
 *
 * `deno run -A bench/freshness.ts [--seconds 5]` (needs DATABASE_URL; runs in its own schema):
 * about 6 s per measurement plus the seconds asked for, four measurements; `deno task bench` runs it
 * with the default. One JSON line per measurement: `{"name","p50_ms","p99_ms","max_ms","appends"}`.
 */
import postgres from "postgres";
import { any, migrate as migrateStore, PostgresStore } from "../store/mod.ts";
import { migrate, Worker, type WorkerOptions } from "../worker/mod.ts";
import { databaseUrl, numberArgument } from "./runner.ts";

/** One line of the report. */
export interface FreshnessResult {
  readonly name: string;
  readonly dispatcher: "notify" | "poll";
  readonly ratePerSecond: number;
  readonly appends: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** What to measure. */
export interface FreshnessPlan {
  /** Seconds of appends per measurement. */
  readonly seconds: number;
  readonly rates?: readonly number[];
  readonly dispatchers?: readonly ("notify" | "poll")[];
  /** Extra worker options (experiments: `batchPause`, `pollInterval`, …). */
  readonly workerOptions?: WorkerOptions;
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const round1 = (ms: number) => Math.round(ms * 10) / 10;

/** Measures every (dispatcher, rate) pair for `plan.seconds` each. */
export async function freshnessBenchmarks(
  url: string,
  plan: FreshnessPlan,
): Promise<FreshnessResult[]> {
  const { seconds } = plan;
  const schema = `eventsalsa_bench_fresh_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const connect = (max: number) =>
    postgres(url, { max, onnotice: () => {}, connection: { search_path: schema } });
  // The writer and the worker on pools of their own, as an application and a worker process
  // would be: appends queueing for a connection must not delay the worker's reads, or back.
  const sql = connect(8);
  const workerSql = connect(4);
  const results: FreshnessResult[] = [];
  let run = 0;
  try {
    await migrateStore(sql);
    await migrate(sql);
    const store = new PostgresStore({ notifyChannel: "events_fresh" });
    for (const dispatcher of plan.dispatchers ?? ["notify", "poll"] as const) {
      for (const rate of plan.rates ?? [100, 1_000]) {
        run++;
        const aggregateType = `Fresh${run}`;
        const append = (eventId: string, aggregateId: string) =>
          store.append(sql, any(), [{
            aggregateType,
            aggregateId,
            eventType: "Tick",
            payload: new Uint8Array(8),
            eventId,
          }]);
        const handled = new Map<string, number>();
        const worker = new Worker(workerSql, store, [{
          name: `fresh_${run}`,
          startFrom: "end",
          handle(_tx, event) {
            if (!handled.has(event.eventId)) handled.set(event.eventId, performance.now());
          },
        }], { ...plan.workerOptions, workerId: `fresh-${run}`, dispatcher });
        // A worker that fails ends the measurement with its error (and the schema is dropped).
        let failure: unknown = null;
        const running = worker.start().catch((error) => void (failure = error ?? "failed"));
        const check = () => {
          if (failure !== null) throw failure;
        };
        // Warm up: until the consumer runs (registered, elected, checkpoint created at the end),
        // an event every 100 ms; time nothing before one of them reached the handler.
        const warmDeadline = performance.now() + 30_000;
        while (handled.size === 0) {
          check();
          if (performance.now() > warmDeadline) throw new Error("the consumer never started");
          await append(crypto.randomUUID(), "warm");
          await sleep(100);
        }
        await sleep(200);
        const total = rate * seconds;
        const interval = 1_000 / rate;
        const ids: string[] = [];
        const resolved: number[] = [];
        const began = performance.now();
        const writes: Promise<void>[] = [];
        for (let i = 0; i < total; i++) {
          const wait = began + i * interval - performance.now();
          if (wait > 1) await sleep(wait);
          const eventId = crypto.randomUUID();
          ids.push(eventId);
          writes.push(
            append(eventId, `f-${i % 100}`).then(() => void (resolved[i] = performance.now())),
          );
        }
        await Promise.all(writes);
        const deadline = performance.now() + 30_000;
        const missing = () => ids.filter((id) => !handled.has(id)).length;
        while (missing() > 0 && performance.now() < deadline) {
          check();
          await sleep(20);
        }
        await worker.stop();
        await running;
        check();
        if (missing() > 0) {
          throw new Error(`only ${total - missing()} of ${total} events reached the handler`);
        }
        const sorted = ids.map((id, i) => Math.max(0, handled.get(id)! - resolved[i]))
          .sort((a, b) => a - b);
        const result: FreshnessResult = {
          name: `freshness ${dispatcher} ${rate}/s`,
          dispatcher,
          ratePerSecond: rate,
          appends: total,
          p50Ms: percentile(sorted, 0.5),
          p99Ms: percentile(sorted, 0.99),
          maxMs: sorted[sorted.length - 1],
        };
        console.log(JSON.stringify({
          name: result.name,
          p50_ms: round1(result.p50Ms),
          p99_ms: round1(result.p99Ms),
          max_ms: round1(result.maxMs),
          appends: total,
        }));
        results.push(result);
      }
    }
  } finally {
    await workerSql.end({ timeout: 5 });
    await sql.end({ timeout: 5 });
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return results;
}

/** Prints the human table. */
export function printFreshness(results: readonly FreshnessResult[]): void {
  console.log("\ndispatcher  appends/s  p50 ms  p99 ms  max ms");
  for (const r of results) {
    console.log(
      `${r.dispatcher.padEnd(10)}  ${String(r.ratePerSecond).padStart(9)}  ` +
        `${r.p50Ms.toFixed(1).padStart(6)}  ${r.p99Ms.toFixed(1).padStart(6)}  ` +
        `${r.maxMs.toFixed(1).padStart(6)}`,
    );
  }
}

if (import.meta.main) {
  const url = databaseUrl("freshness.ts");
  if (url !== null) {
    printFreshness(await freshnessBenchmarks(url, { seconds: numberArgument("seconds", 5) }));
  }
}
