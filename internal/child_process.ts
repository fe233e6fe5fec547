/**
 * Runs a script of ours as a separate OS process under the current runtime (Deno or Bun), for
 * multi-process tests and benchmarks: stdout is collected line by line, stderr too when asked.
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** A running child and what it printed so far. */
export interface RunningChild {
  readonly proc: ChildProcess;
  /** stdout lines (and `stderr: …` lines when stderr is collected). */
  readonly lines: string[];
  /** Resolves with the exit code (null when killed or when it could not start). */
  readonly exited: Promise<number | null>;
}

/** Starts `scriptUrl` (usually `import.meta.url`) with extra environment variables. */
export function spawnScript(
  scriptUrl: string,
  env: Record<string, string>,
  options: { collectStderr?: boolean } = {},
): RunningChild {
  const path = fileURLToPath(scriptUrl);
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  const [command, args] = deno
    ? [deno.execPath() as string, ["run", "-A", path]]
    : [process.execPath, [path]];
  const proc = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", options.collectStderr ? "pipe" : "inherit"],
  });
  const lines: string[] = [];
  let buffered = "";
  proc.stdout!.on("data", (chunk) => {
    buffered += String(chunk);
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
  });
  if (options.collectStderr) proc.stderr!.on("data", (chunk) => lines.push(`stderr: ${chunk}`));
  const exited = new Promise<number | null>((resolve) => {
    proc.on("exit", (code) => resolve(code));
    proc.on("error", () => resolve(null));
  });
  return { proc, lines, exited };
}
