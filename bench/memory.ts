/**
 * Peak RSS while replaying the log through `iterateEvents`: it must stay flat, because the iterator
 * holds one page at a time. `deno run -A bench/memory.ts [--events 1000000]` (needs DATABASE_URL).
 * Prints the resident set at 10^5 and at the end, and one JSON line.
 */
import postgres from "postgres";
import { any, migrate, PostgresStore } from "../store/mod.ts";
import { databaseUrl, numberArgument } from "./runner.ts";

const rssMiB = (): number => {
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  const usage = runtime.Deno?.memoryUsage?.() ?? runtime.process.memoryUsage();
  return usage.rss / 1024 / 1024;
};

/** Seeds `total` events (if not there yet) and replays them, sampling RSS. */
export async function replayMemory(url: string, total: number): Promise<Record<string, number>> {
  const schema = "eventsalsa_bench_memory";
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await admin.end();
  const sql = postgres(url, { max: 4, onnotice: () => {}, connection: { search_path: schema } });
  try {
    await migrate(sql);
    const store = new PostgresStore();
    const payload = new TextEncoder().encode(JSON.stringify({ sku: "espresso", quantity: 2 }));
    let present = await store.latestPosition(sql);
    while (present < total) {
      const writers = Array.from({ length: 4 }, (_, w) =>
        sql.begin(async (tx) => {
          for (let b = 0; b < 10; b++) {
            await store.append(
              tx,
              any(),
              Array.from({ length: 250 }, (_, i) => ({
                aggregateType: "Order",
                aggregateId: `o-${present}-${w}-${b}`,
                eventType: `E${i % 7}`,
                payload,
                metadata: { i },
              })),
            );
          }
        }));
      await Promise.all(writers);
      present = await store.latestPosition(sql);
    }
    const samples: Record<string, number> = { start_mib: rssMiB() };
    let count = 0, peak = 0;
    const started = performance.now();
    for await (const event of store.iterateEvents(sql, { pageSize: 1000, toPosition: total })) {
      if (event.globalPosition <= 0) throw new Error("impossible");
      count++;
      if (count % 10_000 === 0) peak = Math.max(peak, rssMiB());
      if (count === 100_000) samples.at_100k_mib = rssMiB();
    }
    samples.at_end_mib = rssMiB();
    samples.peak_mib = Math.max(peak, samples.at_end_mib);
    samples.events = count;
    samples.events_per_s = count / ((performance.now() - started) / 1000);
    return samples;
  } finally {
    await sql.end();
  }
}

if (import.meta.main) {
  const url = databaseUrl("memory.ts");
  const total = numberArgument("events", 1_000_000);
  if (url) {
    const s = await replayMemory(url, total);
    console.log(
      `replayed ${s.events.toLocaleString("en")} events at ${
        Math.round(s.events_per_s).toLocaleString("en")
      }/s; ` +
        `RSS ${s.start_mib.toFixed(0)} MiB before, ${s.at_100k_mib?.toFixed(0)} MiB at 10^5, ` +
        `${s.at_end_mib.toFixed(0)} MiB at the end, peak ${s.peak_mib.toFixed(0)} MiB`,
    );
    console.log(JSON.stringify({
      name: "replay RSS through iterateEvents",
      events: s.events,
      rss_mib_at_100k: Number(s.at_100k_mib?.toFixed(1)),
      rss_mib_at_end: Number(s.at_end_mib.toFixed(1)),
      peak_rss_mib: Number(s.peak_mib.toFixed(1)),
      ops_per_s: Math.round(s.events_per_s),
      baseline_ops_per_s: null,
      ratio: null,
    }));
  }
}
