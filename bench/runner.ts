/**
 * A small benchmark runner: warm-up, alternating timed rounds of the library and its raw baseline
 * (so machine drift hits both alike), medians and spread, a human table and one JSON line per
 * benchmark: `{"name","ops_per_s","baseline_ops_per_s","ratio"}`.
 */

/** One measured comparison. */
export interface BenchResult {
  name: string;
  opsPerSecond: number;
  baselineOpsPerSecond: number | null;
  ratio: number | null;
  /** (max - min) / median of the library's rounds, as a fraction. */
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

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function timed(work: () => Promise<void>): Promise<number> {
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
  console.log(JSON.stringify({
    name: result.name,
    ops_per_s: Math.round(result.opsPerSecond),
    baseline_ops_per_s: result.baselineOpsPerSecond === null
      ? null
      : Math.round(result.baselineOpsPerSecond),
    ratio: result.ratio === null ? null : Number(result.ratio.toFixed(3)),
  }));
  return result;
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
