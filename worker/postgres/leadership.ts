/**
 * Leader election on PostgreSQL, two strategies behind the core's `LeaderElection` port:
 *
 * - **advisory**: `pg_try_advisory_lock` on a session reserved for it: a dedicated one-connection
 *   postgres.js client derived from the pool's options (not `sql.reserve()`: a reserved
 *   connection whose backend is terminated throws an uncaught error inside postgres.js 3.4, and a
 *   reserved connection cannot be closed, only handed back to the pool). Every cycle the leader
 *   checks in `pg_locks` that *this session* (`pg_backend_pid()`, unchanged) still holds the
 *   lock — postgres.js reconnects transparently, and a ping would succeed on a new session that
 *   holds nothing. The rebalance runs on that same session and checks the lock again inside its
 *   transaction. A crashed leader's session ends and PostgreSQL frees the lock at once. In doubt,
 *   the leader closes the session, the one certain way to drop the lock; nothing it locked ever
 *   returns to the pool. Not for PgBouncer transaction pooling.
 * - **lease**: one row with `expires_at` in database time, acquired or renewed by a single
 *   upsert; the rebalance transaction first locks the row and checks the lease is this worker's
 *   and unexpired. No session state: safe behind PgBouncer transaction pooling.
 *
 * The advisory lock key is per worker schema: its high half is a constant, its low half the oid
 * of the `worker_nodes` table, so fleets in different schemas of one database elect separately.
 *
 * @module
 */
import type postgres from "postgres";
import { textArrayLiteral } from "../../internal/postgres_array.ts";
import type { SqlIdentifier } from "../../internal/sql_identifier.ts";
import type { AssignmentChange, AssignmentSnapshot, WorkerMembership } from "../core/assignment.ts";
import type { LeaderElection, LeaderElectionSettings } from "../core/coordination.ts";
import type { WorkerTables } from "./tables.ts";
import { begin } from "../../internal/transaction.ts";

/** High half of the advisory lock key ("esWr"); the low half is the worker_nodes table's oid. */
export const ADVISORY_LOCK_CLASSID = 0x65735772;

/** What an election needs from the coordinator. */
export interface ElectionContext {
  // deno-lint-ignore no-explicit-any
  readonly sql: postgres.Sql<any>;
  readonly prepare: boolean;
  readonly tables: WorkerTables;
  readonly channel: SqlIdentifier | null;
  /** The worker_nodes oid (lock key low half and notification tag). */
  nodesOid(): Promise<string>;
  /** Cancels the statement running on backend `pid`. */
  cancel(pid: number): Promise<void>;
  /** A dedicated one-connection client (never idles out or retires) for the advisory session. */
  openSession(): postgres.Sql;
}

type Runner = {
  unsafe(
    text: string,
    params?: unknown[],
    options?: { prepare?: boolean },
  ): postgres.PendingQuery<postgres.Row[]>;
};

async function rows(
  runner: Runner,
  prepare: boolean,
  text: string,
  params: unknown[] = [],
): Promise<unknown[][]> {
  return await runner.unsafe(text, params, { prepare }).values() as unknown as unknown[][];
}

/** The SQL both strategies share for the rebalance itself. */
function rebalanceQueries(t: WorkerTables) {
  return {
    live: `SELECT worker_id, array_to_json(consumers)::text FROM ${t.nodes.quoted}
      WHERE heartbeat_at >= now() - $1::bigint * interval '1 millisecond'`,
    assignments: `SELECT consumer_name, worker_id FROM ${t.assignments.quoted}`,
    lock: `SELECT consumer_name, worker_id FROM ${t.assignments.quoted}
      WHERE consumer_name = ANY($1::text[]) ORDER BY consumer_name COLLATE "C" FOR UPDATE`,
    update: `UPDATE ${t.assignments.quoted} AS a SET worker_id = u.worker_id, updated_at = now()
      FROM unnest($1::text[], $2::text[]) AS u(consumer_name, worker_id)
      WHERE a.consumer_name = u.consumer_name`,
    notify: `SELECT pg_notify($1, $2)`,
  };
}

/**
 * Reads, plans and writes inside the caller's open transaction (already fenced by leadership).
 * Returns the changes written, or "retry" when a row to change no longer holds what was read.
 */
async function rebalanceIn(
  runner: Runner,
  context: ElectionContext,
  settings: LeaderElectionSettings,
  plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
  oid: string,
): Promise<readonly AssignmentChange[] | "retry"> {
  const q = rebalanceQueries(context.tables);
  const prepare = context.prepare;
  const [live, current] = await Promise.all([
    rows(runner, prepare, q.live, [Math.round(settings.heartbeatTimeoutMs)]),
    rows(runner, prepare, q.assignments),
  ]);
  const workers: WorkerMembership[] = live.map((row) => ({
    workerId: row[0] as string,
    consumers: JSON.parse(row[1] as string) as string[],
  }));
  const assignments = new Map(current.map((row) => [row[0] as string, row[1] as string | null]));
  const changes = plan({ workers, assignments });
  if (changes.length === 0) return [];
  const names = changes.map((c) => c.consumer);
  // Lock the rows to change in name order (two leaders could never deadlock on them), waiting for
  // each one's running batch; then check nothing changed since the read.
  const locked = await rows(runner, prepare, q.lock, [textArrayLiteral(names)]);
  const now = new Map(locked.map((row) => [row[0] as string, row[1] as string | null]));
  if (changes.some((c) => !now.has(c.consumer) || now.get(c.consumer) !== c.from)) return "retry";
  await rows(runner, prepare, q.update, [
    textArrayLiteral(names),
    textArrayLiteral(changes.map((c) => c.to)),
  ]);
  if (context.channel !== null) {
    await rows(runner, prepare, q.notify, [
      context.channel.name,
      `assignments:${oid}`,
    ]);
  }
  return changes;
}

/** Cancels `pid`'s statement when `signal` aborts while `work` runs. */
async function cancellable<T>(
  context: ElectionContext,
  pid: () => number | null,
  signal: AbortSignal,
  work: () => Promise<T>,
): Promise<T> {
  if (signal.aborted) throw signal.reason;
  const onAbort = () => {
    const backend = pid();
    if (backend !== null) void context.cancel(backend).catch(() => {});
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await work();
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** The `advisory` strategy (see the module doc). */
export class AdvisoryElection implements LeaderElection {
  readonly #c: ElectionContext;
  readonly #workerId: string;
  readonly #settings: LeaderElectionSettings;
  /** The dedicated session: open while leading or trying to lead. */
  #session: postgres.Sql | null = null;
  #leading = false;
  #pid: number | null = null;
  #key: string | null = null;

  /** Creates the election; nothing happens until `acquire`. */
  constructor(context: ElectionContext, workerId: string, settings: LeaderElectionSettings) {
    this.#c = context;
    this.#workerId = workerId;
    this.#settings = settings;
  }

  async #lockKey(): Promise<string> {
    if (this.#key === null) {
      const oid = BigInt(await this.#c.nodesOid());
      this.#key = ((BigInt(ADVISORY_LOCK_CLASSID) << 32n) | oid).toString();
    }
    return this.#key;
  }

  static #held =
    `EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = ${ADVISORY_LOCK_CLASSID}::oid AND objid = $1::oid AND objsubid = 1 AND granted)`;

  /**
   * Leading: checks in `pg_locks` that this very session still holds the lock (a reconnected
   * session would answer a ping but hold nothing). Otherwise: tries the lock.
   */
  async acquire(): Promise<boolean> {
    const prepare = this.#c.prepare;
    this.#session ??= this.#c.openSession();
    const session = this.#session;
    try {
      if (this.#leading) {
        const [[held, pid]] = await rows(
          session,
          prepare,
          `SELECT ${AdvisoryElection.#held}, pg_backend_pid()`,
          [await this.#c.nodesOid()],
        );
        if (held === true && Number(pid) === this.#pid) return true;
        await this.#drop();
        return false;
      }
      const [[ok, pid]] = await rows(
        session,
        prepare,
        `SELECT pg_try_advisory_lock($1::bigint), pg_backend_pid()`,
        [await this.#lockKey()],
      );
      if (ok !== true) return false;
      this.#leading = true;
      this.#pid = Number(pid);
      // For status: who holds the lock (the row goes with the worker's registration).
      await rows(
        session,
        prepare,
        `INSERT INTO ${this.#c.tables.leader.quoted} AS l
          (lease_key, leader_id, strategy, acquired_at, expires_at)
        VALUES ('leader', $1, 'advisory', now(), NULL)
        ON CONFLICT (lease_key) DO UPDATE SET leader_id = excluded.leader_id, strategy = 'advisory',
          acquired_at = now(), expires_at = NULL, updated_at = now()`,
        [this.#workerId],
      );
      return true;
    } catch (error) {
      await this.#drop();
      throw error;
    }
  }

  /** Rebalances on the lock-holding session, checking the lock inside the transaction. */
  async rebalance(
    plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
    signal: AbortSignal,
  ): Promise<readonly AssignmentChange[] | null> {
    const session = this.#session;
    if (session === null || !this.#leading) return null;
    const prepare = this.#c.prepare;
    const expectedPid = this.#pid;
    const oid = await this.#c.nodesOid();
    return await cancellable(this.#c, () => this.#pid, signal, async () => {
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await begin(session, async (tx) => {
          const [[, held, pid]] = await rows(
            tx,
            prepare,
            `SELECT set_config('lock_timeout', $2, true), ${AdvisoryElection.#held},
              pg_backend_pid()`,
            [oid, String(Math.round(this.#settings.rebalanceLockTimeoutMs))],
          );
          if (held !== true || Number(pid) !== expectedPid) return null;
          return await rebalanceIn(tx, this.#c, this.#settings, plan, oid);
        }) as readonly AssignmentChange[] | "retry" | null;
        if (result === null) {
          await this.#drop();
          return null;
        }
        if (result !== "retry") return result;
      }
      return [];
    });
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
    if (leading) await session.unsafe("SELECT pg_advisory_unlock_all()").catch(() => {});
    await session.end({ timeout: 1 }).catch(() => {});
  }
}

/** The `lease` strategy (see the module doc). */
export class LeaseElection implements LeaderElection {
  readonly #c: ElectionContext;
  readonly #workerId: string;
  readonly #settings: LeaderElectionSettings;
  readonly #q: { acquire: string; release: string; fence: string };

  /** Creates the election; nothing happens until `acquire`. */
  constructor(context: ElectionContext, workerId: string, settings: LeaderElectionSettings) {
    this.#c = context;
    this.#workerId = workerId;
    this.#settings = settings;
    const L = context.tables.leader.quoted;
    this.#q = {
      acquire:
        `INSERT INTO ${L} AS l (lease_key, leader_id, strategy, acquired_at, expires_at, updated_at)
        VALUES ('leader', $1, 'lease', now(), now() + $2::bigint * interval '1 millisecond', now())
        ON CONFLICT (lease_key) DO UPDATE SET leader_id = excluded.leader_id, strategy = 'lease',
          acquired_at = CASE WHEN l.leader_id = excluded.leader_id AND l.expires_at > now()
            THEN l.acquired_at ELSE now() END,
          expires_at = excluded.expires_at, updated_at = now()
        WHERE l.leader_id = excluded.leader_id OR l.leader_id IS NULL OR l.expires_at IS NULL
          OR l.expires_at <= now()`,
      release: `UPDATE ${L} SET leader_id = NULL, expires_at = now() - interval '1 minute',
        updated_at = now() WHERE lease_key = 'leader' AND leader_id = $1`,
      fence: `SELECT set_config('lock_timeout', $2, true), pg_backend_pid() FROM ${L}
        WHERE lease_key = 'leader' AND leader_id = $1 AND expires_at > now() FOR UPDATE`,
    };
  }

  /** Acquires or renews the lease (held iff the upsert changed the row). */
  async acquire(): Promise<boolean> {
    try {
      const result = await this.#c.sql.unsafe(
        this.#q.acquire,
        [this.#workerId, Math.round(this.#settings.leaseMs)],
        { prepare: this.#c.prepare },
      );
      return result.count === 1;
    } catch (error) {
      // The registration is gone (foreign key): certainly not the leader.
      if ((error as { code?: string })?.code === "23503") return false;
      throw error;
    }
  }

  /** Rebalances in a pool transaction that first locks the lease row and checks it is ours. */
  async rebalance(
    plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
    signal: AbortSignal,
  ): Promise<readonly AssignmentChange[] | null> {
    let pid: number | null = null;
    // Fetched before the transaction: with a pool of one, a query beside it would wait forever.
    const oid = await this.#c.nodesOid();
    return await cancellable(this.#c, () => pid, signal, async () => {
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await begin(this.#c.sql, async (tx) => {
          const fence = await rows(tx, this.#c.prepare, this.#q.fence, [
            this.#workerId,
            String(Math.round(this.#settings.rebalanceLockTimeoutMs)),
          ]);
          if (fence.length === 0) return null;
          pid = Number(fence[0][1]);
          return await rebalanceIn(tx, this.#c, this.#settings, plan, oid);
        }) as readonly AssignmentChange[] | "retry" | null;
        if (result !== "retry") return result;
      }
      return [];
    });
  }

  /** Gives the lease up (a no-op when another worker holds it). */
  async release(): Promise<void> {
    await this.#c.sql.unsafe(this.#q.release, [this.#workerId], { prepare: this.#c.prepare });
  }
}
