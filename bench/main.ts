/**
 * `deno task bench`: every benchmark, each against a raw baseline measured in the same run.
 * Needs DATABASE_URL (a real PostgreSQL); the embedded PGlite is refused unless `--embedded` asks
 * for it. Component suites in their own scripts (worker.ts, worker_fleet.ts, encryption.ts,
 * command.ts, freshness.ts, latency.ts, peers/emmett.ts) run as subprocesses.
 */
import { existsSync } from "node:fs";
import { readEnv } from "../internal/env.ts";
import { printTable } from "./runner.ts";
import { storeBenchmarks } from "./store.ts";
import { replayMemory } from "./memory.ts";
import { type EmbeddedDatabase, startEmbeddedDatabase } from "../testing/embedded_database.ts";

// deno-lint-ignore no-explicit-any
const Deno = (globalThis as any).Deno;
const embeddedAsked = Deno.args.includes("--embedded");
let url = readEnv("DATABASE_URL");
let embedded: EmbeddedDatabase | null = null;
if (!url && embeddedAsked) {
  embedded = await startEmbeddedDatabase();
  url = embedded.url;
}
if (!url) {
  console.log(
    "deno task bench needs DATABASE_URL pointing at PostgreSQL (benchmarks on the embedded PGlite " +
      "say little about production; pass --embedded to run the single-connection ones there anyway)",
  );
} else {
  console.log(
    `Benchmarks on ${
      embedded ? "the embedded PGlite (one connection)" : "DATABASE_URL (PostgreSQL)"
    }, ` +
      new Date().toISOString(),
  );
  printTable(
    await storeBenchmarks(url, embedded ? 20_000 : 100_000, embedded ? [1] : [1, 8], !embedded),
  );
  if (embedded) {
    await embedded.close();
  } else {
    const memory = await replayMemory(url, 1_000_000);
    console.log(
      `\nreplay of ${memory.events} events through iterateEvents: RSS ` +
        `${memory.at_100k_mib.toFixed(0)} MiB at 10^5, ${
          memory.at_end_mib.toFixed(0)
        } MiB at 10^6 ` +
        `(peak ${memory.peak_mib.toFixed(0)} MiB)`,
    );
    const suites = [
      "worker.ts",
      "worker_fleet.ts",
      "encryption.ts",
      "command.ts",
      "freshness.ts",
      "latency.ts",
      "peers/emmett.ts",
    ];
    for (const script of suites) {
      const path = new URL(script, import.meta.url);
      if (!existsSync(path)) continue;
      console.log(`\n--- bench/${script}`);
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--v8-flags=--expose-gc", path.pathname],
      })
        .spawn();
      await child.status;
    }
  }
}
