import type { CliIo } from "./io.ts";

/** A {@link CliIo} that records output, for running the CLI in-process (tests, scripts). */
export interface CapturedIo extends CliIo {
  readonly lines: string[];
  readonly errors: string[];
}

/** Records `out`/`err` lines; `env` answers from the given variables only. */
export function captureIo(env: Record<string, string> = {}): CapturedIo {
  const lines: string[] = [];
  const errors: string[] = [];
  return {
    lines,
    errors,
    out: (line) => lines.push(line),
    err: (line) => errors.push(line),
    env: (name) => env[name],
  };
}
