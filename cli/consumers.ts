import type postgres from "postgres";
import { run } from "../internal/postgres_query.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import { WORKER_DEFAULTS } from "../worker/options.ts";
import { resetConsumer } from "../worker/postgres/reset.ts";
import { status as workerStatus } from "../worker/postgres/status.ts";
import { checkpointReader } from "../worker/postgres/wait.ts";
import { runningNames } from "../worker/core/partitions.ts";
import { TABLE_OPTION_KEYS as WORKER_TABLES, workerTables } from "../worker/postgres/tables.ts";
import type { Consumer, ConsumerStatus, WorkerStatus } from "../worker/types.ts";
import { connectFromEnvironment } from "./database.ts";
import { checkConsumer, loadConsumer } from "./dead_letters.ts";
import {
  type FlagSpec,
  type FlagValues,
  integerFlag,
  nonNegativeIntegerFlag,
  parseFlags,
  pickOptions,
  secondsFlag,
  tableFlags,
} from "./flags.ts";
import { type CliIo, CliUsageError, stoppedWithin } from "./io.ts";
import { deadLettersCell } from "./status.ts";
import {
  progressBar,
  progressLine,
  RateMeter,
  type RebuildProgress,
  rebuildProgress,
} from "./progress.ts";
import { formatDuration, formatTable } from "./table.ts";

/** The usage of `consumers`. */
export const consumersUsage: string =
  `eventsalsa consumers list [--json] [--heartbeat-timeout ms] [table flags]
eventsalsa consumers reset NAME (--module ./consumers.ts | --checkpoint-only) [--to-position n]
                           [--json] [table flags]
eventsalsa consumers rebuild NAME (--module ./consumers.ts | --checkpoint-only) [--no-wait]
                             [--timeout seconds] [--heartbeat-timeout ms] [--json] [table flags]
eventsalsa consumers remove NAME [--json] [--heartbeat-timeout ms] [table flags]
  list: every consumer: the worker that owns it, its checkpoint, lag, gap wait and open dead
        letters (--json: {latestPosition, consumers: [...]}, each as in status --json).
  reset: moves the checkpoint to --to-position (0 when omitted), safely while the fleet runs (it
        waits for a running batch of the consumer); dead letters after the position are
        forgotten. --module (a file exporting the consumer, as for dead-letters retry) runs the
        consumer's reset hook in the same transaction, clearing its read model. Without --module
        the read model is NOT cleared: say so with --checkpoint-only. Prints "from → to".
  rebuild: reset to 0 (same --module / --checkpoint-only rule), then follow the consumer until
        its checkpoint reaches the latest position as it was when the rebuild started: a progress
        bar on a terminal, a line every 5 s elsewhere; --json: one object per tick (~500 ms) and
        a final one. Exit 0 once caught up; 1 after --timeout seconds (default: wait for ever);
        130 on Ctrl-C. Neither undoes the reset: the workers carry on. --no-wait: only reset.
  remove: forgets a retired consumer: its checkpoint, assignment, dead letters and gap-skip
        audit rows (not your read model's tables). Refused (exit 1) while a live worker
        registers it: stop deploying it first.
    --heartbeat-timeout  milliseconds after which a worker counts as not live (30000)
    table flags          --events-table and the worker's, as for migrate`;

const TABLE_FLAGS = tableFlags(["eventsTable", ...WORKER_TABLES]);

/** How often rebuild reads the checkpoint, and how often it prints a plain line. */
const TICK_MS = 500;
const PLAIN_LINE_MS = 5_000;

/** `eventsalsa consumers list|reset|rebuild|remove`. */
export async function consumersCommand(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  switch (action) {
    case "list":
      return await listCommand(rest, io);
    case "reset":
    case "rebuild":
      return await resetCommand(action, rest, io);
    case "remove":
      return await removeCommand(rest, io);
    default:
      throw new CliUsageError(
        `consumers needs "list", "reset", "rebuild" or "remove", got ${
          JSON.stringify(action ?? "")
        }`,
      );
  }
}

/** The one NAME a subcommand takes. */
function consumerName(action: string, positionals: string[]): string {
  if (positionals.length !== 1 || positionals[0] === "") {
    throw new CliUsageError(
      positionals.length === 0
        ? `consumers ${action} needs the consumer's name`
        : `consumers ${action} takes one consumer name, got ${positionals.length}`,
    );
  }
  return positionals[0];
}

function heartbeatTimeout(values: FlagValues): number {
  return integerFlag(values["heartbeat-timeout"], "heartbeat-timeout") ??
    WORKER_DEFAULTS.heartbeatTimeout;
}

/** The owner column: the worker, marked when it is not live, or `(unassigned)`. */
function owner(consumer: ConsumerStatus, report: WorkerStatus): string {
  if (consumer.workerId === null) return "(unassigned)";
  const live = report.workers.some((w) => w.workerId === consumer.workerId && w.live);
  return live ? consumer.workerId : `${consumer.workerId} (not live)`;
}

async function listCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, {
    json: { type: "boolean" },
    "heartbeat-timeout": { type: "string" },
    ...TABLE_FLAGS,
  });
  const options = {
    ...pickOptions(values, ["eventsTable", ...WORKER_TABLES]),
    heartbeatTimeout: heartbeatTimeout(values),
  };
  const sql = await connectFromEnvironment(io);
  try {
    const report = await workerStatus(sql, options);
    if (values.json) {
      // Dates serialise as ISO strings through their toJSON.
      io.out(JSON.stringify({
        latestPosition: report.latestPosition,
        consumers: report.consumers.map((c) => ({
          ...c,
          ownerLive: c.workerId === null
            ? null
            : report.workers.some((w) => w.workerId === c.workerId && w.live),
        })),
      }));
      return 0;
    }
    if (report.consumers.length === 0) {
      io.out("no consumers (none has run against these tables)");
      return 0;
    }
    io.out(`latest position ${report.latestPosition}`);
    for (
      const line of formatTable(
        ["consumer", "worker", "checkpoint", "lag", "gap wait", "dead letters"],
        report.consumers.map((c) => [
          c.name,
          owner(c, report),
          String(c.checkpoint),
          String(c.lag),
          c.gap === null ? "-" : `at ${c.gap.position} for ${formatDuration(c.gap.waitingMs)} ` +
            `(${c.gap.blockers.length} blocker(s))`,
          deadLettersCell(c),
        ]),
      )
    ) io.out(line);
    return 0;
  } finally {
    await sql.end();
  }
}

/**
 * The consumer definition whose reset hook clears the read model (`--module`), or undefined with
 * `--checkpoint-only`; exactly one of the two must be given.
 */
async function resetDefinition(
  action: string,
  values: FlagValues,
  name: string,
): Promise<Consumer | undefined> {
  const modulePath = values.module;
  const checkpointOnly = values["checkpoint-only"] === true;
  if (typeof modulePath === "string" && checkpointOnly) {
    throw new CliUsageError(
      "--module and --checkpoint-only exclude each other: with --module the consumer's reset " +
        "hook clears its read model, --checkpoint-only leaves the read model as it is",
    );
  }
  if (typeof modulePath !== "string") {
    if (checkpointOnly) return undefined;
    throw new CliUsageError(
      `consumers ${action} needs --module ./consumers.ts (the consumer's reset hook then clears ` +
        `its read model in the same transaction) or --checkpoint-only: without --module the ` +
        `read model will not be cleared, and the events handled again land on top of it`,
    );
  }
  const consumer = await loadConsumer(modulePath, name);
  if (typeof consumer.reset !== "function") {
    throw new CliUsageError(
      `consumer ${JSON.stringify(name)} of --module ${modulePath} has no reset hook, so its ` +
        `read model would not be cleared: give it one (reset(tx, { toPosition }) { ... }), or ` +
        `pass --checkpoint-only instead of --module to move the checkpoint alone`,
    );
  }
  return consumer;
}

function readModelNote(cleared: boolean): string {
  return cleared
    ? "read model cleared by its reset hook"
    : "checkpoint only: the read model was not cleared";
}

/** `consumers reset NAME` and `consumers rebuild NAME`. */
async function resetCommand(
  action: "reset" | "rebuild",
  args: string[],
  io: CliIo,
): Promise<number> {
  const spec: FlagSpec = action === "reset" ? { "to-position": { type: "string" as const } } : {
    "no-wait": { type: "boolean" as const },
    timeout: { type: "string" as const },
    "heartbeat-timeout": { type: "string" as const },
  };
  const { values, positionals } = parseFlags(args, {
    json: { type: "boolean" },
    module: { type: "string" },
    "checkpoint-only": { type: "boolean" },
    ...spec,
    ...TABLE_FLAGS,
  }, true);
  const name = consumerName(action, positionals);
  const toPosition = action === "reset"
    ? nonNegativeIntegerFlag(values["to-position"], "to-position") ?? 0
    : 0;
  const timeout = secondsFlag(values.timeout, "timeout");
  const tableOptions = pickOptions(values, WORKER_TABLES);
  const eventsTable = pickOptions(values, ["eventsTable"]).eventsTable;
  const tables = workerTables(tableOptions);
  const consumer = await resetDefinition(action, values, name);
  const cleared = consumer !== undefined;
  // A partitioned consumer has rows per partition only (`name#<i>of<N>`): the reset finds them
  // from its definition, and refuses when they are missing.
  const names = consumer === undefined ? [name] : runningNames(consumer);
  const sql = await connectFromEnvironment(io);
  try {
    if (names.length === 1) await checkConsumer(sql, tables, name);
    if (action === "reset") {
      const from = await resetConsumer(sql, name, {
        ...tableOptions,
        eventsTable,
        toPosition,
        consumer,
      });
      io.out(
        values.json
          ? JSON.stringify({ consumer: name, from, to: toPosition, readModelCleared: cleared })
          : `reset ${name}: checkpoint ${from} → ${toPosition}; ${readModelNote(cleared)}`,
      );
      return 0;
    }

    // The target: the latest position before the reset. Events appended later are not waited for.
    const report = await workerStatus(sql, {
      ...tableOptions,
      eventsTable,
      heartbeatTimeout: heartbeatTimeout(values),
    });
    const target = report.latestPosition;
    const from = await resetConsumer(sql, name, { ...tableOptions, eventsTable, consumer });
    const startedAt = Date.now();
    io.out(
      values.json
        ? JSON.stringify({
          type: "reset",
          consumer: name,
          from,
          to: 0,
          target,
          readModelCleared: cleared,
        })
        : `reset ${name}: checkpoint ${from} → 0; ${readModelNote(cleared)}; ` +
          (values["no-wait"]
            ? `the workers rebuild it up to position ${target}`
            : `rebuilding up to position ${target}`),
    );
    if (values["no-wait"]) return 0;
    if (!report.workers.some((w) => w.live && names.some((n) => w.consumers.includes(n)))) {
      io.err(
        `eventsalsa consumers: warning: no live worker registers ${JSON.stringify(name)}; ` +
          `the rebuild starts once one runs it`,
      );
    }
    return await followRebuild(checkpointReader(sql, tableOptions), io, {
      consumer: name,
      from: 0,
      target,
      startedAt,
      timeout,
      json: values.json === true,
    });
  } finally {
    await sql.end();
  }
}

/** Follows a rebuild until caught up (0), timed out (1) or interrupted (130). */
async function followRebuild(
  readCheckpoints: (names: readonly string[]) => Promise<Map<string, number>>,
  io: CliIo,
  o: {
    consumer: string;
    from: number;
    target: number;
    startedAt: number;
    timeout: number | undefined;
    json: boolean;
  },
): Promise<number> {
  const meter = new RateMeter();
  const deadline = o.timeout === undefined ? null : o.startedAt + o.timeout * 1000;
  let barShown = false;
  let lastPlainLine = -Infinity;
  const show = (p: RebuildProgress, type: string | null) => {
    if (o.json) {
      io.out(JSON.stringify({ type: type ?? "progress", ...p }));
    } else if (io.isTerminal) {
      // Redraw the bar in place: up one line, clear it.
      io.out((barShown ? "\x1b[1A\x1b[2K" : "") + progressBar(p));
      barShown = true;
    } else if (type === null && p.elapsedMs - lastPlainLine >= PLAIN_LINE_MS) {
      io.out(progressLine(p));
      lastPlainLine = p.elapsedMs;
    }
  };
  const where = (p: RebuildProgress) =>
    `${o.consumer} is at ${p.checkpoint} of ${o.target} (${p.total - p.done} to go)`;
  for (;;) {
    // A partitioned consumer's: its lowest partition's.
    const checkpoint = (await readCheckpoints([o.consumer])).get(o.consumer);
    if (checkpoint === undefined) {
      throw new Error(`the checkpoint of ${JSON.stringify(o.consumer)} is gone (removed?)`);
    }
    const now = Date.now();
    const p = rebuildProgress(o, checkpoint, now, meter.sample(now, checkpoint));
    if (checkpoint >= o.target) {
      show(p, "done");
      if (!o.json) {
        const seconds = p.elapsedMs / 1000;
        io.out(
          `${o.consumer}: caught up: checkpoint ${checkpoint} reached position ${o.target} in ` +
            `${formatDuration(p.elapsedMs)}` +
            (seconds > 0 && p.total > 0 ? ` (${Math.round(p.total / seconds)} events/s)` : ""),
        );
      }
      return 0;
    }
    if (deadline !== null && now >= deadline) {
      show(p, "timeout");
      io.err(
        `eventsalsa consumers: timed out after ${o.timeout} s: ${where(p)}; the reset stays and ` +
          `the workers carry on (eventsalsa consumers list shows how far)`,
      );
      return 1;
    }
    show(p, null);
    const wait = deadline === null ? TICK_MS : Math.max(0, Math.min(TICK_MS, deadline - now));
    if (await stoppedWithin(io, wait)) {
      show(p, "interrupted");
      io.err(
        `eventsalsa consumers: stopped watching: ${where(p)}; the reset stays and the workers ` +
          `carry on (eventsalsa consumers list shows how far)`,
      );
      return 130;
    }
  }
}

/** `consumers remove NAME`: forgets a retired consumer's rows, unless a live worker has it. */
async function removeCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    json: { type: "boolean" },
    "heartbeat-timeout": { type: "string" },
    ...TABLE_FLAGS,
  }, true);
  const name = consumerName("remove", positionals);
  const timeout = heartbeatTimeout(values);
  const tables = workerTables(pickOptions(values, WORKER_TABLES));
  const sql = await connectFromEnvironment(io);
  try {
    await checkConsumer(sql, tables, name);
    const count = async (tx: postgres.TransactionSql, table: string) => {
      const [[n]] = await run(
        tx,
        `WITH gone AS (DELETE FROM ${table} WHERE consumer_name = $1 RETURNING 1)
        SELECT count(*)::int FROM gone`,
        [name],
      );
      return n as number;
    };
    const removed = await sql.begin(async (tx) => {
      // The rows a batch locks, in its order: a running batch of the consumer commits first.
      const assignment = await run(
        tx,
        `SELECT 1 FROM ${tables.assignments.quoted} WHERE consumer_name = $1 FOR UPDATE`,
        [name],
      );
      const checkpoint = await run(
        tx,
        `SELECT last_position FROM ${tables.checkpoints.quoted} WHERE consumer_name = $1
        FOR UPDATE`,
        [name],
      );
      const live = await run(
        tx,
        `SELECT worker_id FROM ${tables.nodes.quoted} WHERE $1 = ANY(consumers)
          AND heartbeat_at >= now() - $2::bigint * interval '1 millisecond'
        ORDER BY worker_id`,
        [name, timeout],
      );
      if (live.length > 0) {
        throw new Error(
          `refusing to remove ${JSON.stringify(name)}: live worker(s) ` +
            `${live.map((r) => r[0]).join(", ")} register it; stop deploying it first (a worker ` +
            `that died without unregistering counts as live for --heartbeat-timeout ${timeout} ms)`,
        );
      }
      const result = {
        consumer: name,
        checkpoint: checkpoint.length === 0
          ? null
          : toSafeNumber(checkpoint[0][0], "last_position"),
        assignment: assignment.length > 0,
        deadLetters: await count(tx, tables.deadLetters.quoted),
        gapSkips: await count(tx, tables.gapSkips.quoted),
      };
      await count(tx, tables.checkpoints.quoted);
      await count(tx, tables.assignments.quoted);
      return result;
    });
    if (values.json) {
      io.out(JSON.stringify(removed));
    } else {
      io.out(
        `removed ${name}: ` +
          (removed.checkpoint === null
            ? "no checkpoint"
            : `its checkpoint (was at ${removed.checkpoint})`) +
          `, ${removed.assignment ? "its assignment" : "no assignment"}, ` +
          `${removed.deadLetters} dead letter(s), ${removed.gapSkips} gap-skip audit row(s); ` +
          `its read model's tables are yours to drop`,
      );
    }
    return 0;
  } finally {
    await sql.end();
  }
}
