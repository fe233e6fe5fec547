import type postgres from "postgres";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { run } from "../internal/postgres_query.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { retryDeadLetter, retryDeadLetters } from "../worker/postgres/dead_letters.ts";
import {
  TABLE_OPTION_KEYS as WORKER_TABLES,
  type WorkerTables,
  workerTables,
} from "../worker/postgres/tables.ts";
import type { Consumer } from "../worker/types.ts";
import { connectFromEnvironment } from "./database.ts";
import { type FlagValues, integerFlag, parseFlags, pickOptions, tableFlags } from "./flags.ts";
import { type CliIo, CliUsageError } from "./io.ts";
import { redactor } from "./redact.ts";
import { formatTable } from "./table.ts";

/** The usage of `dead-letters`. */
export const deadLettersUsage: string =
  `eventsalsa dead-letters list [--consumer name] [--all] [--json] [table flags]
eventsalsa dead-letters retry --consumer name --position n --module ./consumers.ts [table flags]
eventsalsa dead-letters retry --consumer name --all --module ./consumers.ts [--json] [table flags]
  list: open dead letters, blocking and skipped (--all: also resolved and redriven ones);
        --consumer narrows it to one consumer, which must exist (a checkpoint, an assignment or a
        dead letter): an unknown name is an error (exit 2), not an empty list.
  retry: handles the event again through the consumer exported by --module (a Consumer object,
        or an array of them), in one transaction with marking the dead letter redriven.
        --all: every skipped dead letter of the consumer not yet redriven, one by one (each in
        its own transaction), going on past failures; then a summary: redriven, failed (with
        their errors), total. Exit 1 when any failed (--json: {consumer, total, redriven,
        failed: [{position, error}]}).
    table flags          --events-table --heads-table and the worker's, as for migrate`;

function isConsumer(value: unknown): value is Consumer {
  return typeof value === "object" && value !== null &&
    typeof (value as Consumer).name === "string" &&
    (typeof (value as Consumer).handle === "function" ||
      typeof (value as Consumer).handleBatch === "function");
}

/**
 * The consumers a module of yours exports (as objects or in arrays), for `dead-letters retry` and
 * the dashboard's redrive action.
 *
 * @example
 * ```ts
 * const consumers = await loadConsumers("./src/consumers.ts");
 * console.log(consumers.map((c) => c.name));
 * ```
 */
export async function loadConsumers(modulePath: string): Promise<Consumer[]> {
  const url = pathToFileURL(isAbsolute(modulePath) ? modulePath : resolve(modulePath)).href;
  let module: Record<string, unknown>;
  try {
    module = await import(url);
  } catch (error) {
    throw new CliUsageError(`cannot load --module ${modulePath}: ${(error as Error).message}`);
  }
  return Object.values(module).flatMap((value) => Array.isArray(value) ? value : [value])
    .filter(isConsumer);
}

/**
 * The consumer named `name` that `modulePath` exports; a usage error (exit 2) naming the ones it
 * does export otherwise.
 *
 * @example
 * ```ts
 * const consumer = await loadConsumer("./src/consumers.ts", "orders_view");
 * ```
 */
export async function loadConsumer(modulePath: string, name: string): Promise<Consumer> {
  const candidates = await loadConsumers(modulePath);
  const found = candidates.find((consumer) => consumer.name === name);
  if (!found) {
    const names = candidates.map((c) => c.name);
    throw new CliUsageError(
      `--module ${modulePath} exports no consumer named ${JSON.stringify(name)}` +
        (names.length ? ` (it exports: ${names.join(", ")})` : " (it exports no consumers)"),
    );
  }
  return found;
}

/**
 * A dead letter as `dead-letters list` and the dashboard show it.
 *
 * @example
 * ```ts
 * const line = (l: DeadLetterRow) => `${l.consumer} ${l.globalPosition} ${l.state}: ${l.error}`;
 * ```
 */
export interface DeadLetterRow {
  consumer: string;
  globalPosition: number;
  eventType: string;
  /** `aggregateType/aggregateId`. */
  aggregate: string;
  attempts: number;
  state: "blocking" | "skipped" | "resolved" | "redriven";
  /** The handler's error as recorded. */
  error: string;
  /** ISO timestamp. */
  createdAt: string;
}

/**
 * Dead letters, ordered by consumer and position: the open ones (blocking, or skipped and not
 * redriven), or with `all` every one; of one consumer when `consumer` is given; at most `limit`.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import { workerTables } from "../worker/postgres/tables.ts";
 * const sql = postgres("postgres://postgres@127.0.0.1:5432/test");
 * const open = await listDeadLetters(sql, workerTables(), { limit: 100 });
 * ```
 */
export async function listDeadLetters(
  sql: postgres.Sql,
  tables: WorkerTables,
  options: { consumer?: string; all?: boolean; limit?: number } = {},
): Promise<DeadLetterRow[]> {
  const rows = await run(
    sql,
    `SELECT consumer_name, global_position, event_type, aggregate_type, aggregate_id, attempts,
      skipped, error, created_at, resolved_at, redriven_at
    FROM ${tables.deadLetters.quoted}
    WHERE ($1::text IS NULL OR consumer_name = $1)
      AND ($2 OR (skipped AND redriven_at IS NULL) OR (NOT skipped AND resolved_at IS NULL))
    ORDER BY consumer_name, global_position
    LIMIT $3`,
    [options.consumer ?? null, options.all === true, options.limit ?? null],
  );
  return rows.map((r) => ({
    consumer: r[0] as string,
    globalPosition: toSafeNumber(r[1], "global_position"),
    eventType: r[2] as string,
    aggregate: `${r[3]}/${r[4]}`,
    attempts: r[5] as number,
    state: r[10] !== null ? "redriven" : r[9] !== null ? "resolved" : r[6] ? "skipped" : "blocking",
    error: r[7] as string,
    createdAt: (r[8] as Date).toISOString(),
  }));
}

/**
 * Fails with `no such consumer "name"` (exit 2) unless the worker's tables know the consumer: a
 * checkpoint, an assignment or a dead letter names it. Lists the known names.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import { workerTables } from "../worker/postgres/tables.ts";
 * const sql = postgres("postgres://postgres@127.0.0.1:5432/test");
 * await checkConsumer(sql, workerTables(), "orders_view");
 * ```
 */
export async function checkConsumer(
  sql: postgres.Sql,
  tables: WorkerTables,
  name: string,
): Promise<void> {
  const named = (table: string) => `SELECT consumer_name FROM ${table}`;
  const union = [tables.checkpoints, tables.assignments, tables.deadLetters]
    .map((t) => named(t.quoted)).join(" UNION ");
  const [[found]] = await run(
    sql,
    `SELECT EXISTS (SELECT 1 FROM (${union}) AS known WHERE consumer_name = $1)`,
    [name],
  );
  if (found === true) return;
  const known = (await run(sql, `${union} ORDER BY 1 LIMIT 11`)).map((r) => r[0] as string);
  throw new CliUsageError(
    `no such consumer ${JSON.stringify(name)}` +
      (known.length === 0
        ? " (no consumer has run against these tables)"
        : ` (known: ${known.slice(0, 10).join(", ")}${known.length > 10 ? ", ..." : ""})`),
  );
}

/** `eventsalsa dead-letters list|retry`. */
export async function deadLettersCommand(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  if (action !== "list" && action !== "retry") {
    throw new CliUsageError(
      `dead-letters needs "list" or "retry", got ${JSON.stringify(action ?? "")}`,
    );
  }
  const { values } = parseFlags(rest, {
    consumer: { type: "string" },
    all: { type: "boolean" },
    json: { type: "boolean" },
    position: { type: "string" },
    module: { type: "string" },
    ...tableFlags(["eventsTable", "headsTable", ...WORKER_TABLES]),
  });
  const tableOptions = pickOptions(values, WORKER_TABLES);
  const tables = workerTables(tableOptions);
  if (action === "retry") {
    if (typeof values.consumer !== "string") throw new CliUsageError("retry needs --consumer");
    if (typeof values.module !== "string") throw new CliUsageError("retry needs --module");
    if (values.all === true) {
      if (values.position !== undefined) {
        throw new CliUsageError("retry takes --position or --all, not both");
      }
      return await retryAll(values, values.consumer, values.module, io);
    }
    if (values.json === true) throw new CliUsageError("--json goes with retry --all");
    const position = integerFlag(values.position, "position");
    if (position === undefined) throw new CliUsageError("retry needs --position (or --all)");
    const consumer = await loadConsumer(values.module, values.consumer);
    const sql = await connectFromEnvironment(io);
    try {
      const store = new PostgresStore(pickOptions(values, ["eventsTable", "headsTable"]));
      const event = await retryDeadLetter(sql, store, consumer, position, tableOptions);
      io.out(`redriven: ${consumer.name} handled ${event.eventType} at position ${position}`);
    } finally {
      await sql.end();
    }
    return 0;
  }
  const sql = await connectFromEnvironment(io);
  try {
    if (typeof values.consumer === "string") await checkConsumer(sql, tables, values.consumer);
    const letters = await listDeadLetters(sql, tables, {
      consumer: typeof values.consumer === "string" ? values.consumer : undefined,
      all: values.all === true,
    });
    if (values.json) {
      io.out(JSON.stringify(letters));
    } else if (letters.length === 0) {
      io.out(values.all ? "no dead letters" : "no open dead letters");
    } else {
      for (
        const line of formatTable(
          ["consumer", "position", "state", "event", "aggregate", "attempts", "error"],
          letters.map((l) => [
            l.consumer,
            String(l.globalPosition),
            l.state,
            l.eventType,
            l.aggregate,
            String(l.attempts),
            l.error.split("\n")[0].slice(0, 80),
          ]),
        )
      ) io.out(line);
    }
    return 0;
  } finally {
    await sql.end();
  }
}

/** `dead-letters retry --all`: every open skipped dead letter of one consumer, then a summary. */
async function retryAll(
  values: FlagValues,
  name: string,
  modulePath: string,
  io: CliIo,
): Promise<number> {
  const consumer = await loadConsumer(modulePath, name);
  const tableOptions = pickOptions(values, WORKER_TABLES);
  // Handler errors are the application's text: masked like every message the CLI prints.
  const redact = redactor({ url: io.env("DATABASE_URL"), password: io.env("PGPASSWORD") });
  const sql = await connectFromEnvironment(io);
  try {
    // A partitioned consumer's rows are its partitions' (`name#0of4` …), not its own.
    if ((consumer.partitions ?? 1) === 1) {
      await checkConsumer(sql, workerTables(tableOptions), name);
    }
    const store = new PostgresStore(pickOptions(values, ["eventsTable", "headsTable"]));
    const result = await retryDeadLetters(sql, store, consumer, tableOptions);
    const failed = result.failed.map((f) => ({ position: f.position, error: redact(f.error) }));
    const total = result.redriven.length + failed.length;
    if (values.json) {
      io.out(JSON.stringify({ consumer: name, total, redriven: result.redriven, failed }));
    } else if (total === 0) {
      io.out(`${name}: no skipped dead letters to redrive`);
    } else {
      if (result.redriven.length > 0) {
        io.out(`redriven: position(s) ${result.redriven.join(", ")}`);
      }
      for (const f of failed) {
        io.out(`failed: position ${f.position}: ${f.error.split("\n")[0].slice(0, 300)}`);
      }
      io.out(
        `${name}: ${result.redriven.length} redriven, ${failed.length} failed, ${total} total` +
          (failed.length > 0 ? " (the failed ones stay open)" : ""),
      );
    }
    return failed.length > 0 ? 1 : 0;
  } finally {
    await sql.end();
  }
}
