/**
 * The eventsalsa command line: `deno run -A jsr:@eventsalsa/eventsalsa/cli <command>`.
 *
 * ```
 * eventsalsa migrate [--apply] [--only store,worker,encryption] [--events-table name] ...
 * eventsalsa status [--json] [--watch]
 * eventsalsa dead-letters list|retry ...
 * eventsalsa keys rewrap --from id --to id --key-file id=path ...
 * ```
 *
 * Reads `DATABASE_URL`. A user mistake prints one line and exits with status 2; a failure of the
 * database exits with status 1; neither prints a stack trace.
 *
 * @example
 * ```ts
 * import { runCli } from "@eventsalsa/eventsalsa/cli";
 * const status = await runCli(["migrate"]); // prints the DDL
 * ```
 *
 * @module
 */
import { type CliIo, CliUsageError } from "./cli/io.ts";
import { migrateCommand, migrateUsage } from "./cli/migrate.ts";
import { statusCommand, statusUsage } from "./cli/status.ts";
import { deadLettersCommand, deadLettersUsage } from "./cli/dead_letters.ts";
import { keysCommand, keysUsage } from "./cli/keys.ts";
import { readEnv } from "./internal/env.ts";

export type { CliIo };

const commands: Record<
  string,
  { usage: string; run: (args: string[], io: CliIo) => Promise<number> }
> = {
  migrate: { usage: migrateUsage, run: migrateCommand },
  status: { usage: statusUsage, run: statusCommand },
  "dead-letters": { usage: deadLettersUsage, run: deadLettersCommand },
  keys: { usage: keysUsage, run: keysCommand },
};

/** Errors that mean the user's input was wrong (exit 2) rather than that something failed. */
const USER_ERRORS = new Set([
  "ValidationError",
  "WorkerConfigError",
  "InvalidInputError",
  "KeyringError",
  "InvalidKeySizeError",
  "SystemKeyNotFoundError",
  "DeadLetterNotFoundError",
]);

const consoleIo: CliIo = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  env: readEnv,
};

function usage(): string {
  return [
    "usage: eventsalsa <command> [options]",
    "",
    ...Object.values(commands).map((c) => c.usage),
  ]
    .join("\n");
}

/**
 * Runs one CLI command and resolves to its exit status; output goes through `io` (the console by
 * default), so it can run in-process.
 *
 * @example
 * ```ts
 * import { runCli } from "@eventsalsa/eventsalsa/cli";
 * const lines: string[] = [];
 * const status = await runCli(["migrate", "--only", "store"], {
 *   out: (line) => lines.push(line),
 *   err: (line) => lines.push(line),
 *   env: () => undefined,
 * });
 * ```
 */
export async function runCli(args: readonly string[], io: CliIo = consoleIo): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    io.err(`eventsalsa: unknown command ${JSON.stringify(name)}; try "eventsalsa help"`);
    return 2;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof CliUsageError || USER_ERRORS.has((error as Error)?.name)) {
      io.err(`eventsalsa ${name}: ${(error as Error).message}`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    const hint = (error as { code?: string })?.code === "42P01"
      ? " (are the tables migrated? eventsalsa migrate --apply)"
      : "";
    io.err(`eventsalsa ${name}: ${message}${hint}`);
    return 1;
  }
}

if (import.meta.main) {
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  const args: string[] = runtime.Deno?.args ?? runtime.process.argv.slice(2);
  const controller = new AbortController();
  if (runtime.Deno) runtime.Deno.addSignalListener("SIGINT", () => controller.abort());
  else runtime.process.on("SIGINT", () => controller.abort());
  const status = await runCli(args, { ...consoleIo, signal: controller.signal });
  if (runtime.Deno) runtime.Deno.exit(status);
  else runtime.process.exit(status);
}
