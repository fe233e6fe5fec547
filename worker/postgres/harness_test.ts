// A PostgreSQL harness for the worker's tests: an isolated schema with the store and worker
// tables, a read model with a primary key on (consumer, position) written through the batch
// transaction, and helpers to append, hold an append open, and read state. Named `*_test.ts` so
// it is never published; it defines no tests itself.
import type postgres from "postgres";
import { any } from "../../store/expected_version.ts";
import { migrate as migrateStore } from "../../store/migration.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { FakeClock } from "../../testing/fake_clock.ts";
import { type TestDatabase, testDatabase } from "../../testing/test_database.ts";
import type { WorkerOptions } from "../options.ts";
import { draft } from "../support_test.ts";
import type { Consumer, WorkerTransaction } from "../types.ts";
import { Worker } from "../worker.ts";
import { migrate } from "./migration.ts";

export interface Held {
  readonly position: number;
  /** The backend pid of the holding transaction. */
  readonly pid: number;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

export interface PgHarness {
  readonly db: TestDatabase;
  readonly sql: postgres.Sql;
  readonly store: PostgresStore;
  readonly clock: FakeClock;
  append(aggregateType?: string, eventType?: string): Promise<number>;
  hold(aggregateType?: string): Promise<Held>;
  /** A consumer inserting (consumer, position, worker) into the read model through `tx`. */
  projection(name: string, extra?: Partial<Consumer>): Consumer;
  rows(consumer: string): Promise<number[]>;
  checkpoint(consumer: string): Promise<number>;
  /** A worker on the harness pool, or on `pool` (for fleets needing more connections). */
  worker(consumers: Consumer[], options?: WorkerOptions, pool?: postgres.Sql): Worker;
  close(): Promise<void>;
}

/** Options for {@link pgHarness}. */
export interface PgHarnessOptions {
  prepare?: boolean;
  notifyChannel?: string;
  /**
   * A transaction pooler's URL (PgBouncer): the pools go through it with `prepare: false`, and
   * workers use the lease strategy with their LISTEN connections on the server directly
   * (docs/pgbouncer.md).
   */
  pooler?: string;
}

export async function pgHarness(options: PgHarnessOptions = {}): Promise<PgHarness> {
  const db = await testDatabase({ prepare: options.prepare ?? true, pooler: options.pooler });
  const sql = db.sql;
  await migrateStore(sql);
  await migrate(sql);
  await sql.unsafe(`CREATE TABLE read_model (
    consumer TEXT NOT NULL, position BIGINT NOT NULL, handled_by TEXT NOT NULL,
    PRIMARY KEY (consumer, position))`);
  const store = new PostgresStore({ notifyChannel: options.notifyChannel ?? null });
  const clock = new FakeClock(Date.now());
  const workers: Worker[] = [];
  const holds: Held[] = [];
  return {
    db,
    sql,
    store,
    clock,
    async append(aggregateType = "Order", eventType = "OrderPlaced") {
      const result = await sql.begin((tx) =>
        store.append(tx, any(), [draft(aggregateType, undefined, eventType)])
      );
      return result.globalPositions[0];
    },
    async hold(aggregateType = "Order") {
      let finish!: (commit: boolean) => void;
      const decided = new Promise<boolean>((resolve) => (finish = resolve));
      let ready!: (value: { position: number; pid: number }) => void;
      const started = new Promise<{ position: number; pid: number }>((
        resolve,
      ) => (ready = resolve));
      const done = sql.begin(async (tx) => {
        const [{ pid }] = await tx`SELECT pg_backend_pid() AS pid`;
        const result = await store.append(tx, any(), [draft(aggregateType)]);
        ready({ position: result.globalPositions[0], pid: Number(pid) });
        if (!await decided) throw new Error("held append rolled back");
      }).catch((error) => {
        if (!String(error?.message).includes("held append rolled back")) throw error;
      });
      const { position, pid } = await started;
      const held = {
        position,
        pid,
        commit: async () => (finish(true), await done),
        rollback: async () => (finish(false), await done),
      };
      holds.push(held);
      return held;
    },
    projection(name, extra = {}) {
      return {
        name,
        async handle(tx: WorkerTransaction, event, context) {
          await tx`INSERT INTO read_model (consumer, position, handled_by)
            VALUES (${name}, ${event.globalPosition}, ${context.workerId})`;
        },
        ...extra,
      };
    },
    async rows(consumer) {
      const rows =
        await sql`SELECT position FROM read_model WHERE consumer = ${consumer} ORDER BY position`;
      return rows.map((r) => Number(r.position));
    },
    async checkpoint(consumer) {
      const rows =
        await sql`SELECT last_position FROM consumer_checkpoints WHERE consumer_name = ${consumer}`;
      return rows.length === 0 ? 0 : Number(rows[0].last_position);
    },
    worker(consumers, extra = {}, pool = sql) {
      const worker = new Worker(pool, store, consumers, {
        clock,
        workerId: `w-${workers.length + 1}`,
        pollInterval: 1_000,
        // Fake time runs ahead of real I/O in these tests: keep the timeout out of the way.
        batchTimeout: 3_600_000,
        // The embedded PGlite serves one session: no dedicated connections (advisory session,
        // LISTEN) there.
        ...(db.supportsConcurrency
          ? {}
          : { leaderStrategy: "lease" as const, coordinationChannel: null }),
        // Behind a transaction pooler: no session advisory lock, LISTEN past the pooler.
        ...(options.pooler === undefined
          ? {}
          : { leaderStrategy: "lease" as const, notifyConnection: db.directUrl }),
        ...extra,
      });
      workers.push(worker);
      return worker;
    },
    async close() {
      await Promise.all(workers.map((w) => w.stop()));
      // A failed test may leave an append open: end it, or closing the pool would hang on it.
      await Promise.all(holds.map((held) => held.rollback()));
      await db.close();
    },
  };
}

/** Skips a test that needs several connections, printing why (the embedded PGlite has one session). */
export function skipWithoutConcurrency(
  t: { name?: string; skip(message?: string): void },
  db: TestDatabase,
): boolean {
  if (db.supportsConcurrency) return false;
  console.log(`skipped "${t.name ?? "test"}": ${db.concurrencySkipReason}`);
  t.skip(db.concurrencySkipReason!);
  return true;
}

/**
 * Runs `body` on a fresh harness and closes it after; skips with the printed reason when the test
 * needs several connections (`needsConcurrency`, the default) and the database serves one.
 */
export async function withPgHarness(
  t: { name?: string; skip(message?: string): void },
  options: PgHarnessOptions & { needsConcurrency?: boolean },
  body: (h: PgHarness) => Promise<void>,
): Promise<void> {
  const h = await pgHarness(options);
  try {
    if ((options.needsConcurrency ?? true) && skipWithoutConcurrency(t, h.db)) return;
    await body(h);
  } finally {
    await h.close();
  }
}
