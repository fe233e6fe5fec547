import { parseArgs } from "node:util";
import { CliUsageError } from "./io.ts";

/** `workerNodesTable` → `worker-nodes-table`. */
export function kebab(optionName: string): string {
  return optionName.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** parseArgs options for table-name flags named after library options. */
export function tableFlags(
  optionNames: readonly string[],
): Record<string, { type: "string" }> {
  return Object.fromEntries(optionNames.map((name) => [kebab(name), { type: "string" as const }]));
}

/** Picks the library options (camelCase) that were given as flags (kebab-case). */
export function pickOptions(
  values: Record<string, unknown>,
  optionNames: readonly string[],
): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of optionNames) {
    const value = values[kebab(name)];
    if (typeof value === "string") picked[name] = value;
  }
  return picked;
}

/** Parsed flag values. */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Flag definitions for {@link parseFlags} (node:util parseArgs options). */
export type FlagSpec = Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: boolean }
>;

/** Strict flag parsing; a bad flag is a usage error (one line, exit 2). */
export function parseFlags(
  args: string[],
  options: FlagSpec,
  positionals = false,
): { values: FlagValues; positionals: string[] } {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: positionals, strict: true });
    return {
      values: parsed.values as FlagValues,
      positionals: parsed.positionals,
    };
  } catch (error) {
    throw new CliUsageError((error as Error).message);
  }
}

/** A positive integer flag, or `fallback` when absent. */
export function integerFlag(value: unknown, flag: string, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !Number.isSafeInteger(n) || n < 1) {
    throw new CliUsageError(`--${flag} must be a positive integer, got ${String(value)}`);
  }
  return n;
}

/** A non-negative integer flag (0 allowed), or undefined when absent. */
export function nonNegativeIntegerFlag(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new CliUsageError(`--${flag} must be a non-negative integer, got ${String(value)}`);
  }
  return n;
}

/** A number of seconds above 0 (fractions allowed), or undefined when absent. */
export function secondsFlag(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== "string" || value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new CliUsageError(`--${flag} must be a number of seconds above 0, got ${String(value)}`);
  }
  return n;
}
