/**
 * The eventsalsa command line: `deno run -A jsr:@eventsalsa/eventsalsa/cli <command>`.
 *
 * ```
 * eventsalsa migrate [--apply | --all] [--only store,worker,encryption] [--events-table name] ...
 * eventsalsa status [--json] [--watch]
 * eventsalsa status --check [--max-lag n] [--allow-dead-letters]   # a health check: exit 0 or 1
 * eventsalsa consumers list|reset|rebuild|remove ...
 * eventsalsa dead-letters list|retry ...
 * eventsalsa keys rewrap --from id --to id --key-file id=path ...
 * eventsalsa dashboard [--port 8080] [--host 127.0.0.1] [--allow-actions]
 * eventsalsa <command> --help        # any command or subcommand: its usage, exit 0
 * eventsalsa --version
 * ```
 *
 * Reads `DATABASE_URL` (and `EVENTSALSA_CONNECT_TIMEOUT`, seconds, 10 by default). A user mistake
 * (bad flag, missing or malformed `DATABASE_URL`) prints one line and exits with status 2; a failure
 * of the database (unreachable, not answering as PostgreSQL within the timeout, an SQL error) exits
 * with status 1; neither prints a stack trace, and no message contains the database password.
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
import { consumersCommand, consumersUsage } from "./cli/consumers.ts";
import { deadLettersCommand, deadLettersUsage } from "./cli/dead_letters.ts";
import { keysCommand, keysUsage } from "./cli/keys.ts";
import { dashboardCommand, dashboardUsage } from "./cli/dashboard/command.ts";
import { redactor } from "./cli/redact.ts";
import { VERSION } from "./cli/version.ts";
import { readEnv } from "./internal/env.ts";
import process from "node:process";

export type { CliIo };

const commands: Record<
  string,
  { usage: string; run: (args: string[], io: CliIo) => Promise<number> }
> = {
  migrate: { usage: migrateUsage, run: migrateCommand },
  status: { usage: statusUsage, run: statusCommand },
  consumers: { usage: consumersUsage, run: consumersCommand },
  "dead-letters": { usage: deadLettersUsage, run: deadLettersCommand },
  keys: { usage: keysUsage, run: keysCommand },
  dashboard: { usage: dashboardUsage, run: dashboardCommand },
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

/** Whether standard output is a terminal (not a pipe or a file), under Deno or Bun. */
function stdoutIsTerminal(): boolean {
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  try {
    return deno ? deno.stdout.isTerminal() === true : process.stdout.isTTY === true;
  } catch {
    return false;
  }
}

const consoleIo: CliIo = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  env: readEnv,
};

/** Whether `args` ask for help: `--help` or `-h` anywhere before a `--`. */
function asksForHelp(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

function usage(): string {
  return [
    "usage: eventsalsa <command> [options]",
    "",
    "environment: DATABASE_URL=postgres://user:password@host:5432/database",
    "             EVENTSALSA_CONNECT_TIMEOUT=seconds to wait for a usable connection (10)",
    "exit status: 0 done, 1 runtime failure (or unhealthy: status --check), 2 usage or",
    "             configuration error, 130 consumers rebuild interrupted (Ctrl-C)",
    "options: -h, --help (also after a command: its own help), --version",
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
export async function runCli(
  args: readonly string[],
  callerIo: CliIo = consoleIo,
): Promise<number> {
  // Every error line is masked: whatever a library or the server says, the password stays out.
  const redact = redactor({
    url: callerIo.env("DATABASE_URL"),
    password: callerIo.env("PGPASSWORD"),
  });
  const io: CliIo = { ...callerIo, err: (line) => callerIo.err(redact(line)) };
  const [name, ...rest] = args;
  if (name === "--version" || name === "-V" || name === "version") {
    io.out(`eventsalsa ${VERSION}`);
    return 0;
  }
  if (name === "help" && rest.length > 0 && commands[rest[0]]) {
    io.out(commands[rest[0]].usage);
    return 0;
  }
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    io.err(`eventsalsa: unknown command ${JSON.stringify(name)}; try "eventsalsa help"`);
    return 2;
  }
  // Every command and subcommand (`keys rewrap --help`, `dead-letters list -h`) answers with its
  // usage and status 0, whatever else is on the line.
  if (asksForHelp(rest)) {
    io.out(command.usage);
    return 0;
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
  const exit = (status: number): void =>
    runtime.Deno ? runtime.Deno.exit(status) : process.exit(status);
  // Last resort for a rejection nobody awaited (a library's internal query on a dropped
  // connection): one masked line and status 1, not the runtime's stack trace and `cause` dump.
  const redact = redactor({ url: readEnv("DATABASE_URL"), password: readEnv("PGPASSWORD") });
  const crash = (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`eventsalsa: unexpected error: ${redact(message.split("\n")[0])}`);
    exit(1);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
  // postgres.js reports bytes it cannot parse on the console ("Postgres.js : Unknown Message: 72");
  // the command's own error line says what happened.
  const consoleError = console.error;
  console.error = (...data: unknown[]) => {
    if (typeof data[0] === "string" && data[0].startsWith("Postgres.js : ")) return;
    consoleError(...data);
  };
  const controller = new AbortController();
  if (runtime.Deno) runtime.Deno.addSignalListener("SIGINT", () => controller.abort());
  else runtime.process.on("SIGINT", () => controller.abort());
  exit(
    await runCli(args, {
      ...consoleIo,
      signal: controller.signal,
      isTerminal: stdoutIsTerminal(),
    }),
  );
}
