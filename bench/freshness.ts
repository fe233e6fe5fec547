/**
 * Freshness: how long after an append commits does a consumer's handler see it? A writer appends
 * at a steady rate (100 and 1,000 appends/s); each append's commit time is taken when `append`
 * resolves (auto-commit, given the pool), and the handler notes when it is called with that event.
 * Reported: p50 and p99 of (handler called − append resolved), with the notify dispatcher and with
 * polling only (`dispatcher: "poll"`, default intervals).
 *
 * `deno run -A bench/freshness.ts [--seconds 10]` (needs DATABASE_URL; runs in its own schema).
 */
import postgres from "postgres";
import { any, migrate as migrateStore, PostgresStore } from "../store/mod.ts";
import { migrate, Worker } from "../worker/mod.ts";
import { databaseUrl, numberArgument } from "./runner.ts";

/** One line of the report. */
export interface FreshnessResult {
  readonly dispatcher: "notify" | "poll";
  readonly ratePerSecond: number;
  readonly appends: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

/** Measures every (dispatcher, rate) pair for `seconds` each. */
export async function freshnessBenchmarks(
  url: string,
  seconds: number,
): Promise<FreshnessResult[]> {
  const schema = `eventsalsa_bench_fresh_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(url, { max: 8, onnotice: () => {}, connection: { search_path: schema } });
  const results: FreshnessResult[] = [];
  let run = 0;
  try {
    await migrateStore(sql);
    await migrate(sql);
    const store = new PostgresStore({ notifyChannel: "events_fresh" });
    for (const dispatcher of ["notify", "poll"] as const) {
      for (const rate of [100, 1_000]) {
        run++;
        const committed = new Map<string, number>();
        const latencies: number[] = [];
        const worker = new Worker(sql, store, [{
          name: `fresh_${run}`,
          handle(_tx, event) {
            const at = committed.get(event.eventId);
            // An event seen before its append resolved counts as 0 ms (the commit raced the ack).
            latencies.push(at === undefined ? 0 : Math.max(0, performance.now() - at));
          },
        }], { workerId: `fresh-${run}`, dispatcher });
        const running = worker.start();
        // Let the worker register, elect itself and start the consumer before timing anything.
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        const total = rate * seconds;
        const interval = 1_000 / rate;
        const began = performance.now();
        const writes: Promise<void>[] = [];
        for (let i = 0; i < total; i++) {
          const due = began + i * interval;
          const wait = due - performance.now();
          if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
          const eventId = crypto.randomUUID();
          writes.push(
            store.append(sql, any(), [{
              aggregateType: "Fresh",
              aggregateId: `f-${i % 100}`,
              eventType: "Tick",
              payload: new Uint8Array(8),
              eventId,
            }]).then(() => void committed.set(eventId, performance.now())),
          );
        }
        await Promise.all(writes);
        const deadline = performance.now() + 30_000;
        while (latencies.length < total && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await worker.stop();
        await running;
        if (latencies.length < total) {
          throw new Error(`only ${latencies.length} of ${total} events reached the handler`);
        }
        const sorted = [...latencies].sort((a, b) => a - b);
        const result: FreshnessResult = {
          dispatcher,
          ratePerSecond: rate,
          appends: total,
          p50Ms: percentile(sorted, 0.5),
          p99Ms: percentile(sorted, 0.99),
          maxMs: sorted[sorted.length - 1],
        };
        console.log(JSON.stringify({ name: `freshness ${dispatcher} ${rate}/s`, ...result }));
        results.push(result);
      }
    }
  } finally {
    await sql.end({ timeout: 5 });
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("freshness.ts");
  if (url !== null) {
    const results = await freshnessBenchmarks(url, numberArgument("seconds", 10));
    console.log("\ndispatcher  appends/s  p50 ms  p99 ms  max ms");
    for (const r of results) {
      console.log(
        `${r.dispatcher.padEnd(10)}  ${String(r.ratePerSecond).padStart(9)}  ` +
          `${r.p50Ms.toFixed(1).padStart(6)}  ${r.p99Ms.toFixed(1).padStart(6)}  ` +
          `${r.maxMs.toFixed(1).padStart(6)}`,
      );
    }
  }
}
