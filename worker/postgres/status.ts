import type { Sql } from "postgres";
import { toSafeNumber } from "../../internal/safe_number.ts";
import { storeTables } from "../../store/migration.ts";
import { WorkerConfigError } from "../errors.ts";
import { WORKER_DEFAULTS, type WorkerTableOptions } from "../options.ts";
import type {
  ConsumerStatus,
  GapBlocker,
  LeaderStatus,
  WorkerNodeStatus,
  WorkerStatus,
} from "../types.ts";
import { ADVISORY_LOCK_CLASSID } from "./leadership.ts";
import { run } from "../../internal/postgres_query.ts";
import { workerTables } from "./tables.ts";
import { begin } from "../../internal/transaction.ts";

/**
 * Options for {@link status}: the table names used by the workers and the store.
 *
 * @example
 * ```ts
 * import type { StatusOptions } from "@eventsalsa/eventsalsa/worker";
 * const options: StatusOptions = { eventsTable: "app.events", heartbeatTimeout: 30_000 };
 * ```
 */
export interface StatusOptions extends WorkerTableOptions {
  /** The store's events table; `events` when omitted. */
  eventsTable?: string;
  /** A worker whose heartbeat is older counts as not live; 30000 when omitted. */
  heartbeatTimeout?: number;
}

const date = (value: unknown): Date => value instanceof Date ? value : new Date(String(value));

/**
 * A consistent snapshot (one repeatable-read, read-only transaction) of the workers, the leader,
 * assignments,
 * checkpoints, lag (latest position − checkpoint) per consumer, current gap waits and dead-letter
 * counts. The CLI's `status` prints it.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { status } from "@eventsalsa/eventsalsa/worker";
 * const report = await status(postgres(process.env.DATABASE_URL!));
 * for (const c of report.consumers) console.log(c.name, c.workerId, c.checkpoint, c.lag);
 * ```
 */
export async function status(
  sql: Sql,
  options: StatusOptions = {},
): Promise<WorkerStatus> {
  const t = workerTables(options);
  const { events } = storeTables({ eventsTable: options.eventsTable });
  const timeout = options.heartbeatTimeout ?? WORKER_DEFAULTS.heartbeatTimeout;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new WorkerConfigError(
      `heartbeatTimeout must be a positive number of milliseconds, got ${timeout}`,
    );
  }
  return await begin(sql, async (tx) => {
    const latestRows = await run(
      tx,
      `SELECT global_position FROM ${events.quoted} ORDER BY global_position DESC LIMIT 1`,
    );
    const latest = latestRows.length === 0 ? 0 : toSafeNumber(latestRows[0][0], "global_position");
    const workerRows = await run(
      tx,
      `SELECT worker_id, started_at, heartbeat_at, array_to_json(consumers)::text,
        heartbeat_at >= now() - $1::bigint * interval '1 millisecond'
      FROM ${t.nodes.quoted} ORDER BY worker_id COLLATE "C"`,
      [Math.round(timeout)],
    );
    const consumerRows = await run(
      tx,
      `SELECT n.consumer_name, a.worker_id, coalesce(c.last_position, 0), c.updated_at, c.gap_position,
        c.gap_since, c.gap_blockers::text,
        (extract(epoch FROM now() - c.gap_since) * 1000)::bigint,
        (SELECT count(*) FROM ${t.deadLetters.quoted} d
          WHERE d.consumer_name = n.consumer_name AND d.skipped AND d.redriven_at IS NULL),
        (SELECT count(*) FROM ${t.deadLetters.quoted} d
          WHERE d.consumer_name = n.consumer_name AND NOT d.skipped AND d.resolved_at IS NULL),
        (SELECT count(*) FROM ${t.gapSkips.quoted} g WHERE g.consumer_name = n.consumer_name)
      FROM (SELECT consumer_name FROM ${t.checkpoints.quoted}
            UNION SELECT consumer_name FROM ${t.assignments.quoted}) n
      LEFT JOIN ${t.assignments.quoted} a ON a.consumer_name = n.consumer_name
      LEFT JOIN ${t.checkpoints.quoted} c ON c.consumer_name = n.consumer_name
      ORDER BY n.consumer_name COLLATE "C"`,
    );
    // The leader row counts when its lease is unexpired, or (advisory) while some session holds
    // this schema's lock.
    const leaderRows = await run(
      tx,
      `SELECT l.leader_id, l.strategy, l.acquired_at, l.expires_at FROM ${t.leader.quoted} l
      WHERE l.lease_key = 'leader' AND l.leader_id IS NOT NULL AND (
        (l.strategy = 'lease' AND l.expires_at > now()) OR
        (l.strategy = 'advisory' AND EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory'
          AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND k.classid = ${ADVISORY_LOCK_CLASSID}::oid AND k.objid = to_regclass($1)::oid
          AND k.objsubid = 1 AND k.granted)))`,
      [t.nodes.quoted],
    );
    const leader: LeaderStatus | null = leaderRows.length === 0 ? null : {
      workerId: leaderRows[0][0] as string,
      strategy: leaderRows[0][1] as "advisory" | "lease",
      since: date(leaderRows[0][2]),
      expiresAt: leaderRows[0][3] === null ? null : date(leaderRows[0][3]),
    };
    const workers = workerRows.map((row): WorkerNodeStatus => ({
      workerId: row[0] as string,
      startedAt: date(row[1]),
      heartbeatAt: date(row[2]),
      consumers: JSON.parse(row[3] as string) as string[],
      live: row[4] === true,
    }));
    const consumers = consumerRows.map((row): ConsumerStatus => {
      const checkpoint = toSafeNumber(row[2], "last_position");
      return {
        name: row[0] as string,
        workerId: row[1] as string | null,
        checkpoint,
        lag: Math.max(0, latest - checkpoint),
        updatedAt: row[3] === null ? null : date(row[3]),
        gap: row[4] === null ? null : {
          position: toSafeNumber(row[4], "gap_position"),
          since: date(row[5]),
          waitingMs: Math.max(0, toSafeNumber(row[7] ?? 0, "gap wait")),
          blockers: row[6] === null
            ? []
            : (JSON.parse(row[6] as string) as GapBlocker[]).map((b) => ({
              ...b,
              database: b.database ?? null,
            })),
        },
        deadLetters: {
          skipped: toSafeNumber(row[8], "dead letters"),
          blocking: toSafeNumber(row[9], "dead letters"),
        },
        gapSkips: toSafeNumber(row[10], "gap skips"),
      };
    });
    return { latestPosition: latest, workers, leader, consumers };
  }, "isolation level repeatable read read only") as WorkerStatus;
}
