/** Where the CLI writes, and the errors it reports as one line. */
import { systemClock } from "../internal/clock.ts";
import { pause } from "../worker/core/wakeup.ts";

/** Output sinks, injectable so tests run the CLI in-process. */
export interface CliIo {
  /** A line of normal output. */
  out(line: string): void;
  /** A line of error output. */
  err(line: string): void;
  /** An environment variable. */
  env(name: string): string | undefined;
  /** Aborts long-running commands (`status --watch`); Ctrl-C in the real CLI. */
  signal?: AbortSignal;
  /**
   * Whether `out` goes to a terminal: `status --watch` clears the screen only then, and prints
   * plain snapshots separated by a blank line otherwise (a pipe, a file). False when omitted.
   */
  isTerminal?: boolean;
}

/** A user mistake (bad flag, missing DATABASE_URL): printed as one line, exit code 2. */
export class CliUsageError extends Error {
  /** Stable error name. */
  override readonly name: string = "CliUsageError";
}

/** Waits `ms`, or less when the user stops the command (Ctrl-C): true when stopped. */
export async function stoppedWithin(io: CliIo, ms: number): Promise<boolean> {
  return !await pause(systemClock, ms, io.signal ?? new AbortController().signal);
}
