/**
 * The worker's storage port (`../core/storage.ts`) on PostgreSQL (postgres.js): SQL and connection
 * mechanics only; every decision is the core's (`../core/protocol.ts`). Every statement is
 * prebuilt text with bound parameters and quoted, validated identifiers; it works with
 * `prepare: true` and `false`.
 *
 * Mechanisms kept here because the fault tests depend on them:
 *
 * - Transactions go through `begin` (../../internal/transaction.ts), safe when the connection dies;
 *   a statement the batch would send after its handle closed is refused (./guarded_transaction.ts).
 * - The batch's fence is pipelined with its window read, and its checkpoint update with COMMIT.
 * - `cancel()` cancels the transaction's backend by pid from a connection of its own. The pid is
 *   the one the fence returns; before it answers, the pid postgres.js got at connect time, unless
 *   this storage has seen a transaction pooler hand out pids of its own (PgBouncer).
 * - Leadership is a session advisory lock on a dedicated session, checked in `pg_locks` for that
 *   very session (postgres.js reconnects transparently: a ping would succeed on a new session that
 *   holds nothing), and dropped by closing the session when in doubt; or a lease row with an expiry
 *   in database time (no session state: the one for PgBouncer transaction pooling). The advisory
 *   lock key's high half is a constant, its low half the oid of the `worker_nodes` table, so fleets
 *   in different schemas of one database elect separately; the same oid tags notifications.
 * - On a server of one session (the embedded PGlite) no connection beyond the pool's is opened: no
 *   LISTEN, no advisory session (the lease instead), no cancel connection. Every connection beyond
 *   the pool's is refused there, and postgres.js retries a refused connection that has a query
 *   waiting at once, without back-off: a loop that burns a core and can keep the process alive.
 *
 * @module
 */
import postgres from "postgres";
import { textArrayLiteral } from "../../internal/postgres_array.ts";
import type { SqlExecutor } from "../../internal/postgres_client.ts";
import {
  affected,
  type Executor,
  prepares,
  run,
  statement,
} from "../../internal/postgres_query.ts";
import { toSafeNumber } from "../../internal/safe_number.ts";
import type { SqlIdentifier } from "../../internal/sql_identifier.ts";
import { begin, type TransactionLink } from "../../internal/transaction.ts";
import { storeTables } from "../../store/migration.ts";
import type { EventStore, PersistedEvent } from "../../store/types.ts";
import type { AssignmentChange, WorkerMembership } from "../core/assignment.ts";
import type {
  CoordinationChange,
  DeadLetterRecord,
  GapSkipRecord,
  ListenerHandle,
} from "../core/coordination.ts";
import type { GapToken, WindowQuery, WindowRead } from "../core/gap_rule.ts";
import { readCount, type Window, windowOf, type WindowSpec } from "../core/window.ts";
import type {
  ConsumerRegistration,
  ConsumerRow,
  ConsumerRows,
  LeadershipSettings,
  LeadershipStorage,
  LockConsumerOptions,
  StatusRows,
  StorageInfo,
  StorageTransaction,
  TransactionOptions,
  WorkerRow,
  WorkerRows,
  WorkerStorage,
} from "../core/storage.ts";
import { WorkerSetupError } from "../errors.ts";
import type { LeaderStrategy } from "../options.ts";
import type { GapBlocker, GapWait, WorkerTransaction } from "../types.ts";
import { GAP_BLOCKERS_SQL, GAP_RESOLVED_SQL, GAP_TOKEN_SQL } from "./gap_horizon.ts";
import { guardTransaction } from "./guarded_transaction.ts";
import { windowFromRows, type WindowStatements, windowStatements } from "./window_sql.ts";
import type { WorkerTables } from "./tables.ts";

/**
 * What the worker needs from the event store: reads on a postgres.js executor, and the events
 * table's name (for the sequence check and `status`). `PostgresStore` is one.
 *
 * @example
 * ```ts
 * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
 * import type { WorkerStore } from "@eventsalsa/eventsalsa/worker";
 * const store: WorkerStore = new PostgresStore({ notifyChannel: "events" });
 * ```
 */
export interface WorkerStore
  extends Pick<EventStore<SqlExecutor>, "readEvents" | "latestPosition"> {
  /** The events table (optionally schema-qualified). */
  readonly eventsTable: string;
  /** The store's NOTIFY channel, the notify dispatcher's default. */
  readonly notifyChannel?: string | null;
}

/** Settings of {@link PostgresStorage} (and of the coordinator built on it). */
export interface PostgresCoordinatorSettings {
  /** The worker's tables. */
  readonly tables: WorkerTables;
  /** The LISTEN channel (validated), or null when notifications are not used. */
  readonly notifyChannel: SqlIdentifier | null;
  /** The coordination channel (joins, leaves, assignment changes), or null: polling only. */
  readonly coordinationChannel?: SqlIdentifier | null;
  /** Connection for LISTEN; derived from the pool when omitted. */
  // deno-lint-ignore no-explicit-any
  readonly notifyConnection?: string | postgres.Options<any>;
}

/** High half of the advisory lock key ("esWr"); the low half is the worker_nodes table's oid. */
export const ADVISORY_LOCK_CLASSID = 0x65735772;

/** `begin` options of a snapshot transaction (`status`). */
const SNAPSHOT = "isolation level repeatable read read only";

/** A pool. */
// deno-lint-ignore no-explicit-any
type Pool = postgres.Sql<any>;

/** A raw transaction (what handlers get, unguarded). */
// deno-lint-ignore no-explicit-any
type RawTransaction = postgres.TransactionSql<any>;

/** A sent statement: its rows once it answers, and the backend key it was sent with. */
type SentQuery = Promise<unknown[][]> & { state?: { pid?: number } | null };

/** Sends a statement now (pipelined: awaited later); its failure is seen where it is awaited. */
function send(sql: Executor, text: string, params: readonly unknown[] = []): SentQuery {
  const query = statement(sql, text, params).execute() as unknown as SentQuery;
  query.catch(() => {});
  return query;
}

const date = (value: unknown): Date => value instanceof Date ? value : new Date(String(value));

function toBlocker(row: unknown[]): GapBlocker {
  return {
    pid: row[0] === null ? null : Number(row[0]),
    xid: row[1] as string | null,
    transactionAgeMs: row[2] === null ? null : Number(row[2]),
    state: row[3] as string | null,
    applicationName: row[4] as string | null,
    query: row[5] as string | null,
    database: row[6] as string | null,
  };
}

/** A timeout as `set_config` takes it (text milliseconds), or null: unchanged. */
const setting = (ms: number | undefined): string | null =>
  ms === undefined ? null : String(Math.round(ms));

/** Options for a dedicated connection, derived from the pool's own. */
function dedicated(sql: Pool, extra: Record<string, unknown>): postgres.Sql {
  // The pool's parsed options (with `shared`) are taken as they are by postgres(); this is how
  // postgres.js derives its own LISTEN connection.
  const base = (sql as unknown as { options: Record<string, unknown> }).options;
  return postgres(
    {
      ...base,
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      fetch_types: false,
      ...extra,
    } as never,
  );
}

/** Every statement, built once from the validated table names. */
function queries(t: WorkerTables, events: SqlIdentifier) {
  const { nodes: N, assignments: A, checkpoints: C, gapSkips: G, deadLetters: D, leader: L } = t;
  /** This session holds the schema's advisory lock ($1: the worker_nodes oid). */
  const held =
    `EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = ${ADVISORY_LOCK_CLASSID}::oid AND objid = $1::oid AND objsubid = 1 AND granted)`;
  return {
    nodesOid: `SELECT to_regclass($1)::oid::text`,
    version: `SELECT version()`,
    tables:
      `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL,
        to_regclass($4) IS NOT NULL, to_regclass($5) IS NOT NULL, to_regclass($6) IS NOT NULL,
        to_regclass($7) IS NOT NULL`,
    sequence: `SELECT s.seqcache, s.seqrelid::regclass::text FROM pg_sequence s
        WHERE s.seqrelid = coalesce(to_regclass(pg_get_serial_sequence($1, 'global_position')), to_regclass($2))`,
    lockTimeout: `SELECT set_config('lock_timeout', $1, true), pg_backend_pid()`,
    cancel: `SELECT pg_cancel_backend($1::int)`,
    notify: `SELECT pg_notify($1, $2)`,
    // --- the fleet
    register: `INSERT INTO ${N.quoted} AS n (worker_id, consumers, started_at, heartbeat_at)
        VALUES ($1, $2::text[], now(), now())
        ON CONFLICT (worker_id) DO UPDATE SET consumers = excluded.consumers, started_at = now(), heartbeat_at = now()
        WHERE n.heartbeat_at < now() - $3::bigint * interval '1 millisecond'`,
    ensureAssignments: `INSERT INTO ${A.quoted} (consumer_name) SELECT unnest($1::text[])
        ON CONFLICT (consumer_name) DO NOTHING`,
    // A start position of -1 is "end": the highest visible position, read in the same statement.
    ensureCheckpoints: `INSERT INTO ${C.quoted} (consumer_name, last_position)
        SELECT u.name, CASE WHEN u.start < 0
          THEN coalesce((SELECT max(global_position) FROM ${events.quoted}), 0) ELSE u.start END
        FROM unnest($1::text[], $2::text::bigint[]) AS u(name, start)
        ON CONFLICT (consumer_name) DO NOTHING`,
    heartbeat: `UPDATE ${N.quoted} SET heartbeat_at = now() WHERE worker_id = $1`,
    unregister: `DELETE FROM ${N.quoted} WHERE worker_id = $1`,
    cleanup: `DELETE FROM ${N.quoted}
        WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'`,
    live: `SELECT worker_id, array_to_json(consumers)::text FROM ${N.quoted}
        WHERE heartbeat_at >= now() - $1::bigint * interval '1 millisecond'`,
    assignments: `SELECT consumer_name, worker_id FROM ${A.quoted}`,
    assigned: `SELECT a.consumer_name, coalesce(c.last_position, 0) FROM ${A.quoted} a
        LEFT JOIN ${C.quoted} c ON c.consumer_name = a.consumer_name WHERE a.worker_id = $1`,
    // Locked in the order given (ORDER BY is applied before the locking clause).
    lockAssignments: `SELECT a.consumer_name, a.worker_id FROM ${A.quoted} a
        JOIN unnest($1::text[]) WITH ORDINALITY AS u(consumer_name, i)
          ON u.consumer_name = a.consumer_name
        ORDER BY u.i FOR UPDATE OF a`,
    writeAssignments: `UPDATE ${A.quoted} AS a SET worker_id = u.worker_id, updated_at = now()
        FROM unnest($1::text[], $2::text[]) AS u(consumer_name, worker_id)
        WHERE a.consumer_name = u.consumer_name`,
    // --- one consumer
    // Also bounds the transaction server-side: a frozen worker cannot hold the rows forever.
    fence: `SELECT a.worker_id, c.last_position,
          set_config('idle_in_transaction_session_timeout',
            coalesce($2::text, current_setting('idle_in_transaction_session_timeout')), true),
          pg_backend_pid()
        FROM ${A.quoted} a
        JOIN ${C.quoted} c ON c.consumer_name = a.consumer_name
        WHERE a.consumer_name = $1 FOR UPDATE OF a, c`,
    save: `UPDATE ${C.quoted} SET last_position = $2::bigint, updated_at = now()
        WHERE consumer_name = $1 AND last_position = $3::bigint`,
    checkpoint: `SELECT last_position FROM ${C.quoted} WHERE consumer_name = $1`,
    reportGap: `UPDATE ${C.quoted} SET gap_position = $2::bigint, gap_since = $3::text::timestamptz,
        gap_blockers = $4::text::jsonb WHERE consumer_name = $1`,
    deadLetter:
      `INSERT INTO ${D.quoted} AS d (consumer_name, global_position, event_id, aggregate_type,
          aggregate_id, event_type, error, attempts, skipped, worker_id)
        VALUES ($1, $2::bigint, $3::uuid, $4, $5, $6, $7, $8::int, $9::boolean, $10)
        ON CONFLICT (consumer_name, global_position) DO UPDATE SET error = excluded.error,
          attempts = excluded.attempts, skipped = excluded.skipped, worker_id = excluded.worker_id,
          updated_at = now(), resolved_at = NULL`,
    resolve: `UPDATE ${D.quoted} SET resolved_at = now(), updated_at = now()
        WHERE consumer_name = $1 AND global_position = ANY($2::text::bigint[]) AND NOT skipped
          AND resolved_at IS NULL`,
    blocking: `SELECT global_position FROM ${D.quoted}
        WHERE consumer_name = $1 AND NOT skipped AND resolved_at IS NULL`,
    lockDeadLetter: `SELECT 1 FROM ${D.quoted}
        WHERE consumer_name = $1 AND global_position = $2::bigint AND skipped AND redriven_at IS NULL
        FOR UPDATE`,
    forget: `DELETE FROM ${D.quoted} WHERE consumer_name = $1 AND global_position > $2::bigint`,
    redriven: `UPDATE ${D.quoted} SET redriven_at = now(), updated_at = now()
        WHERE consumer_name = $1 AND global_position = $2::bigint`,
    gapSkip: `INSERT INTO ${G.quoted} (consumer_name, worker_id, gap_position, skip_to_position,
          skipped_positions, highest_visible_position, first_seen_at)
        VALUES ($1, $2, $3::bigint, $4::bigint, $5::text::bigint[], $6::bigint, $7::text::timestamptz)`,
    // --- the log: the gap token, its resolution and its blockers (see ./gap_horizon.ts)
    token: GAP_TOKEN_SQL,
    resolved: GAP_RESOLVED_SQL,
    blockers: GAP_BLOCKERS_SQL,
    // --- status
    latest: `SELECT global_position FROM ${events.quoted} ORDER BY global_position DESC LIMIT 1`,
    statusWorkers: `SELECT worker_id, started_at, heartbeat_at, array_to_json(consumers)::text,
        heartbeat_at >= now() - $1::bigint * interval '1 millisecond'
      FROM ${N.quoted} ORDER BY worker_id COLLATE "C"`,
    statusConsumers:
      `SELECT n.consumer_name, a.worker_id, coalesce(c.last_position, 0), c.updated_at, c.gap_position,
        c.gap_since, c.gap_blockers::text,
        (extract(epoch FROM now() - c.gap_since) * 1000)::bigint,
        (SELECT count(*) FROM ${D.quoted} d
          WHERE d.consumer_name = n.consumer_name AND d.skipped AND d.redriven_at IS NULL),
        (SELECT count(*) FROM ${D.quoted} d
          WHERE d.consumer_name = n.consumer_name AND NOT d.skipped AND d.resolved_at IS NULL),
        (SELECT count(*) FROM ${G.quoted} g WHERE g.consumer_name = n.consumer_name)
      FROM (SELECT consumer_name FROM ${C.quoted}
            UNION SELECT consumer_name FROM ${A.quoted}) n
      LEFT JOIN ${A.quoted} a ON a.consumer_name = n.consumer_name
      LEFT JOIN ${C.quoted} c ON c.consumer_name = n.consumer_name
      ORDER BY n.consumer_name COLLATE "C"`,
    // The leader row counts when its lease is unexpired, or (advisory) while some session holds
    // this schema's lock.
    statusLeader: `SELECT l.leader_id, l.strategy, l.acquired_at, l.expires_at FROM ${L.quoted} l
      WHERE l.lease_key = 'leader' AND l.leader_id IS NOT NULL AND (
        (l.strategy = 'lease' AND l.expires_at > now()) OR
        (l.strategy = 'advisory' AND EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory'
          AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND k.classid = ${ADVISORY_LOCK_CLASSID}::oid AND k.objid = to_regclass($1)::oid
          AND k.objsubid = 1 AND k.granted)))`,
    // --- leadership: advisory
    advisoryTry: `SELECT pg_try_advisory_lock($1::bigint), pg_backend_pid()`,
    advisoryHeld: `SELECT ${held}, pg_backend_pid()`,
    advisoryFence: `SELECT set_config('lock_timeout',
          coalesce($2::text, current_setting('lock_timeout')), true), ${held}, pg_backend_pid()`,
    // For status: who holds the lock (the row goes with the worker's registration).
    advisoryRow: `INSERT INTO ${L.quoted} AS l
          (lease_key, leader_id, strategy, acquired_at, expires_at)
        VALUES ('leader', $1, 'advisory', now(), NULL)
        ON CONFLICT (lease_key) DO UPDATE SET leader_id = excluded.leader_id, strategy = 'advisory',
          acquired_at = now(), expires_at = NULL, updated_at = now()`,
    advisoryUnlock: `SELECT pg_advisory_unlock_all()`,
    // --- leadership: lease
    leaseAcquire:
      `INSERT INTO ${L.quoted} AS l (lease_key, leader_id, strategy, acquired_at, expires_at, updated_at)
        VALUES ('leader', $1, 'lease', now(), now() + $2::bigint * interval '1 millisecond', now())
        ON CONFLICT (lease_key) DO UPDATE SET leader_id = excluded.leader_id, strategy = 'lease',
          acquired_at = CASE WHEN l.leader_id = excluded.leader_id AND l.expires_at > now()
            THEN l.acquired_at ELSE now() END,
          expires_at = excluded.expires_at, updated_at = now()
        WHERE l.leader_id = excluded.leader_id OR l.leader_id IS NULL OR l.expires_at IS NULL
          OR l.expires_at <= now()`,
    leaseRelease:
      `UPDATE ${L.quoted} SET leader_id = NULL, expires_at = now() - interval '1 minute',
        updated_at = now() WHERE lease_key = 'leader' AND leader_id = $1`,
    leaseFence: `SELECT set_config('lock_timeout',
          coalesce($2::text, current_setting('lock_timeout')), true), pg_backend_pid() FROM ${L.quoted}
        WHERE lease_key = 'leader' AND leader_id = $1 AND expires_at > now() FOR UPDATE`,
  };
}

type Queries = ReturnType<typeof queries>;

/**
 * The first statement of a transaction that decides whether it goes on: resolves the backend's
 * pid, or null to end the transaction with nothing run (leadership not confirmed).
 */
type Fence = (raw: RawTransaction) => Promise<number | null>;

/** What the row operations, the transactions and the leadership mechanisms of one storage share. */
class Shared {
  readonly sql: Pool;
  readonly store: WorkerStore;
  readonly settings: PostgresCoordinatorSettings;
  readonly q: Queries;
  readonly events: SqlIdentifier;
  readonly sequence: SqlIdentifier;
  readonly windows: WindowStatements;
  /** Set by `prepare` on a server of one session (see the module doc). */
  singleSession = false;
  /**
   * Whether the backend pid postgres.js got at connect time is the backend that runs the
   * transaction: not behind a transaction pooler (PgBouncer hands out keys of its own). Learnt
   * from the first statement that returns `pg_backend_pid()`; null until then.
   */
  connectPidIsBackend: boolean | null = null;
  /** The connection cancels are sent from, opened on first use. */
  control: postgres.Sql | null = null;
  /** Set by `close`, cleared by `prepare`: a cancel then must not open a connection that stays. */
  closed = false;
  /** Cancels sent and not yet answered: `close` waits for them before ending `control`. */
  readonly cancels = new Set<Promise<unknown>>();
  /** LISTEN clients, open or still connecting: `close` ends them all. */
  readonly listeners = new Set<postgres.Sql>();
  #oid: string | null = null;

  constructor(sql: Pool, store: WorkerStore, settings: PostgresCoordinatorSettings) {
    this.sql = sql;
    this.store = store;
    this.settings = settings;
    const { events, sequence } = storeTables({ eventsTable: store.eventsTable });
    this.events = events;
    this.sequence = sequence;
    this.windows = windowStatements(events);
    this.q = queries(settings.tables, events);
  }

  /** The coordination channel; none on a single-session server. */
  get channel(): SqlIdentifier | null {
    return this.singleSession ? null : this.settings.coordinationChannel ?? null;
  }

  /**
   * The oid of the worker_nodes table (advisory lock key's low half, notification tag), cached.
   * Fetched on `executor`: inside a transaction, on the transaction itself (on a pool of one, a
   * statement beside the transaction would wait for it forever).
   */
  async oid(executor: Executor = this.sql): Promise<string> {
    if (this.#oid !== null) return this.#oid;
    const [[oid]] = await run(executor, this.q.nodesOid, [this.settings.tables.nodes.quoted]);
    if (oid === null) throw new WorkerSetupError("the worker tables are missing");
    return (this.#oid = oid as string);
  }

  /**
   * Reads `spec`'s window on `exec`: through the store's read of full rows when it is unfiltered
   * or dense (it reaches no further than twice its limit: most rows are wanted), else in one
   * statement that fetches full rows for the matching events only (./window_sql.ts).
   */
  readWindow(exec: Executor, spec: WindowSpec): Promise<Window> {
    const filter = spec.filter;
    if (filter === null || spec.scan <= 2 * spec.limit) {
      return this.store.readEvents(exec, spec.after, readCount(spec)).then((events) =>
        windowOf(spec, events)
      );
    }
    const { text, params } = this.windows.for({ ...spec, filter });
    const rows = exec.unsafe(text, params as never[], { prepare: false }).values();
    return (rows as unknown as Promise<unknown[][]>).then(windowFromRows);
  }

  /** Cancels whatever runs on backend `pid`, from a connection of its own. */
  async cancel(pid: number): Promise<void> {
    if (this.singleSession) return; // no second connection; PGlite ignores cancel requests anyway
    if (this.closed) {
      // A batch given up on while the worker stopped: its cancel still goes, on a connection
      // ended right after (one kept open would keep the process alive after the stop).
      const once = dedicated(this.sql, { onnotice: () => {} });
      try {
        await run(once, this.q.cancel, [pid]);
      } finally {
        await once.end({ timeout: 1 });
      }
      return;
    }
    this.control ??= dedicated(this.sql, { onnotice: () => {} });
    const sent = run(this.control, this.q.cancel, [pid]);
    this.cancels.add(sent);
    try {
      await sent;
    } finally {
      this.cancels.delete(sent);
    }
  }

  /** Learns from a statement that returned `pg_backend_pid()` whether connect-time pids are real. */
  learnPid(query: SentQuery, backend: number): void {
    this.connectPidIsBackend ??= query.state?.pid === backend;
  }

  /**
   * Runs `work` in a transaction on `sql` (the pool, or the advisory session): `fence` first when
   * given (null: ended with nothing run), else the lock timeout pipelined with the first
   * statement. The checkpoint updates went out with COMMIT: checked after it.
   */
  async transaction<T>(
    sql: Pool,
    options: TransactionOptions,
    work: (tx: StorageTransaction<WorkerTransaction>) => Promise<T>,
    fence?: Fence,
  ): Promise<{ value: T } | null> {
    let transaction: PgTransaction | null = null;
    const outcome = await begin(sql, async (raw, link): Promise<{ value: T } | null> => {
      const tx = transaction = new PgTransaction(this, raw, link);
      try {
        if (fence !== undefined) {
          const pid = await fence(raw);
          if (pid === null) return null;
          tx.backend = pid;
        } else if (options.lockTimeout !== undefined) {
          tx.setLockTimeout(options.lockTimeout);
        }
        const value = await work(tx);
        await tx.settled();
        return { value };
      } finally {
        tx.end();
      }
    }, options.snapshot === true ? SNAPSHOT : undefined);
    if (outcome !== null) await (transaction as PgTransaction | null)?.checkSaves();
    return outcome;
  }

  /** The status queries, pipelined, on `exec` (a snapshot transaction). */
  async statusRows(exec: Executor, heartbeatTimeoutMs: number): Promise<StatusRows> {
    const q = this.q;
    const [latestRows, workerRows, consumerRows, leaderRows] = await Promise.all([
      run(exec, q.latest),
      run(exec, q.statusWorkers, [Math.round(heartbeatTimeoutMs)]),
      run(exec, q.statusConsumers),
      run(exec, q.statusLeader, [this.settings.tables.nodes.quoted]),
    ]);
    const workers = workerRows.map((row): WorkerRow => ({
      workerId: row[0] as string,
      startedAt: date(row[1]),
      heartbeatAt: date(row[2]),
      consumers: JSON.parse(row[3] as string) as string[],
      live: row[4] === true,
    }));
    const consumers = consumerRows.map((row): ConsumerRow => ({
      name: row[0] as string,
      workerId: row[1] as string | null,
      checkpoint: toSafeNumber(row[2], "last_position"),
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
      skippedDeadLetters: toSafeNumber(row[8], "dead letters"),
      blockingDeadLetters: toSafeNumber(row[9], "dead letters"),
      gapSkips: toSafeNumber(row[10], "gap skips"),
    }));
    return {
      latestPosition: latestRows.length === 0
        ? 0
        : toSafeNumber(latestRows[0][0], "global_position"),
      workers,
      leader: leaderRows.length === 0 ? null : {
        workerId: leaderRows[0][0] as string,
        strategy: leaderRows[0][1] as LeaderStrategy,
        since: date(leaderRows[0][2]),
        expiresAt: leaderRows[0][3] === null ? null : date(leaderRows[0][3]),
      },
      consumers,
    };
  }
}

/**
 * The row vocabulary on an executor: the pool (each statement commits on its own) or, in the
 * {@link PgTransaction} subclass, an open transaction.
 */
class PgRows implements WorkerRows {
  protected readonly shared: Shared;
  readonly #exec: Executor;
  readonly #inTransaction: boolean;

  constructor(shared: Shared, exec: Executor, inTransaction: boolean) {
    this.shared = shared;
    this.#exec = exec;
    this.#inTransaction = inTransaction;
  }

  /** The executor, for a statement about to be built (a transaction refuses once it is over). */
  protected exec(): Executor {
    return this.#exec;
  }

  /** Called with the fence as it is sent (a transaction learns its backend from it). */
  protected fenceSent(_query: SentQuery): void {}

  async registerWorker(
    workerId: string,
    consumers: readonly string[],
    heartbeatTimeoutMs: number,
  ): Promise<boolean> {
    const inserted = await affected(this.exec(), this.shared.q.register, [
      workerId,
      textArrayLiteral(consumers),
      Math.round(heartbeatTimeoutMs),
    ]);
    return inserted > 0;
  }

  async ensureConsumers(consumers: readonly ConsumerRegistration[]): Promise<void> {
    const names = textArrayLiteral(consumers.map((c) => c.name));
    const starts = `{${consumers.map((c) => c.startFrom === "end" ? -1 : c.startFrom).join(",")}}`;
    const exec = this.exec();
    await Promise.all([
      affected(exec, this.shared.q.ensureAssignments, [names]),
      affected(exec, this.shared.q.ensureCheckpoints, [names, starts]),
    ]);
  }

  async heartbeat(workerId: string): Promise<boolean> {
    return (await affected(this.exec(), this.shared.q.heartbeat, [workerId])) === 1;
  }

  /** Retried on a deadlock with a concurrent rebalance, outside a transaction. */
  async deleteWorker(workerId: string): Promise<boolean> {
    for (let attempt = 1;; attempt++) {
      try {
        return (await affected(this.exec(), this.shared.q.unregister, [workerId])) > 0;
      } catch (error) {
        const deadlock = (error as { code?: string } | null)?.code === "40P01";
        if (this.#inTransaction || !deadlock || attempt >= 3) throw error;
      }
    }
  }

  async deleteStaleWorkers(olderThanMs: number): Promise<number> {
    return await affected(this.exec(), this.shared.q.cleanup, [Math.round(olderThanMs)]);
  }

  async liveWorkers(heartbeatTimeoutMs: number): Promise<WorkerMembership[]> {
    const rows = await run(this.exec(), this.shared.q.live, [Math.round(heartbeatTimeoutMs)]);
    return rows.map((row) => ({
      workerId: row[0] as string,
      consumers: JSON.parse(row[1] as string) as string[],
    }));
  }

  async assignments(): Promise<Map<string, string | null>> {
    const rows = await run(this.exec(), this.shared.q.assignments);
    return new Map(rows.map((row) => [row[0] as string, row[1] as string | null]));
  }

  async owned(workerId: string): Promise<Map<string, number>> {
    const rows = await run(this.exec(), this.shared.q.assigned, [workerId]);
    return new Map(rows.map((row) => [row[0] as string, toSafeNumber(row[1], "last_position")]));
  }

  async lockAssignments(consumers: readonly string[]): Promise<Map<string, string | null>> {
    if (consumers.length === 0) return new Map();
    const rows = await run(this.exec(), this.shared.q.lockAssignments, [
      textArrayLiteral(consumers),
    ]);
    return new Map(rows.map((row) => [row[0] as string, row[1] as string | null]));
  }

  async writeAssignments(changes: readonly AssignmentChange[]): Promise<void> {
    if (changes.length === 0) return;
    await affected(this.exec(), this.shared.q.writeAssignments, [
      textArrayLiteral(changes.map((c) => c.consumer)),
      textArrayLiteral(changes.map((c) => c.to)),
    ]);
  }

  /** Tagged with this schema's worker_nodes oid: fleets of other schemas ignore it. */
  async notify(change: CoordinationChange): Promise<void> {
    const channel = this.shared.channel;
    if (channel === null) return;
    const oid = await this.shared.oid(this.exec());
    await run(this.exec(), this.shared.q.notify, [channel.name, `${change}:${oid}`]);
  }

  /**
   * The fence (`FOR UPDATE` on the assignment and checkpoint rows, bounding the transaction's
   * idle time) with, when asked, the resolution check and the window read: all sent before any
   * answer is awaited, one round trip.
   */
  async lockConsumer(
    consumer: string,
    options: LockConsumerOptions = {},
  ): Promise<ConsumerRows | null> {
    const q = this.shared.q;
    const exec = this.exec();
    const fence = send(exec, q.fence, [consumer, setting(options.idleTimeout)]);
    this.fenceSent(fence);
    const read = options.read ?? null;
    const resolved = read !== null && read.pendingToken !== null
      ? send(exec, q.resolved, [read.pendingToken as string])
      : null;
    const window = read === null ? null : this.shared.readWindow(exec, read);
    window?.catch(() => {});
    const rows = await fence;
    if (rows.length === 0) return null;
    let windowRead: WindowRead | null = null;
    if (window !== null) {
      const pendingResolved = resolved === null ? false : (await resolved)[0][0] === true;
      windowRead = { ...await window, pendingResolved, token: () => this.token() };
    }
    return {
      owner: rows[0][0] as string | null,
      checkpoint: toSafeNumber(rows[0][1], "last_position"),
      read: windowRead,
    };
  }

  /** Outside a transaction: fails when no row held `expected`. */
  async saveCheckpoint(consumer: string, position: number, expected: number): Promise<void> {
    const count = await affected(this.exec(), this.shared.q.save, [consumer, position, expected]);
    if (count !== 1) throw new Error(`checkpoint of ${consumer} moved under the fence`);
  }

  async readCheckpoint(consumer: string): Promise<number> {
    const rows = await run(this.exec(), this.shared.q.checkpoint, [consumer]);
    return rows.length === 0 ? 0 : toSafeNumber(rows[0][0], "last_position");
  }

  async reportGap(consumer: string, gap: GapWait | null): Promise<void> {
    await affected(this.exec(), this.shared.q.reportGap, [
      consumer,
      gap?.position ?? null,
      gap === null ? null : new Date(gap.since).toISOString(),
      gap === null ? null : JSON.stringify(gap.blockers),
    ]);
  }

  async writeDeadLetter(record: DeadLetterRecord): Promise<void> {
    const e = record.event;
    await affected(this.exec(), this.shared.q.deadLetter, [
      record.consumer,
      e.globalPosition,
      e.eventId,
      e.aggregateType,
      e.aggregateId,
      e.eventType,
      record.error,
      record.attempts,
      record.skipped,
      record.workerId,
    ]);
  }

  async resolveDeadLetters(consumer: string, positions: readonly number[]): Promise<void> {
    await affected(this.exec(), this.shared.q.resolve, [consumer, `{${positions.join(",")}}`]);
  }

  async deleteDeadLetters(consumer: string, afterPosition: number): Promise<void> {
    await affected(this.exec(), this.shared.q.forget, [consumer, afterPosition]);
  }

  async blockingDeadLetters(consumer: string): Promise<number[]> {
    const rows = await run(this.exec(), this.shared.q.blocking, [consumer]);
    return rows.map((row) => toSafeNumber(row[0], "global_position"));
  }

  async lockDeadLetter(consumer: string, position: number): Promise<boolean> {
    return (await run(this.exec(), this.shared.q.lockDeadLetter, [consumer, position])).length > 0;
  }

  async markRedriven(consumer: string, position: number): Promise<void> {
    await affected(this.exec(), this.shared.q.redriven, [consumer, position]);
  }

  async writeGapSkip(record: GapSkipRecord): Promise<void> {
    await affected(this.exec(), this.shared.q.gapSkip, [
      record.consumer,
      record.workerId,
      record.gapPosition,
      record.skipTo,
      `{${record.skippedPositions.join(",")}}`,
      record.highestVisible,
      new Date(record.firstSeenAt).toISOString(),
    ]);
  }

  /** Resolution check first, then the read (a later statement sees every settled position). */
  async readWindow(query: WindowQuery): Promise<WindowRead> {
    const { pendingToken } = query;
    const pendingResolved = pendingToken === null
      ? false
      : (await run(this.exec(), this.shared.q.resolved, [pendingToken as string]))[0][0] === true;
    const window = await this.shared.readWindow(this.exec(), query);
    return { ...window, pendingResolved, token: () => this.token() };
  }

  /** A gap token taken now (see ./gap_horizon.ts). */
  protected async token(): Promise<GapToken> {
    const [[token]] = await run(this.exec(), this.shared.q.token);
    return token as string;
  }

  async readEvent(position: number): Promise<PersistedEvent | null> {
    const [event] = await this.shared.store.readEvents(this.exec(), position - 1, 1);
    return event !== undefined && event.globalPosition === position ? event : null;
  }

  latestPosition(): Promise<number> {
    return this.shared.store.latestPosition(this.exec());
  }

  /**
   * The transactions holding the wait (see ./gap_horizon.ts): this database's running ones the
   * token lists, or without a list every running one older than its horizon, this database's
   * first. Another database's query text is never read into the report.
   */
  async gapBlockers(token: GapToken): Promise<GapBlocker[]> {
    return (await run(this.exec(), this.shared.q.blockers, [token as string])).map(toBlocker);
  }

  /** Outside a transaction: in a snapshot transaction of its own. */
  async statusRows(heartbeatTimeoutMs: number): Promise<StatusRows> {
    if (this.#inTransaction) return await this.shared.statusRows(this.exec(), heartbeatTimeoutMs);
    return await begin(
      this.shared.sql,
      (tx) => this.shared.statusRows(tx, heartbeatTimeoutMs),
      SNAPSHOT,
    );
  }
}

/** An open transaction (see the port's `StorageTransaction`). */
class PgTransaction extends PgRows implements StorageTransaction<WorkerTransaction> {
  readonly #raw: RawTransaction;
  readonly #link: TransactionLink;
  /** The transaction's backend as the server names it, once a statement returned it. */
  backend: number | null = null;
  /** The first statement sent: its connect-time pid names the backend before anything answered. */
  #first: SentQuery | null = null;
  /** The pipelined lock-timeout statement, checked before commit. */
  #lockTimeout: SentQuery | null = null;
  /** Checkpoint updates sent with COMMIT, checked after it. */
  readonly #saves: { consumer: string; result: Promise<{ count: number }> }[] = [];
  #ended = false;

  constructor(shared: Shared, raw: RawTransaction, link: TransactionLink) {
    super(shared, raw, true);
    this.#raw = raw;
    this.#link = link;
  }

  /** True once the connection is known lost. */
  get lost(): boolean {
    return this.#link.lost;
  }

  /** Refuses statements once the transaction is over or its connection lost. */
  protected override exec(): Executor {
    if (this.#ended || this.#link.lost) throw new Error("the storage transaction is over");
    return this.#raw;
  }

  /** Remembers the fence's backend; before it answers, its connect-time pid stands in. */
  protected override fenceSent(query: SentQuery): void {
    this.#first ??= query;
    query.then((rows) => {
      if (rows.length === 0) return;
      const backend = Number(rows[0][3]);
      this.backend = backend;
      this.shared.learnPid(query, backend);
    }, () => {});
  }

  /** A token after the transaction ended is taken on the pool (still after the read). */
  protected override async token(): Promise<GapToken> {
    const exec = this.#ended ? this.shared.sql : this.exec();
    const [[token]] = await run(exec, this.shared.q.token);
    return token as string;
  }

  /** The lock timeout, sent now and pipelined with the transaction's next statement. */
  setLockTimeout(ms: number): void {
    const query = send(this.#raw, this.shared.q.lockTimeout, [setting(ms)]);
    this.#first ??= query;
    this.#lockTimeout = query;
    query.then(([[, pid]]) => {
      this.backend ??= Number(pid);
      this.shared.learnPid(query, Number(pid));
    }, () => {});
  }

  /** Rejects if the pipelined lock-timeout statement failed (its transaction is void). */
  async settled(): Promise<void> {
    if (this.#lockTimeout !== null) await this.#lockTimeout;
  }

  /** Nothing more is sent through this object. */
  end(): void {
    this.#ended = true;
  }

  /**
   * Sent now, checked after COMMIT (`checkSaves`): the batch's last statement shares COMMIT's round
   * trip. Had it failed, PostgreSQL turned the COMMIT into a rollback (postgres.js still resolves
   * it): its own promise tells.
   */
  override saveCheckpoint(consumer: string, position: number, expected: number): Promise<void> {
    const raw = this.exec();
    const result = raw.unsafe(this.shared.q.save, [consumer, position, expected], {
      prepare: prepares(raw),
    }).execute() as unknown as Promise<{ count: number }>;
    result.catch(() => {});
    this.#saves.push({ consumer, result });
    return Promise.resolve();
  }

  /** After COMMIT: every checkpoint update matched its row. */
  async checkSaves(): Promise<void> {
    for (const { consumer, result } of this.#saves) {
      const { count } = await result;
      if (count !== 1) throw new Error(`checkpoint of ${consumer} moved under the fence`);
    }
  }

  handle(consumer: string, isOpen: () => boolean): WorkerTransaction {
    return guardTransaction(
      this.#raw,
      () => isOpen() && !this.#ended && !this.#link.lost,
      consumer,
    );
  }

  /**
   * Cancels the statement running on the transaction's backend, from a connection of its own.
   * Before a statement returned the backend's pid, the connect-time pid, unless this storage has
   * seen a pooler hand out pids of its own.
   */
  async cancel(): Promise<void> {
    const connectPid = this.#first?.state?.pid;
    const pid = this.backend ??
      (this.shared.connectPidIsBackend === false ? undefined : connectPid);
    if (pid === undefined) return;
    await this.shared.cancel(pid).catch(() => {});
  }
}

/**
 * The `advisory` mechanism (see the module doc). Its session is a one-connection client of its own,
 * not `sql.reserve()`: a reserved connection whose backend is terminated throws an uncaught error
 * inside postgres.js 3.4, and one cannot be closed, only handed back to the pool with its lock.
 */
class AdvisoryLeadership implements LeadershipStorage<WorkerTransaction> {
  readonly #shared: Shared;
  readonly #workerId: string;
  /** The dedicated session: open while leading or trying to lead. */
  #session: postgres.Sql | null = null;
  #leading = false;
  #pid: number | null = null;
  #key: string | null = null;

  constructor(shared: Shared, workerId: string) {
    this.#shared = shared;
    this.#workerId = workerId;
  }

  async #lockKey(): Promise<string> {
    this.#key ??= ((BigInt(ADVISORY_LOCK_CLASSID) << 32n) | BigInt(await this.#shared.oid()))
      .toString();
    return this.#key;
  }

  /**
   * Leading: checks in `pg_locks` that this very session still holds the lock (a reconnected
   * session would answer a ping but hold nothing). Otherwise: tries the lock.
   */
  async acquire(): Promise<boolean> {
    const q = this.#shared.q;
    this.#session ??= dedicated(this.#shared.sql, { onnotice: () => {} });
    const session = this.#session;
    try {
      if (this.#leading) {
        const [[held, pid]] = await run(session, q.advisoryHeld, [await this.#shared.oid()]);
        if (held === true && Number(pid) === this.#pid) return true;
        await this.#drop();
        return false;
      }
      const [[ok, pid]] = await run(session, q.advisoryTry, [await this.#lockKey()]);
      if (ok !== true) return false;
      this.#leading = true;
      this.#pid = Number(pid);
      await run(session, q.advisoryRow, [this.#workerId]);
      return true;
    } catch (error) {
      await this.#drop();
      throw error;
    }
  }

  /** On the lock-holding session, checking inside the transaction that it still holds the lock. */
  async transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<WorkerTransaction>) => Promise<T>,
  ): Promise<T | null> {
    const session = this.#session;
    if (session === null || !this.#leading) return null;
    const expectedPid = this.#pid;
    const oid = await this.#shared.oid();
    const outcome = await this.#shared.transaction(session, options, work, async (raw) => {
      const [[, held, pid]] = await run(raw, this.#shared.q.advisoryFence, [
        oid,
        setting(options.lockTimeout),
      ]);
      return held === true && Number(pid) === expectedPid ? expectedPid : null;
    });
    if (outcome === null) {
      await this.#drop();
      return null;
    }
    return outcome.value;
  }

  /** Unlocks and closes the session. */
  async release(): Promise<void> {
    await this.#drop();
  }

  /** Ends the session: closing it is the one certain way to drop a session lock. */
  async #drop(): Promise<void> {
    const session = this.#session;
    const leading = this.#leading;
    this.#session = null;
    this.#leading = false;
    this.#pid = null;
    if (session === null) return;
    if (leading) await session.unsafe(this.#shared.q.advisoryUnlock).catch(() => {});
    await session.end({ timeout: 1 }).catch(() => {});
  }
}

/** The `lease` mechanism (see the module doc): no session state, safe behind PgBouncer. */
class LeaseLeadership implements LeadershipStorage<WorkerTransaction> {
  readonly #shared: Shared;
  readonly #workerId: string;
  readonly #leaseMs: number;

  constructor(shared: Shared, workerId: string, leaseMs: number) {
    this.#shared = shared;
    this.#workerId = workerId;
    this.#leaseMs = leaseMs;
  }

  /** Acquires or renews the lease (held iff the upsert changed the row). */
  async acquire(): Promise<boolean> {
    try {
      return (await affected(this.#shared.sql, this.#shared.q.leaseAcquire, [
        this.#workerId,
        Math.round(this.#leaseMs),
      ])) === 1;
    } catch (error) {
      // The registration is gone (foreign key): certainly not the leader.
      if ((error as { code?: string } | null)?.code === "23503") return false;
      throw error;
    }
  }

  /** In a pool transaction that first locks the lease row, ours and unexpired. */
  async transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<WorkerTransaction>) => Promise<T>,
  ): Promise<T | null> {
    const outcome = await this.#shared.transaction(this.#shared.sql, options, work, async (raw) => {
      const rows = await run(raw, this.#shared.q.leaseFence, [
        this.#workerId,
        setting(options.lockTimeout),
      ]);
      return rows.length === 0 ? null : Number(rows[0][1]);
    });
    return outcome === null ? null : outcome.value;
  }

  /** Gives the lease up (a no-op when another worker holds it). */
  async release(): Promise<void> {
    await affected(this.#shared.sql, this.#shared.q.leaseRelease, [this.#workerId]);
  }
}

/**
 * The storage port on PostgreSQL (see the module doc). One instance serves one worker at a time;
 * `close` releases the connections it opened itself (cancel and LISTEN), never the pool.
 * Internal: the public face is `Worker`.
 */
export class PostgresStorage implements WorkerStorage<WorkerTransaction> {
  readonly #shared: Shared;
  /** Row operations outside a transaction, each committed on its own. */
  readonly rows: WorkerRows;

  /** Prepares the SQL text once; opens nothing. */
  constructor(sql: Pool, store: WorkerStore, settings: PostgresCoordinatorSettings) {
    this.#shared = new Shared(sql, store, settings);
    this.rows = new PgRows(this.#shared, sql, false);
  }

  /**
   * Checks that the worker's and the store's tables exist and the position sequence has CACHE 1,
   * and finds out whether the server has one session only (see the module doc).
   */
  async prepare(): Promise<StorageInfo> {
    const s = this.#shared;
    s.closed = false;
    const [[version]] = await run(s.sql, s.q.version);
    // "PostgreSQL 18.6 (PGlite 0.5.14) on wasm32-unknown-emscripten, ...".
    s.singleSession = /\(PGlite |wasm32-unknown-emscripten/.test(String(version));
    const t = s.settings.tables;
    const names = [
      t.nodes,
      t.assignments,
      t.checkpoints,
      t.gapSkips,
      t.deadLetters,
      t.leader,
      s.events,
    ];
    const [present] = await run(s.sql, s.q.tables, names.map((n) => n.quoted));
    const missing = names.filter((_, i) => present[i] !== true).map((n) => n.text);
    if (missing.length > 0) {
      throw new WorkerSetupError(
        `missing tables: ${missing.join(", ")}; apply the store and worker migrations first ` +
          `(migrate() from @eventsalsa/eventsalsa/store and /worker, or "eventsalsa migrate")`,
      );
    }
    const rows = await run(s.sql, s.q.sequence, [s.events.quoted, s.sequence.quoted]);
    if (rows.length === 0) {
      throw new WorkerSetupError(
        `cannot find the sequence behind ${s.events.text}.global_position (expected ${s.sequence.text})`,
      );
    }
    // Cached now: later fetched inside no transaction.
    await s.oid();
    const cache = toSafeNumber(rows[0][0], "cache_size");
    if (cache !== 1) {
      throw new WorkerSetupError(
        `sequence ${
          rows[0][1]
        } has CACHE ${cache}; the worker's gap rule needs positions drawn in time ` +
          `order: run ALTER SEQUENCE ${rows[0][1]} CACHE 1`,
      );
    }
    return { singleSession: s.singleSession };
  }

  /**
   * A pool transaction (`begin`: safe when the connection dies). `lockTimeout` is set by a
   * statement pipelined with the first of `work`; `snapshot` makes it repeatable read, read only.
   */
  async transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<WorkerTransaction>) => Promise<T>,
  ): Promise<T> {
    const outcome = await this.#shared.transaction(this.#shared.sql, options, work);
    return (outcome as { value: T }).value;
  }

  /**
   * LISTEN on a dedicated connection. `coordination` payloads are tagged with this schema's
   * worker_nodes oid; another schema's are dropped. Null without a channel, and for
   * `coordination` on a single-session server.
   */
  async listen(
    topic: "events" | "coordination",
    onMessage: (change: CoordinationChange | null) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    if (topic === "events") {
      const channel = this.#shared.settings.notifyChannel;
      if (channel === null) return null;
      return await this.#listen(channel, () => onMessage(null), onClose);
    }
    const channel = this.#shared.channel;
    if (channel === null) return null;
    const tag = `:${await this.#shared.oid()}`;
    return await this.#listen(channel, (payload) => {
      if (!payload.endsWith(tag)) return; // another schema's fleet on the same database
      const kind = payload.slice(0, -tag.length);
      if (kind === "membership" || kind === "assignments") onMessage(kind);
    }, onClose);
  }

  async #listen(
    channel: SqlIdentifier,
    onNotify: (payload: string) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle> {
    let closing = false;
    let lost = false;
    const hooks = {
      onnotice: () => {},
      onnotify: (name: string, payload: string) => {
        if (name === channel.name) onNotify(payload);
      },
      onclose: () => {
        if (closing || lost) return;
        lost = true;
        onClose(new Error(`LISTEN connection for channel ${channel.text} closed`));
      },
    };
    const connection = this.#shared.settings.notifyConnection;
    // One connection that never idles out or retires: a retired LISTEN connection would read as lost.
    const single = {
      ...hooks,
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      fetch_types: false,
    } as never;
    const listener = connection === undefined
      ? dedicated(this.#shared.sql, hooks)
      : typeof connection === "string"
      ? postgres(connection, single)
      : postgres({ ...connection, ...(single as object) } as never);
    const listeners = this.#shared.listeners;
    listeners.add(listener);
    const close = async () => {
      closing = true;
      listeners.delete(listener);
      await listener.end({ timeout: 1 });
    };
    try {
      // Quoted exactly like the store's pg_notify(literal): same case, same channel.
      await listener.unsafe(`LISTEN ${channel.quoted}`);
    } catch (error) {
      await close().catch(() => {});
      throw error;
    }
    return { close };
  }

  /**
   * The leadership mechanism of `workerId`: the advisory lock or the lease; the lease on a
   * single-session server, whatever the strategy.
   */
  leadership(
    workerId: string,
    settings: LeadershipSettings,
  ): LeadershipStorage<WorkerTransaction> {
    return settings.strategy === "lease" || this.#shared.singleSession
      ? new LeaseLeadership(this.#shared, workerId, settings.leaseMs)
      : new AdvisoryLeadership(this.#shared, workerId);
  }

  /** Ends the connections this storage opened for itself (cancel and LISTEN). */
  async close(): Promise<void> {
    const s = this.#shared;
    s.closed = true;
    // postgres.js 3.4 ended while queries wait for its connection answers them on a new one it
    // never ends (kept open: the process does not exit). So the cancels go first.
    await Promise.allSettled([...s.cancels]);
    const control = s.control;
    s.control = null;
    const listeners = [...s.listeners];
    s.listeners.clear();
    await Promise.all([
      control?.end({ timeout: 1 }),
      ...listeners.map((listener) => listener.end({ timeout: 0 }).catch(() => {})),
    ]);
  }
}
