/**
 * Replays one multi-worker simulation seed and prints its trace as it runs:
 *
 *   deno run -A testing/simulation_replay.ts --seed 42 [--steps 40]
 *   bun testing/simulation_replay.ts --seed 42
 *
 * Exits 1 with the failure when an invariant breaks, 0 with a summary otherwise.
 *
 * @module
 */
import process from "node:process";
import { simulateWorkers, WorkerSimulationError } from "./simulation.ts";

function flag(name: string): number | undefined {
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  const args: string[] = runtime.Deno?.args ?? process.argv.slice(2);
  const at = args.indexOf(`--${name}`);
  if (at < 0) return undefined;
  const value = Number(args[at + 1]);
  if (!Number.isSafeInteger(value)) throw new Error(`--${name} needs an integer`);
  return value;
}

if (import.meta.main) {
  const seed = flag("seed");
  if (seed === undefined) {
    console.error("usage: testing/simulation_replay.ts --seed <n> [--steps <n>]");
    process.exit(2);
  }
  try {
    const report = await simulateWorkers({
      seed,
      steps: flag("steps"),
      trace: (line) => console.log(line),
    });
    console.log(
      `seed ${seed}: ok (${report.leaderStrategy}, ${
        report.heterogeneous ? "heterogeneous" : "homogeneous"
      }; ${report.events} events, ${report.commits} commits, ${report.rebalances} rebalances, ` +
        `${report.moves} moves, ${report.workersStarted} workers, ${report.faults} faults, ` +
        `${report.simulatedMs} simulated ms)`,
    );
  } catch (error) {
    if (!(error instanceof WorkerSimulationError)) throw error;
    console.error(error.message.split("\nlast steps:")[0]);
    process.exit(1);
  }
}
