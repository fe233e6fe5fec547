/**
 * The coordination port on PostgreSQL (postgres.js). Every statement is prebuilt SQL with bound
 * parameters and quoted, validated identifiers; it works with `prepare: true` and `false`.
 *
 * @module
 */
import postgres from "postgres";
import { textArrayLiteral } from "../../internal/postgres_array.ts";
import type { SqlExecutor } from "../../internal/postgres_client.ts";
import { toSafeNumber } from "../../internal/safe_number.ts";
import type { SqlIdentifier } from "../../internal/sql_identifier.ts";
import { storeTables } from "../../store/migration.ts";
import type { EventStore, PersistedEvent } from "../../store/types.ts";
import type {
  BatchOutcome,
  BatchRequest,
  BatchSession,
  CoordinationChange,
  Coordinator,
  DeadLetterRecord,
  GapSkipRecord,
  LeaderElection,
  LeaderElectionSettings,
  ListenerHandle,
} from "../core/coordination.ts";
import { AdvisoryElection, type ElectionContext, LeaseElection } from "./leadership.ts";
import type { GapToken, WindowRead } from "../core/gap_rule.ts";
import { rejectOnAbort } from "../core/wakeup.ts";
import {
  BatchClosedError,
  DeadLetterNotFoundError,
  WorkerIdInUseError,
  WorkerSetupError,
} from "../errors.ts";
import { begin } from "../../internal/transaction.ts";
import type { GapBlocker, GapWait, WorkerTransaction } from "../types.ts";
import { guardTransaction } from "./guarded_transaction.ts";
import { GAP_BLOCKERS_SQL, GAP_RESOLVED_SQL, GAP_TOKEN_SQL } from "./gap_horizon.ts";
import {
  affected,
  type Executor,
  prepares,
  run,
  statement,
} from "../../internal/postgres_query.ts";
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

/** Settings of {@link PostgresCoordinator}. */
export interface PostgresCoordinatorSettings {
  readonly tables: WorkerTables;
  /** The LISTEN channel (validated), or null when notifications are not used. */
  readonly notifyChannel: SqlIdentifier | null;
  /** The coordination channel (joins, leaves, assignment changes), or null: polling only. */
  readonly coordinationChannel?: SqlIdentifier | null;
  /** Connection for LISTEN; derived from the pool when omitted. */
  // deno-lint-ignore no-explicit-any
  readonly notifyConnection?: string | postgres.Options<any>;
}

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

/** Options for a dedicated connection, derived from the pool's own. */
// deno-lint-ignore no-explicit-any
function dedicated(sql: postgres.Sql<any>, extra: Record<string, unknown>): postgres.Sql {
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

/**
 * The PostgreSQL coordinator (see the coordination port). One instance serves one worker at a
 * time; `close` releases the connections it opened itself (cancel and LISTEN), never the pool.
 * Internal: the public face is `Worker`.
 */
export class PostgresCoordinator implements Coordinator<WorkerTransaction> {
  // deno-lint-ignore no-explicit-any
  readonly #sql: postgres.Sql<any>;
  readonly #store: WorkerStore;
  readonly #settings: PostgresCoordinatorSettings;
  readonly #events: SqlIdentifier;
  readonly #sequence: SqlIdentifier;
  #control: postgres.Sql | null = null;
  /**
   * Whether the backend pid postgres.js got at connect time is the backend that runs the batch:
   * not behind a transaction pooler (PgBouncer hands out keys of its own). Learnt from the first
   * fence, which returns `pg_backend_pid()`; null until then.
   */
  #connectPidIsBackend: boolean | null = null;
  /** LISTEN clients, open or still connecting: `close` ends them all. */
  readonly #listeners = new Set<postgres.Sql>();
  readonly #q: Record<string, string>;
  #nodesOid: Promise<string> | null = null;
  /** Set by `prepare` on a server of one session (the embedded PGlite): see `singleSession`. */
  #singleSession = false;

  /** Prepares the SQL text once. */
  // deno-lint-ignore no-explicit-any
  constructor(sql: postgres.Sql<any>, store: WorkerStore, settings: PostgresCoordinatorSettings) {
    this.#sql = sql;
    this.#store = store;
    this.#settings = settings;
    const { events, sequence } = storeTables({ eventsTable: store.eventsTable });
    this.#events = events;
    this.#sequence = sequence;
    const { nodes: N, assignments: A, checkpoints: C, gapSkips: G, deadLetters: D } =
      settings.tables;
    this.#q = {
      nodesOid: `SELECT to_regclass($1)::oid::text`,
      version: `SELECT version()`,
      cleanup: `DELETE FROM ${N.quoted}
        WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'`,
      notify: `SELECT pg_notify($1, $2)`,
      unregisterNotify: `WITH d AS (DELETE FROM ${N.quoted} WHERE worker_id = $1 RETURNING 1)
        SELECT pg_notify($2, $3) FROM d`,
      assigned: `SELECT consumer_name FROM ${A.quoted} WHERE worker_id = $1`,
      register: `INSERT INTO ${N.quoted} AS n (worker_id, consumers, started_at, heartbeat_at)
        VALUES ($1, $2::text[], now(), now())
        ON CONFLICT (worker_id) DO UPDATE SET consumers = excluded.consumers, started_at = now(), heartbeat_at = now()
        WHERE n.heartbeat_at < now() - $3::bigint * interval '1 millisecond'`,
      ensureAssignments: `INSERT INTO ${A.quoted} (consumer_name) SELECT unnest($1::text[])
        ON CONFLICT (consumer_name) DO NOTHING`,
      ensureCheckpoints: `INSERT INTO ${C.quoted} (consumer_name) SELECT unnest($1::text[])
        ON CONFLICT (consumer_name) DO NOTHING`,
      heartbeat: `UPDATE ${N.quoted} SET heartbeat_at = now() WHERE worker_id = $1`,
      unregister: `DELETE FROM ${N.quoted} WHERE worker_id = $1`,
      checkpoint: `SELECT last_position FROM ${C.quoted} WHERE consumer_name = $1`,
      blocking: `SELECT global_position FROM ${D.quoted}
        WHERE consumer_name = $1 AND NOT skipped AND resolved_at IS NULL`,
      // The gap token, its resolution and its blockers: see ./gap_horizon.ts.
      token: GAP_TOKEN_SQL,
      resolved: GAP_RESOLVED_SQL,
      blockers: GAP_BLOCKERS_SQL,
      reportGap:
        `UPDATE ${C.quoted} SET gap_position = $2::bigint, gap_since = $3::text::timestamptz,
        gap_blockers = $4::text::jsonb WHERE consumer_name = $1`,
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
      gapSkip: `INSERT INTO ${G.quoted} (consumer_name, worker_id, gap_position, skip_to_position,
          skipped_positions, highest_visible_position, first_seen_at)
        VALUES ($1, $2, $3::bigint, $4::bigint, $5::text::bigint[], $6::bigint, $7::text::timestamptz)`,
      lockAssignment: `SELECT 1 FROM ${A.quoted} WHERE consumer_name = $1 FOR UPDATE`,
      redriveFind: `SELECT 1 FROM ${D.quoted}
        WHERE consumer_name = $1 AND global_position = $2::bigint AND skipped AND redriven_at IS NULL
        FOR UPDATE`,
      redriven: `UPDATE ${D.quoted} SET redriven_at = now(), updated_at = now()
        WHERE consumer_name = $1 AND global_position = $2::bigint`,
      tables:
        `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL,
        to_regclass($4) IS NOT NULL, to_regclass($5) IS NOT NULL, to_regclass($6) IS NOT NULL,
        to_regclass($7) IS NOT NULL`,
      sequence: `SELECT s.seqcache, s.seqrelid::regclass::text FROM pg_sequence s
        WHERE s.seqrelid = coalesce(to_regclass(pg_get_serial_sequence($1, 'global_position')), to_regclass($2))`,
    };
  }

  /**
   * Checks that the worker's and the store's tables exist and the position sequence has CACHE 1,
   * and finds out whether the server has one session only (see `singleSession`).
   */
  async prepare(): Promise<void> {
    const [[version]] = await run(this.#sql, this.#q.version);
    // "PostgreSQL 18.6 (PGlite 0.5.14) on wasm32-unknown-emscripten, ...".
    this.#singleSession = /\(PGlite |wasm32-unknown-emscripten/.test(String(version));
    const t = this.#settings.tables;
    const names = [
      t.nodes,
      t.assignments,
      t.checkpoints,
      t.gapSkips,
      t.deadLetters,
      t.leader,
      this.#events,
    ];
    const [present] = await run(this.#sql, this.#q.tables, names.map((n) => n.quoted));
    const missing = names.filter((_, i) => present[i] !== true).map((n) => n.text);
    if (missing.length > 0) {
      throw new WorkerSetupError(
        `missing tables: ${missing.join(", ")}; apply the store and worker migrations first ` +
          `(migrate() from @eventsalsa/eventsalsa/store and /worker, or "eventsalsa migrate")`,
      );
    }
    const rows = await run(this.#sql, this.#q.sequence, [
      this.#events.quoted,
      this.#sequence.quoted,
    ]);
    if (rows.length === 0) {
      throw new WorkerSetupError(
        `cannot find the sequence behind ${this.#events.text}.global_position (expected ${this.#sequence.text})`,
      );
    }
    await this.#oid();
    const cache = toSafeNumber(rows[0][0], "cache_size");
    if (cache !== 1) {
      throw new WorkerSetupError(
        `sequence ${
          rows[0][1]
        } has CACHE ${cache}; the worker's gap rule needs positions drawn in time ` +
          `order: run ALTER SEQUENCE ${rows[0][1]} CACHE 1`,
      );
    }
  }

  /**
   * True once `prepare` found a server that serves one session to every connection: the embedded
   * PGlite. Every connection beyond the pool's is refused there, and postgres.js retries a refused
   * connection that has a query waiting at once, without back-off: a loop that burns a core and
   * can keep the process from exiting. So on such a server this coordinator opens none: no
   * coordination or notify LISTEN (the runtime polls), no advisory session (the lease election
   * runs instead), no cancel connection.
   */
  get singleSession(): boolean {
    return this.#singleSession;
  }

  /** The oid of the worker_nodes table: the advisory lock key's low half, the notification tag. */
  #oid(): Promise<string> {
    this.#nodesOid ??= run(this.#sql, this.#q.nodesOid, [this.#settings.tables.nodes.quoted]).then(
      ([[oid]]) => {
        if (oid === null) throw new WorkerSetupError("the worker tables are missing");
        return oid as string;
      },
    );
    this.#nodesOid.catch(() => (this.#nodesOid = null));
    return this.#nodesOid;
  }

  get #channel(): SqlIdentifier | null {
    return this.#singleSession ? null : this.#settings.coordinationChannel ?? null;
  }

  /** Notifies `change` on `sql` (inside a transaction: delivered on commit). */
  async #announce(sql: Executor, change: CoordinationChange, oid: string | null): Promise<void> {
    const channel = this.#channel;
    if (channel === null || oid === null) return;
    await run(sql, this.#q.notify, [channel.name, `${change}:${oid}`]);
  }

  /** The oid when notifications are on (fetched before a transaction: a pool of one would wait). */
  async #tag(): Promise<string | null> {
    return this.#channel === null ? null : await this.#oid();
  }

  /** Deletes registrations silent for longer than `olderThanMs`; announces it when any went. */
  async cleanupStaleWorkers(olderThanMs: number): Promise<number> {
    const removed = await affected(this.#sql, this.#q.cleanup, [Math.round(olderThanMs)]);
    if (removed > 0) await this.#announce(this.#sql, "membership", await this.#tag());
    return removed;
  }

  /** Registers the worker and makes sure every consumer has assignment and checkpoint rows. */
  async registerWorker(
    workerId: string,
    consumers: readonly string[],
    heartbeatTimeoutMs: number,
  ): Promise<void> {
    const names = textArrayLiteral(consumers);
    const tag = await this.#tag();
    await begin(this.#sql, async (tx) => {
      const inserted = await affected(tx, this.#q.register, [
        workerId,
        names,
        Math.round(heartbeatTimeoutMs),
      ]);
      if (inserted === 0) throw new WorkerIdInUseError(workerId);
      await affected(tx, this.#q.ensureAssignments, [names]);
      await affected(tx, this.#q.ensureCheckpoints, [names]);
      await this.#announce(tx, "membership", tag);
    });
  }

  /** Refreshes the heartbeat; false when the row is gone. */
  async heartbeat(workerId: string): Promise<boolean> {
    return (await affected(this.#sql, this.#q.heartbeat, [workerId])) === 1;
  }

  /**
   * Deletes the registration (the foreign keys free its assignments and drop its lease) and
   * announces it. Retried on a deadlock with a concurrent rebalance.
   */
  async unregisterWorker(workerId: string): Promise<void> {
    const channel = this.#channel;
    for (let attempt = 1;; attempt++) {
      try {
        if (channel === null) await affected(this.#sql, this.#q.unregister, [workerId]);
        else {
          await run(this.#sql, this.#q.unregisterNotify, [
            workerId,
            channel.name,
            `membership:${await this.#oid()}`,
          ]);
        }
        return;
      } catch (error) {
        if ((error as { code?: string })?.code !== "40P01" || attempt >= 3) throw error;
      }
    }
  }

  /** The consumers assigned to `workerId`. */
  async assignedConsumers(workerId: string): Promise<string[]> {
    return (await run(this.#sql, this.#q.assigned, [workerId])).map((row) => row[0] as string);
  }

  /**
   * The leader election of `workerId`: advisory lock or lease (see ./leadership.ts); the lease
   * on a single-session server, whatever the strategy.
   */
  leaderElection(workerId: string, settings: LeaderElectionSettings): LeaderElection {
    const context: ElectionContext = {
      sql: this.#sql,
      prepare: prepares(this.#sql),
      tables: this.#settings.tables,
      channel: this.#channel,
      nodesOid: () => this.#oid(),
      cancel: (pid) => this.#cancel(pid),
      openSession: () => dedicated(this.#sql, { onnotice: () => {} }),
    };
    return settings.strategy === "lease" || this.#singleSession
      ? new LeaseElection(context, workerId, settings)
      : new AdvisoryElection(context, workerId, settings);
  }

  /** LISTEN for coordination changes of this schema's fleet; null without a channel. */
  async openChangeListener(
    onChange: (change: CoordinationChange) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    const channel = this.#channel;
    if (channel === null) return null;
    const tag = `:${await this.#oid()}`;
    return await this.#listen(channel, (payload) => {
      if (!payload.endsWith(tag)) return; // another schema's fleet on the same database
      const kind = payload.slice(0, -tag.length);
      if (kind === "membership" || kind === "assignments") onChange(kind);
    }, onClose);
  }

  /** The checkpoint, 0 when there is none. */
  async readCheckpoint(consumer: string): Promise<number> {
    const rows = await run(this.#sql, this.#q.checkpoint, [consumer]);
    return rows.length === 0 ? 0 : toSafeNumber(rows[0][0], "last_position");
  }

  /** Unresolved, non-skipped dead letters. */
  async blockingDeadLetters(consumer: string): Promise<number[]> {
    const rows = await run(this.#sql, this.#q.blocking, [consumer]);
    return rows.map((row) => toSafeNumber(row[0], "global_position"));
  }

  async #token(sql: Executor): Promise<GapToken> {
    const [[token]] = await run(sql, this.#q.token);
    return token as string;
  }

  async #resolved(sql: Executor, token: GapToken | null): Promise<boolean> {
    if (token === null) return false;
    const [[resolved]] = await run(sql, this.#q.resolved, [token as string]);
    return resolved === true;
  }

  /** Resolution check first, then the read (a later statement sees every settled position). */
  readWindow(
    afterPosition: number,
    limit: number,
    pendingToken: GapToken | null,
    signal: AbortSignal,
  ): Promise<WindowRead> {
    const read = (async (): Promise<WindowRead> => {
      const pendingResolved = await this.#resolved(this.#sql, pendingToken);
      const events = await this.#store.readEvents(this.#sql, afterPosition, limit);
      return { events, pendingResolved, token: () => this.#token(this.#sql) };
    })();
    return Promise.race([read, rejectOnAbort(signal)]);
  }

  /** The highest visible position. */
  latestPosition(): Promise<number> {
    return this.#store.latestPosition(this.#sql);
  }

  /**
   * The transactions holding the wait (see ./gap_horizon.ts): this database's running ones the
   * token lists, or without a list every running one older than its horizon, this database's
   * first. Another database's query text is never read into the report.
   */
  async gapBlockers(token: GapToken): Promise<GapBlocker[]> {
    return (await run(this.#sql, this.#q.blockers, [token as string])).map(toBlocker);
  }

  /** Writes (or clears) the gap columns of the checkpoint row. */
  async reportGap(consumer: string, gap: GapWait | null): Promise<void> {
    await affected(this.#sql, this.#q.reportGap, [
      consumer,
      gap?.position ?? null,
      gap === null ? null : new Date(gap.since).toISOString(),
      gap === null ? null : JSON.stringify(gap.blockers),
    ]);
  }

  /** Cancels whatever runs on backend `pid`, from a connection of its own. */
  async #cancel(pid: number): Promise<void> {
    if (this.#singleSession) return; // no second connection; PGlite ignores cancel requests anyway
    this.#control ??= dedicated(this.#sql, { onnotice: () => {} });
    await run(this.#control, "SELECT pg_cancel_backend($1::int)", [pid]);
  }

  /**
   * The batch transaction. Round trips: BEGIN; the fence (`FOR UPDATE` on the assignment and
   * checkpoint rows) pipelined with the in-transaction window read when asked for; the handlers'
   * statements; the checkpoint update pipelined with COMMIT. On abort it cancels the statement
   * running on the transaction's backend (from a connection of its own) and rolls back.
   */
  async runBatch<T>(
    request: BatchRequest,
    work: (session: BatchSession<WorkerTransaction>) => Promise<T>,
  ): Promise<BatchOutcome<T>> {
    const { consumer, workerId, expectedCheckpoint, signal, read } = request;
    if (signal.aborted) throw signal.reason;
    // Open until the signal fires, the work ends, or the connection is lost. Closed first thing
    // on abort (before any cancel or rollback), so no statement of the batch is sent after it.
    let open = true;
    const close = () => (open = false);
    signal.addEventListener("abort", close, { once: true });
    let cleanup = () => {};
    const save: { pending: Promise<{ count: number }> | null } = { pending: null };
    try {
      const outcome = await begin(this.#sql, async (raw, link): Promise<BatchOutcome<T>> => {
        const isOpen = () => open && !link.lost;
        const fenceQuery = statement(raw, this.#q.fence, [
          consumer,
          request.idleTimeout === undefined ? null : String(Math.round(request.idleTimeout)),
        ]).execute();
        const resolvedQuery = read !== null && read.pendingToken !== null
          ? statement(raw, this.#q.resolved, [read.pendingToken as string]).execute()
          : null;
        const eventsRead = read === null
          ? null
          : this.#store.readEvents(raw, expectedCheckpoint, read.limit);
        eventsRead?.catch(() => {});
        const cancel: { running: Promise<void> | null } = { running: null };
        // The transaction's backend as the server names it (the fence returns it): behind a
        // transaction pooler the key postgres.js got at connect time names no server backend.
        let backend: number | null = null;
        const connectPid = () =>
          (fenceQuery as unknown as { state?: { pid?: number } | null }).state?.pid;
        (fenceQuery as unknown as Promise<unknown[][]>).then((rows) => {
          if (rows.length === 0) return;
          backend = Number(rows[0][3]);
          this.#connectPidIsBackend ??= connectPid() === backend;
        }, () => {});
        const aborted = new Promise<never>((_, reject) => {
          const onAbort = () => {
            close();
            // Before the fence answered: the connect-time pid, the transaction's backend unless
            // this coordinator has seen a pooler hand out pids of its own.
            const pid = backend ??
              (this.#connectPidIsBackend === false ? undefined : connectPid());
            const running = pid === undefined
              ? Promise.resolve()
              : this.#cancel(pid).catch(() => {});
            cancel.running = running;
            void running.then(() => reject(signal.reason));
          };
          if (signal.aborted) onAbort();
          else signal.addEventListener("abort", onAbort, { once: true });
          cleanup = () => signal.removeEventListener("abort", onAbort);
        });
        aborted.catch(() => {});
        const guarded = <V>(promise: Promise<V>): Promise<V> => Promise.race([promise, aborted]);

        const fence = await guarded(fenceQuery as unknown as Promise<unknown[][]>);
        const owner = fence.length === 0 ? null : fence[0][0] as string | null;
        if (owner !== workerId) return { kind: "notOwner", owner };
        const current = toSafeNumber(fence[0][1], "last_position");
        if (current !== expectedCheckpoint) return { kind: "checkpointMoved", checkpoint: current };
        let windowRead: WindowRead | null = null;
        if (eventsRead !== null) {
          const pendingResolved = resolvedQuery === null
            ? false
            : (await guarded(resolvedQuery as unknown as Promise<unknown[][]>))[0][0] === true;
          const events = await guarded(eventsRead);
          windowRead = { events, pendingResolved, token: () => this.#token(raw) };
        }
        const tx = guardTransaction(raw, isOpen, consumer);
        const session = this.#session(
          raw,
          tx,
          consumer,
          expectedCheckpoint,
          windowRead,
          save,
          () => {
            if (!isOpen()) throw new BatchClosedError(consumer);
          },
        );
        let value: T;
        try {
          value = await guarded(work(session));
        } finally {
          // Whatever the handler still has running sends nothing more: not before COMMIT (it would
          // join a batch already decided), not after it (it would run outside any transaction).
          close();
        }
        if (signal.aborted || link.lost) {
          // Aborted as the work finished: do not commit a batch the worker has given up on.
          await cancel.running;
          throw signal.aborted ? signal.reason : new BatchClosedError(consumer);
        }
        return { kind: "committed", value };
      });
      if (outcome.kind === "committed" && save.pending !== null) {
        // The update went out pipelined with COMMIT. Had it failed, PostgreSQL turned the COMMIT
        // into a rollback (postgres.js still resolves it): its own promise tells.
        const { count } = await save.pending;
        if (count !== 1) throw new Error(`checkpoint of ${consumer} moved under the fence`);
      }
      return outcome;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw error;
    } finally {
      close();
      signal.removeEventListener("abort", close);
      cleanup();
    }
  }

  #session(
    raw: Executor,
    tx: WorkerTransaction,
    consumer: string,
    expectedCheckpoint: number,
    read: WindowRead | null,
    save: { pending: Promise<{ count: number }> | null },
    assertOpen: () => void,
  ): BatchSession<WorkerTransaction> {
    const q = this.#q;
    return {
      tx,
      read,
      saveCheckpoint: (position: number) => {
        assertOpen();
        // Sent now, awaited by runBatch after COMMIT: the batch's last statement shares COMMIT's
        // round trip. The fence holds the row, so the update cannot miss.
        const pending = raw.unsafe(q.save, [consumer, position, expectedCheckpoint], {
          prepare: prepares(raw),
        }).execute() as unknown as Promise<{ count: number }>;
        pending.catch(() => {});
        save.pending = pending;
        return Promise.resolve();
      },
      recordDeadLetter: async (record: DeadLetterRecord) => {
        assertOpen();
        const e = record.event;
        await affected(raw, q.deadLetter, [
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
      },
      resolveDeadLetters: async (name: string, positions: readonly number[]) => {
        assertOpen();
        await affected(raw, q.resolve, [name, `{${positions.join(",")}}`]);
      },
      recordGapSkip: async (record: GapSkipRecord) => {
        assertOpen();
        await affected(raw, q.gapSkip, [
          record.consumer,
          record.workerId,
          record.gapPosition,
          record.skipTo,
          `{${record.skippedPositions.join(",")}}`,
          record.highestVisible,
          new Date(record.firstSeenAt).toISOString(),
        ]);
      },
    };
  }

  /** Redrives a skipped dead letter (see the port), serialised with batches by the assignment row. */
  async redriveDeadLetter<T>(
    consumer: string,
    position: number,
    work: (tx: WorkerTransaction, event: PersistedEvent) => Promise<T>,
  ): Promise<T> {
    let open = true;
    try {
      return await begin(this.#sql, async (raw, link) => {
        await run(raw, this.#q.lockAssignment, [consumer]);
        if ((await run(raw, this.#q.redriveFind, [consumer, position])).length === 0) {
          throw new DeadLetterNotFoundError(consumer, position);
        }
        const [event] = await this.#store.readEvents(raw, position - 1, 1);
        if (event === undefined || event.globalPosition !== position) {
          throw new DeadLetterNotFoundError(consumer, position, "the event is not in the store");
        }
        let result: T;
        try {
          result = await work(guardTransaction(raw, () => open && !link.lost, consumer), event);
        } finally {
          open = false;
        }
        await affected(raw, this.#q.redriven, [consumer, position]);
        return result;
      }) as T;
    } finally {
      open = false;
    }
  }

  /** LISTEN on a dedicated connection; `onClose` fires once if it drops. */
  openListener(
    onNotify: () => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle> {
    const channel = this.#settings.notifyChannel;
    if (channel === null) {
      return Promise.reject(
        new WorkerSetupError("no notify channel configured for the notify dispatcher"),
      );
    }
    return this.#listen(channel, () => onNotify(), onClose);
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
    const connection = this.#settings.notifyConnection;
    // One connection that never idles out or retires: a retired LISTEN connection would read as lost.
    const single = {
      ...hooks,
      max: 1,
      idle_timeout: null,
      max_lifetime: null,
      fetch_types: false,
    } as never;
    const listener = connection === undefined
      ? dedicated(this.#sql, hooks)
      : typeof connection === "string"
      ? postgres(connection, single)
      : postgres({ ...connection, ...(single as object) } as never);
    this.#listeners.add(listener);
    const close = async () => {
      closing = true;
      this.#listeners.delete(listener);
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

  /** Ends the connections this coordinator opened for itself. */
  async close(): Promise<void> {
    const control = this.#control;
    this.#control = null;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    await Promise.all([
      control?.end({ timeout: 1 }),
      ...listeners.map((listener) => listener.end({ timeout: 0 }).catch(() => {})),
    ]);
  }
}
