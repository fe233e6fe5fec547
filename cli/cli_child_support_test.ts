// Runs the CLI as a real child process for the CLI's tests. Named `*_test.ts` so it is never
// published; it defines no tests itself.
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** A hang is a failure of its own, not a stuck test run. */
const GUARD_MS = 45_000;

/** How a CLI run ended. */
export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time of the run. */
  ms: number;
}

/**
 * Runs `eventsalsa args` under the current runtime, stdout and stderr into pipes, with none of
 * the caller's database settings (DATABASE_URL, PG*, EVENTSALSA_*) but those in `env`.
 * `interruptWhen` sends SIGINT (Ctrl-C) once stdout satisfies it.
 */
export function runCliChild(
  args: string[],
  env: Record<string, string> = {},
  interruptWhen?: (stdout: string) => boolean,
): Promise<Finished> {
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  const [command, prefix] = deno
    ? [deno.execPath() as string, ["run", "-A", CLI]]
    : [process.execPath, [CLI]];
  const childEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...process.env, NO_COLOR: "1", ...env })) {
    const database = name === "DATABASE_URL" || name.startsWith("PG") ||
      name.startsWith("EVENTSALSA_");
    if (value !== undefined && (!database || name in env)) childEnv[name] = value;
  }
  const started = Date.now();
  if (deno) {
    // Deno.Command rather than node:child_process under Deno: the latter reports a child that
    // handled SIGINT and exited 0 as killed by the signal.
    const child = new deno.Command(command, {
      args: [...prefix, ...args],
      cwd: ROOT,
      env: childEnv,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const guard = setTimeout(() => child.kill("SIGKILL"), GUARD_MS);
    const stderr = new Response(child.stderr).text();
    return (async () => {
      let stdout = "";
      let interrupted = false;
      const decoder = new TextDecoder();
      for await (const chunk of child.stdout as AsyncIterable<Uint8Array>) {
        stdout += decoder.decode(chunk, { stream: true });
        if (!interrupted && interruptWhen?.(stdout)) {
          interrupted = true;
          child.kill("SIGINT");
        }
      }
      const status = await child.status;
      clearTimeout(guard);
      return {
        code: status.signal ? null : status.code,
        stdout,
        stderr: await stderr,
        ms: Date.now() - started,
      };
    })();
  }
  const child = spawn(command, [...prefix, ...args], {
    cwd: ROOT,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let interrupted = false;
  child.stdout!.on("data", (chunk) => {
    stdout += String(chunk);
    if (!interrupted && interruptWhen?.(stdout)) {
      interrupted = true;
      child.kill("SIGINT");
    }
  });
  child.stderr!.on("data", (chunk) => stderr += String(chunk));
  const guard = setTimeout(() => child.kill("SIGKILL"), GUARD_MS);
  return new Promise((resolve) => {
    child.on("close", (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}
