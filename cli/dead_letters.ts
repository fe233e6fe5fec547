import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { run } from "../internal/postgres_query.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { retryDeadLetter } from "../worker/postgres/dead_letters.ts";
import { TABLE_OPTION_KEYS as WORKER_TABLES, workerTables } from "../worker/postgres/tables.ts";
import type { Consumer } from "../worker/types.ts";
import { connectFromEnvironment } from "./database.ts";
import { integerFlag, parseFlags, pickOptions, tableFlags } from "./flags.ts";
import { type CliIo, CliUsageError } from "./io.ts";
import { formatTable } from "./table.ts";

/** The usage line of `dead-letters`. */
export const deadLettersUsage: string =
  `eventsalsa dead-letters list [--consumer name] [--all] [--json]
eventsalsa dead-letters retry --consumer name --position n --module ./consumers.ts
  list: open dead letters (--all: also resolved and redriven ones). retry: handles the event again
  through the consumer exported by --module (a Consumer object, or an array of them), in one
  transaction with marking the dead letter redriven.`;

function isConsumer(value: unknown): value is Consumer {
  return typeof value === "object" && value !== null &&
    typeof (value as Consumer).name === "string" &&
    (typeof (value as Consumer).handle === "function" ||
      typeof (value as Consumer).handleBatch === "function");
}

async function loadConsumer(modulePath: string, name: string): Promise<Consumer> {
  const url = pathToFileURL(isAbsolute(modulePath) ? modulePath : resolve(modulePath)).href;
  let module: Record<string, unknown>;
  try {
    module = await import(url);
  } catch (error) {
    throw new CliUsageError(`cannot load --module ${modulePath}: ${(error as Error).message}`);
  }
  const candidates = Object.values(module).flatMap((value) =>
    Array.isArray(value) ? value : [value]
  )
    .filter(isConsumer);
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
    const position = integerFlag(values.position, "position");
    if (position === undefined) throw new CliUsageError("retry needs --position");
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
    const rows = await run(
      sql,
      `SELECT consumer_name, global_position, event_type, aggregate_type, aggregate_id, attempts,
        skipped, error, created_at, resolved_at, redriven_at
      FROM ${tables.deadLetters.quoted}
      WHERE ($1::text IS NULL OR consumer_name = $1)
        AND ($2 OR (skipped AND redriven_at IS NULL) OR (NOT skipped AND resolved_at IS NULL))
      ORDER BY consumer_name, global_position`,
      [typeof values.consumer === "string" ? values.consumer : null, values.all === true],
    );
    const letters = rows.map((r) => ({
      consumer: r[0] as string,
      globalPosition: toSafeNumber(r[1], "global_position"),
      eventType: r[2] as string,
      aggregate: `${r[3]}/${r[4]}`,
      attempts: r[5] as number,
      state: r[10] !== null
        ? "redriven"
        : r[9] !== null
        ? "resolved"
        : r[6]
        ? "skipped"
        : "blocking",
      error: r[7] as string,
      createdAt: (r[8] as Date).toISOString(),
    }));
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
