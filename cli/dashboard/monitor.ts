/**
 * What the dashboard shows, read from the database by polling: the worker's `status()` (fleet,
 * leader, assignments, checkpoints, lag, gap waits), the open dead letters, the schema versions and
 * counts of the encryption key table. The lag history behind the chart and the events/s rates are
 * kept in memory from these polls. Nothing here reads key material, subject ids or another
 * database's SQL text.
 *
 * @module
 */
import type postgres from "postgres";
import { type ComponentSchema, schemaStates } from "../../internal/migration.ts";
import { run } from "../../internal/postgres_query.ts";
import { toSafeNumber } from "../../internal/safe_number.ts";
import { type KeyStoreTableOptions, keyStoreTables } from "../../encryption/migration.ts";
import { status as workerStatus, type StatusOptions } from "../../worker/postgres/status.ts";
import type { WorkerTables } from "../../worker/postgres/tables.ts";
import { type DeadLetterRow, listDeadLetters } from "../dead_letters.ts";
import { schemaSummary } from "../migrate.ts";

/**
 * A transaction that may still commit the position a consumer waits at. The query text is there
 * only for a transaction of the dashboard's own database (the worker's status never copies another
 * database's SQL).
 *
 * @example
 * ```ts
 * const line = (b: BlockerView) => `pid ${b.pid} ${b.state} for ${b.transactionAgeMs} ms`;
 * ```
 */
export interface BlockerView {
  pid: number | null;
  xid: string | null;
  database: string | null;
  transactionAgeMs: number | null;
  state: string | null;
  applicationName: string | null;
  query: string | null;
}

/**
 * One consumer as the page shows it.
 *
 * @example
 * ```ts
 * const behind = (c: ConsumerView) => c.lag > 0 && c.gap === null;
 * ```
 */
export interface ConsumerView {
  name: string;
  workerId: string | null;
  checkpoint: number;
  lag: number;
  /** Events handled per second over the last few polls (checkpoint progress); null at first. */
  rate: number | null;
  updatedAt: string | null;
  gap: {
    position: number;
    since: string;
    waitingMs: number;
    blockers: BlockerView[];
  } | null;
  deadLetters: { blocking: number; skipped: number };
  gapSkips: number;
}

/**
 * Counts of the encryption key table; never key material nor subject ids.
 *
 * @example
 * ```ts
 * const text = (e: EncryptionView) =>
 *   e.installed ? `${e.subjects} subjects, ${e.destroyedSubjects} destroyed` : "not installed";
 * ```
 */
export type EncryptionView =
  | { installed: false; table: string; checkedAt: string }
  | {
    installed: true;
    table: string;
    checkedAt: string;
    /** Subjects (scope and id) with at least one data key. */
    subjects: number;
    /** Data-key versions stored. */
    keys: number;
    /** Versions not revoked (the active one of each subject, usually). */
    activeKeys: number;
    /** Subjects whose keys were destroyed (crypto-shredded), from the tombstone table. */
    destroyedSubjects: number | null;
    /** Data keys and subjects per system key id. */
    bySystemKey: Array<{ systemKeyId: string; keys: number; subjects: number }>;
  };

/**
 * Everything one poll saw, as JSON for the page.
 *
 * @example
 * ```ts
 * const live = (s: DashboardSnapshot) => s.workers.filter((w) => w.live).length;
 * ```
 */
export interface DashboardSnapshot {
  /** When the poll finished (ISO). */
  at: string;
  /** The last poll's failure (masked), or null; the rest is then the last good poll. */
  error: string | null;
  schema: { upToDate: boolean; summary: string } | null;
  latestPosition: number;
  /** Events appended per second over the last few polls; null at first. */
  appendRate: number | null;
  leader: { workerId: string; strategy: string; since: string; expiresAt: string | null } | null;
  workers: Array<{
    workerId: string;
    live: boolean;
    startedAt: string;
    heartbeatAt: string;
    /** Milliseconds since the last heartbeat, by the database's clock. */
    heartbeatAgeMs: number;
    consumers: string[];
  }>;
  consumers: ConsumerView[];
  deadLetters: { open: number; shown: DeadLetterRow[] };
  encryption: EncryptionView | null;
}

/**
 * A point of the lag chart: when, the latest position and each consumer's lag.
 *
 * @example
 * ```ts
 * const lagOf = (s: LagSample, consumer: string) => s.lags[consumer] ?? 0;
 * ```
 */
export interface LagSample {
  /** Milliseconds since the epoch. */
  t: number;
  latestPosition: number;
  lags: Record<string, number>;
  checkpoints: Record<string, number>;
}

/**
 * Where and how the monitor reads.
 *
 * @example
 * ```ts
 * import { workerTables } from "../../worker/postgres/tables.ts";
 * declare const sql: import("postgres").Sql;
 * const options: MonitorOptions = {
 *   sql,
 *   status: {},
 *   tables: workerTables(),
 *   keys: {},
 *   schemas: [],
 *   intervalMs: 2000,
 *   historyMs: 600_000,
 *   redact: (text) => text,
 * };
 * ```
 */
export interface MonitorOptions {
  sql: postgres.Sql;
  /** Table names and heartbeat timeout, as for `status()`. */
  status: StatusOptions;
  tables: WorkerTables;
  keys: KeyStoreTableOptions;
  /** The schemas whose versions are checked. */
  schemas: ComponentSchema[];
  intervalMs: number;
  /** How much lag history to keep. */
  historyMs: number;
  /** Masks database passwords in error messages. */
  redact: (text: string) => string;
  /** Open dead letters listed at most (100). */
  deadLetterLimit?: number;
  /** How often the schema versions and the key counts are read again (30 s, or `intervalMs`). */
  slowIntervalMs?: number;
  /** Milliseconds since the epoch; `Date.now` by default. */
  now?: () => number;
}

const MAX_ERROR_LENGTH = 500;
const MAX_QUERY_LENGTH = 200;

/**
 * Polls the database every `intervalMs` and keeps the last snapshot and the lag history.
 *
 * @example
 * ```ts
 * declare const options: MonitorOptions;
 * const monitor = new Monitor(options);
 * monitor.subscribe((snapshot, sample) => console.log(snapshot.latestPosition, sample?.lags));
 * const controller = new AbortController();
 * void monitor.run(controller.signal);
 * ```
 */
export class Monitor {
  readonly #options: MonitorOptions;
  readonly #now: () => number;
  #snapshot: DashboardSnapshot | null = null;
  #samples: LagSample[] = [];
  #slowAt = -Infinity;
  #schema: DashboardSnapshot["schema"] = null;
  #encryption: EncryptionView | null = null;
  readonly #listeners = new Set<(snapshot: DashboardSnapshot, sample: LagSample | null) => void>();
  #wake: (() => void) | null = null;
  #failure: unknown = null;

  /** A monitor that does not poll until {@link Monitor.run} or {@link Monitor.poll}. */
  constructor(options: MonitorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** The last snapshot, or null before the first poll ended. */
  get snapshot(): DashboardSnapshot | null {
    return this.#snapshot;
  }

  /** What the last poll threw, or null when it succeeded. */
  get lastFailure(): unknown {
    return this.#failure;
  }

  /** The lag history, oldest first. */
  get samples(): readonly LagSample[] {
    return this.#samples;
  }

  /** Calls `listener` after each poll; returns the function that unsubscribes. */
  subscribe(listener: (snapshot: DashboardSnapshot, sample: LagSample | null) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Polls now instead of at the end of the current wait (after an action). */
  pollSoon(): void {
    this.#wake?.();
  }

  /** Polls every `intervalMs` until `signal` aborts; a failed poll is reported, not thrown. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      // A poll that just ran (the command's first) is not repeated at once.
      if (this.#snapshot !== null) await this.#wait(signal);
      if (signal.aborted) return;
      await this.poll();
    }
  }

  /** Waits `intervalMs`, or less when aborted or woken by {@link Monitor.pollSoon}. */
  #wait(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, this.#options.intervalMs);
      signal.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  /** One poll: reads everything, updates the history, tells the subscribers. */
  async poll(): Promise<DashboardSnapshot> {
    let snapshot: DashboardSnapshot;
    let sample: LagSample | null = null;
    try {
      snapshot = await this.#read();
      sample = {
        t: Date.parse(snapshot.at),
        latestPosition: snapshot.latestPosition,
        lags: Object.fromEntries(snapshot.consumers.map((c) => [c.name, c.lag])),
        checkpoints: Object.fromEntries(snapshot.consumers.map((c) => [c.name, c.checkpoint])),
      };
      this.#record(sample, snapshot);
      this.#failure = null;
    } catch (error) {
      this.#failure = error;
      const message = error instanceof Error ? error.message : String(error);
      const masked = this.#options.redact(message.split("\n")[0]).slice(0, MAX_ERROR_LENGTH);
      snapshot = {
        ...(this.#snapshot ?? emptySnapshot()),
        at: new Date(this.#now()).toISOString(),
        error: masked,
      };
    }
    this.#snapshot = snapshot;
    for (const listener of this.#listeners) {
      try {
        listener(snapshot, sample);
      } catch {
        // a listener's failure (a closed stream) is its own business
      }
    }
    return snapshot;
  }

  async #read(): Promise<DashboardSnapshot> {
    const o = this.#options;
    // Heartbeats are stamped with the database's clock: ages are measured on it, not on ours.
    const [[databaseNow]] = await run(o.sql, "SELECT clock_timestamp()");
    const skew = (databaseNow as Date).getTime() - this.#now();
    const report = await workerStatus(o.sql, o.status);
    const letters = await listDeadLetters(o.sql, o.tables, { limit: o.deadLetterLimit ?? 100 });
    const now = this.#now();
    if (now - this.#slowAt >= (o.slowIntervalMs ?? Math.max(o.intervalMs, 30_000))) {
      const states = await schemaStates(o.sql, o.schemas);
      this.#schema = {
        upToDate: states.every((s) => s.pending.length === 0 && !s.ahead),
        summary: schemaSummary(states),
      };
      this.#encryption = await countKeys(o.sql, o.keys, now);
      this.#slowAt = now;
    }
    const redact = o.redact;
    return {
      at: new Date(now).toISOString(),
      error: null,
      schema: this.#schema,
      latestPosition: report.latestPosition,
      appendRate: null,
      leader: report.leader === null ? null : {
        workerId: report.leader.workerId,
        strategy: report.leader.strategy,
        since: report.leader.since.toISOString(),
        expiresAt: report.leader.expiresAt?.toISOString() ?? null,
      },
      workers: report.workers.map((w) => ({
        workerId: w.workerId,
        live: w.live,
        startedAt: w.startedAt.toISOString(),
        heartbeatAt: w.heartbeatAt.toISOString(),
        heartbeatAgeMs: Math.max(0, now + skew - w.heartbeatAt.getTime()),
        consumers: [...w.consumers].sort(),
      })),
      consumers: report.consumers.map((c) => ({
        name: c.name,
        workerId: c.workerId,
        checkpoint: c.checkpoint,
        lag: c.lag,
        rate: null,
        updatedAt: c.updatedAt?.toISOString() ?? null,
        gap: c.gap === null ? null : {
          position: c.gap.position,
          since: c.gap.since.toISOString(),
          waitingMs: c.gap.waitingMs,
          // Field by field: only what the page shows, and the query text only as the worker's
          // status gives it (this database's transactions; never another database's).
          blockers: c.gap.blockers.map((b) => ({
            pid: b.pid,
            xid: b.xid,
            database: b.database ?? null,
            transactionAgeMs: b.transactionAgeMs,
            state: b.state,
            applicationName: b.applicationName,
            query: typeof b.query === "string" ? redact(b.query).slice(0, MAX_QUERY_LENGTH) : null,
          })),
        },
        deadLetters: { ...c.deadLetters },
        gapSkips: c.gapSkips,
      })),
      deadLetters: {
        open: report.consumers.reduce(
          (sum, c) => sum + c.deadLetters.blocking + c.deadLetters.skipped,
          0,
        ),
        shown: letters.map((l) => ({ ...l, error: redact(l.error).slice(0, MAX_ERROR_LENGTH) })),
      },
      encryption: this.#encryption,
    };
  }

  /** Appends the sample, drops what is older than the history, fills in the rates. */
  #record(sample: LagSample, snapshot: DashboardSnapshot): void {
    const o = this.#options;
    this.#samples.push(sample);
    const oldest = sample.t - o.historyMs;
    while (this.#samples.length > 0 && this.#samples[0].t < oldest) this.#samples.shift();
    // Rates over a window of a few polls (at least 5 s), to smooth out batch boundaries.
    const window = Math.max(5_000, 3 * o.intervalMs);
    const base = this.#samples.find((s) => s.t >= sample.t - window) ?? sample;
    const seconds = (sample.t - base.t) / 1000;
    if (base === sample || seconds <= 0) return;
    snapshot.appendRate = Math.max(0, (sample.latestPosition - base.latestPosition) / seconds);
    for (const consumer of snapshot.consumers) {
      const before = base.checkpoints[consumer.name];
      if (before !== undefined) {
        consumer.rate = Math.max(0, (consumer.checkpoint - before) / seconds);
      }
    }
  }
}

function emptySnapshot(): DashboardSnapshot {
  return {
    at: new Date(0).toISOString(),
    error: null,
    schema: null,
    latestPosition: 0,
    appendRate: null,
    leader: null,
    workers: [],
    consumers: [],
    deadLetters: { open: 0, shown: [] },
    encryption: null,
  };
}

/**
 * Counts of the key table and its tombstones, or "not installed" when the key table is absent.
 * Only `count`s are selected: no key material, no subject ids leave the database.
 *
 * @example
 * ```ts
 * declare const sql: import("postgres").Sql;
 * const view = await countKeys(sql, { table: "encryption_keys" });
 * ```
 */
export async function countKeys(
  sql: postgres.Sql,
  options: KeyStoreTableOptions,
  now: number = Date.now(),
): Promise<EncryptionView> {
  const { keys, tombstones } = keyStoreTables(options);
  const checkedAt = new Date(now).toISOString();
  const [[keysExist, tombstonesExist]] = await run(
    sql,
    "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL",
    [keys.quoted, tombstones.quoted],
  );
  if (keysExist !== true) return { installed: false, table: keys.text, checkedAt };
  const perSystemKey = await run(
    sql,
    `SELECT system_key_id, count(*), count(DISTINCT (scope, scope_id)),
      count(*) FILTER (WHERE revoked_at IS NULL)
    FROM ${keys.quoted} GROUP BY system_key_id ORDER BY system_key_id COLLATE "C"`,
  );
  const [[subjects]] = await run(
    sql,
    `SELECT count(*) FROM (SELECT DISTINCT scope, scope_id FROM ${keys.quoted}) AS s`,
  );
  let destroyed: number | null = null;
  if (tombstonesExist === true) {
    const [[count]] = await run(sql, `SELECT count(*) FROM ${tombstones.quoted}`);
    destroyed = toSafeNumber(count, "tombstones");
  }
  const bySystemKey = perSystemKey.map((r) => ({
    systemKeyId: r[0] as string,
    keys: toSafeNumber(r[1], "keys"),
    subjects: toSafeNumber(r[2], "subjects"),
    active: toSafeNumber(r[3], "active keys"),
  }));
  return {
    installed: true,
    table: keys.text,
    checkedAt,
    subjects: toSafeNumber(subjects, "subjects"),
    keys: bySystemKey.reduce((sum, k) => sum + k.keys, 0),
    activeKeys: bySystemKey.reduce((sum, k) => sum + k.active, 0),
    destroyedSubjects: destroyed,
    bySystemKey: bySystemKey.map(({ systemKeyId, keys, subjects }) => ({
      systemKeyId,
      keys,
      subjects,
    })),
  };
}
