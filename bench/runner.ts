/**
 * A small benchmark runner: warm-up, alternating timed rounds of the library and its raw baseline
 * (so machine drift hits both alike), medians and spread, a human table and one JSON line per
 * benchmark: `{"name","ops_per_s","baseline_ops_per_s","ratio"}`.
 */
import type postgres from "postgres";
import { readEnv } from "../internal/env.ts";
import type { PostgresStore } from "../store/postgres_store.ts";
import { type Consumer, Worker, type WorkerOptions } from "../worker/mod.ts";

/** One measured comparison. */
export interface BenchResult {
  name: string;
  opsPerSecond: number;
  baselineOpsPerSecond: number | null;
  ratio: number | null;
  /** (max - min) / median of the library's rounds (of the per-round ratios, when paired). */
  spread: number;
  note?: string;
}

/** What to measure: `ops` operations per call of `run` and of `baseline`. */
export interface Comparison {
  name: string;
  ops: number;
  run: () => Promise<void>;
  baseline?: () => Promise<void>;
  rounds?: number;
  warmup?: number;
  note?: string;
}

/** The median of `values`. */
export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function timed(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return performance.now() - start;
}

/** Runs one comparison and prints its JSON line. */
export async function compare(comparison: Comparison): Promise<BenchResult> {
  const rounds = comparison.rounds ?? 5;
  for (let i = 0; i < (comparison.warmup ?? 1); i++) {
    await comparison.run();
    await comparison.baseline?.();
  }
  const library: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < rounds; i++) {
    if (comparison.baseline) {
      baseline.push(comparison.ops / (await timed(comparison.baseline)) * 1000);
    }
    library.push(comparison.ops / (await timed(comparison.run)) * 1000);
  }
  const opsPerSecond = median(library);
  const baselineOpsPerSecond = baseline.length ? median(baseline) : null;
  const result: BenchResult = {
    name: comparison.name,
    opsPerSecond,
    baselineOpsPerSecond,
    ratio: baselineOpsPerSecond === null ? null : opsPerSecond / baselineOpsPerSecond,
    spread: (Math.max(...library) - Math.min(...library)) / opsPerSecond,
    note: comparison.note,
  };
  printJson(result);
  return result;
}

/**
 * What to measure when the noise is in time rather than in the work (commit latency on a shared
 * disk moves from second to second): the library's and the baseline's calls alternate inside every
 * round on every connection, and each side's own call durations are summed, so both see the same
 * moments. A side's throughput is its operations over its summed time per connection.
 */
export interface PairedComparison {
  name: string;
  /** Concurrent loops (one per connection). */
  connections: number;
  /** Calls of each side per round, split over the loops. */
  calls: number;
  /** Operations one call performs (events per append, say). */
  opsPerCall: number;
  run: () => Promise<unknown>;
  baseline: () => Promise<unknown>;
  rounds?: number;
  note?: string;
}

/** Runs one paired comparison (a warm-up round, then `rounds`) and prints its JSON line. */
export async function comparePaired(comparison: PairedComparison): Promise<BenchResult> {
  const { connections, calls, opsPerCall } = comparison;
  const perLoop = Math.ceil(calls / connections);
  const ops = perLoop * connections * opsPerCall;
  /** One round: the summed call time (ms) of each side. */
  const round = async () => {
    let library = 0;
    let baseline = 0;
    await Promise.all(Array.from({ length: connections }, async (_, loop) => {
      for (let i = 0; i < perLoop; i++) {
        // Alternate which side goes first, so neither always follows the other. (Await before
        // adding: `sum += await x` reads `sum` before the wait and loses the other loops' adds.)
        const libraryFirst = (i + loop) % 2 === 0;
        const first = await timed(libraryFirst ? comparison.run : comparison.baseline);
        const second = await timed(libraryFirst ? comparison.baseline : comparison.run);
        library += libraryFirst ? first : second;
        baseline += libraryFirst ? second : first;
      }
    }));
    return { library, baseline };
  };
  await round();
  const rounds = comparison.rounds ?? 7;
  let library = 0;
  let baseline = 0;
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const measured = await round();
    library += measured.library;
    baseline += measured.baseline;
    ratios.push(measured.baseline / measured.library);
  }
  // Pooled over every round: call times are heavy-tailed (a collection or a slow fsync lands on
  // one call), and a sum over all calls is steadier than the median of per-round ratios.
  const perSecond = (total: number) => ops * rounds / (total / connections) * 1000;
  const ratio = baseline / library;
  const result: BenchResult = {
    name: comparison.name,
    opsPerSecond: perSecond(library),
    baselineOpsPerSecond: perSecond(baseline),
    ratio,
    spread: (Math.max(...ratios) - Math.min(...ratios)) / ratio,
    note: comparison.note,
  };
  printJson(result);
  return result;
}

/** Prints one result as its JSON line. */
export function printJson(result: BenchResult): void {
  console.log(JSON.stringify({
    name: result.name,
    ops_per_s: Math.round(result.opsPerSecond),
    baseline_ops_per_s: result.baselineOpsPerSecond === null
      ? null
      : Math.round(result.baselineOpsPerSecond),
    ratio: result.ratio === null ? null : Number(result.ratio.toFixed(3)),
  }));
}

/** Prints the human table. */
export function printTable(results: BenchResult[]): void {
  const rows = results.map((r) => [
    r.name,
    Math.round(r.opsPerSecond).toLocaleString("en"),
    r.baselineOpsPerSecond === null ? "-" : Math.round(r.baselineOpsPerSecond).toLocaleString("en"),
    r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
    `±${(r.spread * 50).toFixed(0)}%`,
    r.note ?? "",
  ]);
  const header = ["benchmark", "ops/s", "baseline ops/s", "ratio", "spread", "note"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  console.log("\n" + line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) console.log(line(row));
}

/** `DATABASE_URL`, or null after saying that `script` needs it and skips. */
export function databaseUrl(script: string): string | null {
  const url = readEnv("DATABASE_URL");
  if (!url) {
    console.log(
      `bench/${script} needs DATABASE_URL pointing at PostgreSQL, ` +
        "e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/test; skipping.",
    );
    return null;
  }
  return url;
}

/** A numeric `--name value` command-line flag, or `fallback`. */
export function numberArgument(name: string, fallback: number): number {
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  const args: string[] = runtime.Deno?.args ?? runtime.process?.argv ?? [];
  const at = args.indexOf(`--${name}`);
  const value = at >= 0 ? Number(args[at + 1]) : fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`--${name} must be a positive integer`);
  }
  return value;
}

/** Prints `line` to stderr when BENCH_DEBUG is set. */
export const debug = (line: string): void => {
  if (readEnv("BENCH_DEBUG")) console.error(line);
};

/** Polls `check` every `stepMs` until it holds; throws after `timeoutMs`. */
export async function poll(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs: number,
  stepMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  debug(`waiting for ${what}`);
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}

/** Signals every child process and waits until all have exited. */
export async function stopChildren(
  children: readonly {
    proc: { kill(signal: NodeJS.Signals): unknown };
    exited: Promise<unknown>;
  }[],
  signal: "SIGTERM" | "SIGKILL",
): Promise<void> {
  for (const c of children) c.proc.kill(signal);
  await Promise.all(children.map((c) => c.exited));
}

/**
 * Worker options of the fleet benchmarks: no pause after a full batch, short polls, and a
 * heartbeat and rebalance fast enough that joins and failovers take seconds, not a minute.
 */
export const FLEET_OPTIONS: WorkerOptions = {
  batchPause: 0,
  pollInterval: 50,
  maxPollInterval: 200,
  dispatcherInterval: 50,
  heartbeatInterval: 500,
  heartbeatTimeout: 2_000,
  rebalanceInterval: 500,
  assignmentPollInterval: 250,
};

/**
 * A worker on `sql` runs `consumers` (no pause after a full batch, 50 ms idle polls) until each
 * has committed a batch at or past `target`, then stops; `onBatch` sees every commit first. For
 * unpartitioned consumers (a partition commits under its own name).
 */
export async function catchUpWorker(
  // deno-lint-ignore no-explicit-any
  sql: postgres.Sql<any>,
  store: PostgresStore,
  consumers: Consumer[],
  target: number,
  options: WorkerOptions & { batchSize: number; workerId: string },
  onBatch: (batch: { consumer: string; to: number }) => void = () => {},
): Promise<void> {
  const behind = new Set(consumers.map((c) => c.name));
  let done!: () => void;
  const caughtUp = new Promise<void>((resolve) => (done = resolve));
  const worker = new Worker(sql, store, consumers, {
    batchPause: 0,
    pollInterval: 50,
    ...options,
    observer: {
      batchCommitted: (b) => {
        onBatch(b);
        if (b.to >= target && behind.delete(b.consumer) && behind.size === 0) done();
      },
    },
  });
  const running = worker.start();
  // A worker that fails ends `running`: the bench fails with it instead of waiting for ever.
  await Promise.race([caughtUp, running]);
  await worker.stop();
  await running;
}
