import type postgres from "postgres";
import { type ComponentSchema, schemaStates } from "../internal/migration.ts";
import { encryptionSchema, keyStoreTables } from "../encryption/migration.ts";
import { storeSchema } from "../store/migration.ts";
import { workerSchema } from "../worker/postgres/migration.ts";
import { status as workerStatus } from "../worker/postgres/status.ts";
import { TABLE_OPTION_KEYS as WORKER_TABLES } from "../worker/postgres/tables.ts";
import { WORKER_DEFAULTS } from "../worker/options.ts";
import type { ConsumerStatus, WorkerStatus } from "../worker/types.ts";
import { connectFromEnvironment } from "./database.ts";
import {
  integerFlag,
  nonNegativeIntegerFlag,
  parseFlags,
  pickOptions,
  tableFlags,
} from "./flags.ts";
import { type CliIo, CliUsageError, stoppedWithin } from "./io.ts";
import { schemaSummary } from "./migrate.ts";
import { formatDuration, formatTable } from "./table.ts";

/** The usage of `status`. */
export const statusUsage: string =
  `eventsalsa status [--json] [--watch] [--interval seconds] [--heartbeat-timeout ms] [table flags]
eventsalsa status --check [--max-lag n] [--allow-dead-letters] [--json] [--heartbeat-timeout ms]
  Whether the schema is at the version this library expects (behind: run migrate --apply), then
  workers, leader, assignments, per-consumer checkpoint and lag, gap waits with the blocking
  backend, dead letters.
    --json               one JSON object (the worker's status() plus "schema")
    --watch              refresh every --interval seconds (2) until interrupted: the screen is
                         cleared on a terminal; elsewhere (a pipe, a file) snapshots follow each
                         other separated by a blank line (--json: one line each)
    --heartbeat-timeout  milliseconds after which a worker counts as not live
    --check              a health check: prints "ok" and exits 0, or prints the reasons (one a
                         line) and exits 1: no live worker, a consumer lagging more than
                         --max-lag events (no lag check without it), open dead letters (blocking,
                         or skipped and not redriven) unless --allow-dead-letters.
                         --json: {ok, latestPosition, reasons: [{check, consumer, message}]}
    table flags          --events-table, the worker's and --keys-table (the encryption schema is
                         checked when its keys table exists), as for migrate`;

/**
 * The encryption table flags, as library option names.
 *
 * @example
 * ```ts
 * import { tableFlags } from "./flags.ts";
 * const flags = tableFlags(KEY_TABLES); // --keys-table, --keys-tombstone-table
 * ```
 */
export const KEY_TABLES: readonly string[] = ["keysTable", "keysTombstoneTable"];

/**
 * The schemas status checks: store and worker, and encryption when its keys table exists (the
 * dashboard checks the same).
 *
 * @example
 * ```ts
 * import { schemaStates } from "../internal/migration.ts";
 * declare const sql: import("postgres").Sql;
 * const states = await schemaStates(sql, await checkedSchemas(sql, { "events-table": "events" }));
 * ```
 */
export async function checkedSchemas(
  sql: postgres.Sql,
  values: Record<string, unknown>,
): Promise<ComponentSchema[]> {
  const schemas = [
    storeSchema(pickOptions(values, ["eventsTable"])),
    workerSchema(pickOptions(values, WORKER_TABLES)),
  ];
  const picked = pickOptions(values, KEY_TABLES);
  const keys = { table: picked.keysTable, tombstoneTable: picked.keysTombstoneTable };
  const [[exists]] = await sql.unsafe("SELECT to_regclass($1) IS NOT NULL", [
    keyStoreTables(keys).keys.quoted,
  ]).values();
  if (exists === true) schemas.push(encryptionSchema(keys));
  return schemas;
}

/** Renders a status snapshot for people. */
export function renderStatus(report: WorkerStatus, now: Date = new Date()): string[] {
  const leader = report.leader;
  const lines = [
    `latest position ${report.latestPosition}; ${report.workers.length} worker(s), ` +
    `${report.consumers.length} consumer(s); leader ` +
    (leader === null
      ? "none"
      : `${leader.workerId} (${leader.strategy}, since ${leader.since.toISOString()}` +
        (leader.expiresAt === null ? ")" : `, lease until ${leader.expiresAt.toISOString()})`)),
    "",
    "WORKERS",
    ...formatTable(
      ["worker", "live", "last heartbeat", "consumers"],
      report.workers.map((w) => [
        w.workerId,
        w.live ? "yes" : "NO",
        `${formatDuration(Math.max(0, now.getTime() - w.heartbeatAt.getTime()))} ago`,
        w.consumers.join(",") || "-",
      ]),
    ).map((l) => `  ${l}`),
    "",
    "CONSUMERS",
    ...formatTable(
      ["consumer", "worker", "checkpoint", "lag", "dead letters", "gap skips", "waiting on gap"],
      report.consumers.map((c) => [
        c.name,
        c.workerId ?? "(unassigned)",
        String(c.checkpoint),
        String(c.lag),
        deadLettersCell(c),
        String(c.gapSkips),
        c.gap === null ? "-" : `at ${c.gap.position} for ${formatDuration(c.gap.waitingMs)}`,
      ]),
    ).map((l) => `  ${l}`),
  ];
  const gaps = report.consumers.filter((c) => c.gap !== null);
  if (gaps.length > 0) {
    lines.push("", "GAP WAITS (transactions that may still commit the missing positions)");
    for (const c of gaps) {
      lines.push(`  ${c.name} waits at position ${c.gap!.position}:`);
      if (c.gap!.blockers.length === 0) lines.push("    (no blocking backend seen; resolving)");
      for (const b of c.gap!.blockers) {
        lines.push(
          `    pid ${b.pid ?? "?"} xid ${b.xid ?? "?"}` +
            (b.database ? ` in database ${JSON.stringify(b.database)}` : "") +
            (b.transactionAgeMs === null
              ? ""
              : `, transaction ${formatDuration(b.transactionAgeMs)} old`) +
            (b.state ? `, ${b.state}` : "") +
            (b.applicationName ? `, application ${JSON.stringify(b.applicationName)}` : "") +
            (b.query ? `: ${b.query.replace(/\s+/g, " ").slice(0, 100)}` : ""),
        );
      }
    }
  }
  return lines;
}

/**
 * Why `status --check` fails: the check (`workers`, `lag`, `dead-letters`), the consumer it is
 * about (null for the fleet) and a line for people.
 *
 * @example
 * ```ts
 * const line = (r: HealthReason) => `${r.check}: ${r.message}`;
 * ```
 */
export interface HealthReason {
  check: "workers" | "lag" | "dead-letters";
  consumer: string | null;
  message: string;
}

/**
 * The reasons a status snapshot is not healthy (none: healthy): no live worker; a consumer whose
 * lag exceeds `maxLag` (when given); a consumer with open dead letters unless
 * `allowDeadLetters`.
 *
 * @example
 * ```ts
 * import { status } from "../worker/postgres/status.ts";
 * declare const sql: import("postgres").Sql;
 * const reasons = healthReasons(await status(sql), { maxLag: 1000, allowDeadLetters: false });
 * console.log(reasons.length === 0 ? "ok" : reasons.map((r) => r.message).join("\n"));
 * ```
 */
export function healthReasons(
  report: WorkerStatus,
  options: { maxLag?: number; allowDeadLetters: boolean; heartbeatTimeout?: number },
): HealthReason[] {
  const reasons: HealthReason[] = [];
  if (!report.workers.some((w) => w.live)) {
    reasons.push({
      check: "workers",
      consumer: null,
      message: report.workers.length === 0
        ? "no live worker: none is registered"
        : `no live worker: ${report.workers.length} registered, none with a heartbeat in the ` +
          `last ${options.heartbeatTimeout ?? WORKER_DEFAULTS.heartbeatTimeout} ms`,
    });
  }
  for (const c of report.consumers) {
    if (options.maxLag !== undefined && c.lag > options.maxLag) {
      reasons.push({
        check: "lag",
        consumer: c.name,
        message: `consumer ${c.name} lags ${c.lag} events behind position ` +
          `${report.latestPosition} (more than --max-lag ${options.maxLag})`,
      });
    }
    const open = c.deadLetters.blocking + c.deadLetters.skipped;
    if (!options.allowDeadLetters && open > 0) {
      reasons.push({
        check: "dead-letters",
        consumer: c.name,
        message: `consumer ${c.name} has ${open} open dead letter(s): ` +
          `${c.deadLetters.blocking} blocking, ${c.deadLetters.skipped} skipped ` +
          `(eventsalsa dead-letters list --consumer ${c.name})`,
      });
    }
  }
  return reasons;
}

/** `eventsalsa status`. */
export async function statusCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, {
    json: { type: "boolean" },
    watch: { type: "boolean" },
    interval: { type: "string" },
    "heartbeat-timeout": { type: "string" },
    check: { type: "boolean" },
    "max-lag": { type: "string" },
    "allow-dead-letters": { type: "boolean" },
    ...tableFlags(["eventsTable", ...WORKER_TABLES, ...KEY_TABLES]),
  });
  const interval = integerFlag(values.interval, "interval", 2)!;
  const options = {
    ...pickOptions(values, ["eventsTable", ...WORKER_TABLES]),
    heartbeatTimeout: integerFlag(values["heartbeat-timeout"], "heartbeat-timeout"),
  };
  const maxLag = nonNegativeIntegerFlag(values["max-lag"], "max-lag");
  if (values.check !== true) {
    if (maxLag !== undefined) throw new CliUsageError("--max-lag goes with --check");
    if (values["allow-dead-letters"]) {
      throw new CliUsageError("--allow-dead-letters goes with --check");
    }
  } else if (values.watch) {
    throw new CliUsageError("--check and --watch exclude each other");
  }
  const sql: postgres.Sql = await connectFromEnvironment(io);
  try {
    if (values.check) {
      const report = await workerStatus(sql, options);
      const reasons = healthReasons(report, {
        maxLag,
        allowDeadLetters: values["allow-dead-letters"] === true,
        heartbeatTimeout: options.heartbeatTimeout,
      });
      if (values.json) {
        io.out(JSON.stringify({
          ok: reasons.length === 0,
          latestPosition: report.latestPosition,
          reasons,
        }));
      } else if (reasons.length === 0) {
        io.out("ok");
      } else {
        for (const reason of reasons) io.out(reason.message);
      }
      return reasons.length === 0 ? 0 : 1;
    }
    const schemas = await checkedSchemas(sql, values);
    for (let snapshot = 0;; snapshot++) {
      const states = await schemaStates(sql, schemas);
      const report = await workerStatus(sql, options);
      // Dates serialise as ISO strings through their toJSON.
      const text = values.json
        ? [JSON.stringify({
          ...report,
          schema: {
            upToDate: states.every((s) => s.pending.length === 0 && !s.ahead),
            components: states,
          },
        })]
        : [schemaSummary(states), ...renderStatus(report)];
      if (values.watch && !values.json) {
        // Escape codes only for a terminal; a pipe or a log file gets plain snapshots.
        if (io.isTerminal) io.out("\x1b[2J\x1b[H" + new Date().toISOString());
        else io.out((snapshot > 0 ? "\n" : "") + new Date().toISOString());
      }
      for (const line of text) io.out(line);
      if (!values.watch || io.signal?.aborted) return 0;
      if (await stoppedWithin(io, interval * 1000)) return 0;
    }
  } finally {
    await sql.end();
  }
}

/** A consumer's open dead letters as one table cell ("-" for none). */
export function deadLettersCell(c: ConsumerStatus): string {
  const { blocking, skipped } = c.deadLetters;
  return blocking + skipped === 0 ? "-" : `${blocking} blocking, ${skipped} skipped`;
}
