import { readFile } from "node:fs/promises";
import { createEncryption } from "../encryption/encryption.ts";
import { keyringFromEnv } from "../encryption/keyring.ts";
import { PostgresKeyStore } from "../encryption/postgres_key_store.ts";
import type { RewrapFailure, RewrapResult } from "../encryption/rewrap.ts";
import { connectFromEnvironment } from "./database.ts";
import { integerFlag, parseFlags } from "./flags.ts";
import { type CliIo, CliUsageError } from "./io.ts";

/** The usage of `keys`. */
export const keysUsage: string =
  `eventsalsa keys rewrap --from id --to id (--key-file id=path | --key-env id=VARIABLE)...
    [--batch-size n] [--dry-run] [--json] [--table name] [--tombstone-table name]
  Moves every data key wrapped under system key --from to --to, in batches (FOR UPDATE SKIP LOCKED;
  an interrupted run keeps its batches, rerun it to finish). Both system keys must be given as
  standard-base64 32-byte keys. Prints a line per batch and the totals; rows that cannot be
  rewrapped are summarised per kind of failure, with the first few rows of each. --dry-run checks
  every row and writes nothing. Exit 0 when nothing failed, 1 otherwise.`;

/** Rows named per kind of failure. */
const EXAMPLES_PER_KIND = 3;

/** Failures grouped by what went wrong: the error's name and its reason, without the subject. */
export interface FailureKind {
  readonly kind: string;
  count: number;
  readonly examples: string[];
}

function kindOf(error: Error): string {
  const reason = (error as { reason?: unknown }).reason;
  if (typeof reason === "string") return `${error.name}: ${reason}`;
  // Key errors append the subject ("...: scope/id v1"); the subject is in the examples instead.
  return `${error.name}: ${error.message.replace(/: [^:]*$/, "")}`;
}

/** Groups failures by kind, counting all of them and keeping the first few rows of each. */
export function failureSummary(): {
  add(failure: RewrapFailure): void;
  readonly kinds: FailureKind[];
} {
  const kinds: FailureKind[] = [];
  return {
    kinds,
    add(failure) {
      const kind = kindOf(failure.error);
      let entry = kinds.find((k) => k.kind === kind);
      if (!entry) kinds.push(entry = { kind, count: 0, examples: [] });
      entry.count++;
      if (entry.examples.length < EXAMPLES_PER_KIND) {
        entry.examples.push(`${failure.scope}/${failure.scopeId} v${failure.keyVersion}`);
      }
    },
  };
}

function pairs(values: unknown, flag: string): Array<[string, string]> {
  const list = Array.isArray(values) ? values as string[] : [];
  return list.map((entry) => {
    const at = entry.indexOf("=");
    if (at <= 0 || at === entry.length - 1) {
      throw new CliUsageError(`--${flag} takes id=value, got ${JSON.stringify(entry)}`);
    }
    return [entry.slice(0, at), entry.slice(at + 1)];
  });
}

/** `eventsalsa keys rewrap`. */
export async function keysCommand(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  if (action !== "rewrap") {
    throw new CliUsageError(`keys needs "rewrap", got ${JSON.stringify(action ?? "")}`);
  }
  const { values } = parseFlags(rest, {
    from: { type: "string" },
    to: { type: "string" },
    "key-file": { type: "string", multiple: true },
    "key-env": { type: "string", multiple: true },
    "batch-size": { type: "string" },
    "dry-run": { type: "boolean" },
    json: { type: "boolean" },
    table: { type: "string" },
    "tombstone-table": { type: "string" },
  });
  if (typeof values.from !== "string" || typeof values.to !== "string") {
    throw new CliUsageError("rewrap needs --from and --to (system key ids)");
  }
  // Files and variables both go through the one validating loader: file contents are handed to it
  // as if they were environment variables.
  const variables: Record<string, string> = {};
  const environment: Record<string, string | undefined> = {};
  for (const [id, path] of pairs(values["key-file"], "key-file")) {
    try {
      environment[`file:${id}`] = await readFile(path, "utf8");
    } catch (error) {
      throw new CliUsageError(
        `cannot read system key ${id} from ${path}: ${(error as Error).message}`,
      );
    }
    variables[id] = `file:${id}`;
  }
  for (const [id, name] of pairs(values["key-env"], "key-env")) {
    environment[name] = io.env(name);
    variables[id] = name;
  }
  for (const id of [values.from, values.to]) {
    if (!(id in variables)) {
      throw new CliUsageError(
        `system key ${JSON.stringify(id)} is not given (--key-file or --key-env)`,
      );
    }
  }
  const keyring = keyringFromEnv({ variables, activeKeyId: values.to, env: environment });
  const store = new PostgresKeyStore({
    table: typeof values.table === "string" ? values.table : undefined,
    tombstoneTable: typeof values["tombstone-table"] === "string"
      ? values["tombstone-table"]
      : undefined,
  });
  const encryption = createEncryption({ keyring, store });
  const dryRun = values["dry-run"] === true;
  const summary = failureSummary();
  // Batches done: committed ones, or checked ones in a dry run (the library's result counts
  // committed batches only, so a dry run's would say 0 where the progress lines say "batch 1").
  let batches = 0;
  const sql = await connectFromEnvironment(io);
  let result: RewrapResult;
  try {
    result = await encryption.keyManager.rewrapSystemKeys(sql, {
      from: values.from,
      to: values.to,
      batchSize: integerFlag(values["batch-size"], "batch-size"),
      dryRun,
      onRowError: (failure) => summary.add(failure),
      onProgress: (p) => {
        batches = p.batches;
        if (values.json) return;
        io.out(
          `${dryRun ? "dry run " : ""}batch ${p.batches}: ${p.matchedRows} matched, ` +
            `${p.rewrappedRows} rewrapped, ${p.skippedRows} skipped, ${p.failedRows} failed`,
        );
      },
    });
  } finally {
    await sql.end();
  }
  if (values.json) {
    io.out(JSON.stringify({
      ...result,
      batches,
      failureKinds: summary.kinds,
      failures: result.failures.map((f) => ({
        scope: f.scope,
        scopeId: f.scopeId,
        keyVersion: f.keyVersion,
        error: f.error.message,
      })),
    }));
  } else {
    io.out(
      `${dryRun ? "dry run: " : ""}${result.matchedRows} matched, ${result.rewrappedRows} ` +
        `rewrapped, ${result.skippedRows} skipped, ${result.failedRows} failed, ` +
        `${result.remainingRows} still under ${values.from}, in ${batches} batch(es)`,
    );
    for (const kind of summary.kinds) {
      const more = kind.count - kind.examples.length;
      io.err(
        `failed ${kind.count} row(s): ${kind.kind} (e.g. ${kind.examples.join(", ")}` +
          `${more > 0 ? ` and ${more} more` : ""})`,
      );
    }
  }
  return result.failedRows === 0 ? 0 : 1;
}
