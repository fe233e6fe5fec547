/**
 * `deno task bench`: every benchmark, each against a raw baseline measured in the same run.
 * Needs DATABASE_URL (a real PostgreSQL); the embedded PGlite is not a meaningful baseline, so it is
 * refused. Component suites in their own scripts (worker.ts, encryption.ts) run as subprocesses.
 */
import { existsSync } from "node:fs";
import { readEnv } from "../internal/env.ts";
import { printTable } from "./runner.ts";
import { storeBenchmarks } from "./store.ts";
import { replayMemory } from "./memory.ts";

const url = readEnv("DATABASE_URL");
if (!url) {
  console.log(
    "deno task bench needs DATABASE_URL pointing at PostgreSQL (benchmarks on the embedded PGlite " +
      "say nothing about production); e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test",
  );
} else {
  console.log(`Benchmarks on DATABASE_URL (PostgreSQL), ${new Date().toISOString()}`);
  printTable(await storeBenchmarks(url, 100_000));
  const memory = await replayMemory(url, 1_000_000);
  console.log(
    `\nreplay of ${memory.events} events through iterateEvents: RSS ${
      memory.at_100k_mib.toFixed(0)
    } MiB ` +
      `at 10^5, ${memory.at_end_mib.toFixed(0)} MiB at 10^6 (peak ${
        memory.peak_mib.toFixed(0)
      } MiB)`,
  );
  for (const script of ["worker.ts", "encryption.ts"]) {
    const path = new URL(script, import.meta.url);
    if (!existsSync(path)) continue;
    console.log(`\n--- bench/${script}`);
    // deno-lint-ignore no-explicit-any
    const Deno = (globalThis as any).Deno;
    const child = new Deno.Command(Deno.execPath(), { args: ["run", "-A", path.pathname] }).spawn();
    await child.status;
  }
}
