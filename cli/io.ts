/** Where the CLI writes, and the errors it reports as one line. */

/** Output sinks, injectable so tests run the CLI in-process. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  env(name: string): string | undefined;
}

/** A user mistake (bad flag, missing DATABASE_URL): printed as one line, exit code 2. */
export class CliUsageError extends Error {
  /** Stable error name. */
  override readonly name: string = "CliUsageError";
}
