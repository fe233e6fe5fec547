/**
 * Shared by the command tests: a counter domain, and harnesses that run the same scenarios on the
 * in-memory store and on PostgreSQL (the test database).
 */
import type postgres from "postgres";
import { defineEvents, type DomainEvent, eventType } from "../store/event_registry.ts";
import { migrate as migrateStore } from "../store/migration.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import type { Event, EventStore } from "../store/types.ts";
import { InMemoryEventStore } from "../testing/in_memory_store.ts";
import { InMemorySnapshotStore } from "../testing/in_memory_snapshot_store.ts";
import { testDatabase } from "../testing/test_database.ts";
import type { Decider } from "./decider.ts";
import { migrate as migrateSnapshots } from "./migration.ts";
import { PostgresSnapshotStore } from "./snapshot_store_postgres.ts";
import type { SnapshotStore, StoredSnapshot } from "./snapshots.ts";

export const definitions = {
  Incremented: eventType<{ by: number }>(),
  Reset: eventType<Record<string, never>>(),
};
export const CounterEvents = defineEvents(definitions);
export type CounterEvent = DomainEvent<typeof definitions>;
export type Counter = { count: number; events: number };
export type CounterCommand =
  | { type: "increment"; by: number }
  | { type: "reset" }
  | { type: "noop" }
  | { type: "fail" };

export class CounterError extends Error {
  override readonly name = "CounterError";
}

export const counter: Decider<Counter, CounterCommand, CounterEvent> = {
  initialState: () => ({ count: 0, events: 0 }),
  evolve: (state, event) =>
    event.type === "Incremented"
      ? { count: state.count + event.data.by, events: state.events + 1 }
      : { count: 0, events: state.events + 1 },
  decide: (command, state) => {
    switch (command.type) {
      case "increment":
        if (command.by <= 0) throw new CounterError("count up only");
        return [{ type: "Incremented", data: { by: command.by } }];
      case "reset":
        return state.count === 0 ? [] : { type: "Reset", data: {} };
      case "noop":
        return [];
      case "fail":
        throw new CounterError("refused");
    }
  },
};

/** The stored events of a counter: `by` of each increment. */
export function increments(type: string, id: string, values: readonly number[]): Event[] {
  return CounterEvents.toEvents(
    { aggregateType: type, aggregateId: id },
    values.map((by) => ({ type: "Incremented" as const, data: { by } })),
  );
}

// deno-lint-ignore no-explicit-any
type AnyTx = any;

/** One backend for the shared scenarios. */
export interface Harness {
  readonly name: string;
  readonly store: EventStore<AnyTx>;
  readonly snapshots: SnapshotStore<AnyTx>;
  /** What `handle` gets to open its own transactions (pool or in-memory store). */
  readonly pool: AnyTx;
  /** A second, independent writer (another connection). */
  readonly other: AnyTx;
  /** Null when several connections work; else why the test must skip. */
  readonly concurrencySkip: string | null;
  transaction<T>(work: (tx: AnyTx) => Promise<T>): Promise<T>;
  truncateSnapshots(): Promise<void>;
  /** Every stored snapshot row. */
  snapshotRows(): Promise<StoredSnapshot[]>;
  /**
   * Replaces a stream's events with `values` (what a restore from an older backup, or a rewrite,
   * does), leaving the snapshots alone.
   */
  rewriteStream(type: string, id: string, values: readonly number[]): Promise<void>;
  /** A pool whose statements are counted (PostgreSQL only). */
  countingPool?(): { pool: AnyTx; statements: string[] };
  close(): Promise<void>;
}

export function memoryHarness(): Promise<Harness> {
  let store = new InMemoryEventStore();
  const snapshots = new InMemorySnapshotStore();
  const harness: Harness = {
    name: "in memory",
    get store() {
      return store;
    },
    snapshots,
    get pool() {
      return store;
    },
    get other() {
      return store;
    },
    concurrencySkip: null,
    transaction: (work) => store.transaction(work),
    truncateSnapshots: () => Promise.resolve(snapshots.clear()),
    snapshotRows: () => Promise.resolve(snapshots.snapshots()),
    async rewriteStream(type, id, values) {
      // The in-memory log cannot delete: move every other stream to a fresh store.
      const fresh = new InMemoryEventStore();
      const byAggregate = new Map<string, Event[]>();
      for await (const event of store.iterateEvents(store)) {
        if (event.aggregateType === type && event.aggregateId === id) continue;
        const key = `${event.aggregateType}\u0000${event.aggregateId}`;
        const list = byAggregate.get(key) ?? [];
        list.push({ ...event });
        byAggregate.set(key, list);
      }
      for (const events of byAggregate.values()) {
        await fresh.append(fresh, { kind: "any" }, events);
      }
      if (values.length > 0) {
        await fresh.append(fresh, { kind: "any" }, increments(type, id, values));
      }
      store = fresh;
    },
    close: () => Promise.resolve(),
  };
  return Promise.resolve(harness);
}

export async function postgresHarness(): Promise<Harness> {
  const db = await testDatabase();
  const pool = db.connect({ max: db.supportsConcurrency ? 10 : 1 });
  const other = db.supportsConcurrency ? db.connect({ max: 2 }) : pool;
  await migrateStore(pool);
  await migrateSnapshots(pool);
  const snapshots = new PostgresSnapshotStore();
  return {
    name: `PostgreSQL (${db.kind})`,
    store: new PostgresStore(),
    snapshots,
    pool,
    other,
    concurrencySkip: db.concurrencySkipReason,
    transaction: (work) => pool.begin(work) as Promise<never>,
    async truncateSnapshots() {
      await pool`TRUNCATE snapshots`;
    },
    async snapshotRows() {
      const rows = await pool<{ t: string; i: string; s: number }[]>`
        SELECT aggregate_type AS t, aggregate_id AS i, schema_version AS s FROM snapshots`;
      const out: StoredSnapshot[] = [];
      for (const row of rows) {
        const found = await snapshots.get(pool, row.t, row.i, row.s);
        if (found) out.push(found);
      }
      return out;
    },
    async rewriteStream(type, id, values) {
      await pool.begin(async (tx: postgres.TransactionSql) => {
        await tx`DELETE FROM events WHERE aggregate_type = ${type} AND aggregate_id = ${id}`;
        await tx`DELETE FROM aggregate_heads WHERE aggregate_type = ${type} AND aggregate_id = ${id}`;
        if (values.length > 0) {
          await new PostgresStore().append(tx, { kind: "any" }, increments(type, id, values));
        }
      });
    },
    countingPool() {
      const statements: string[] = [];
      const counted = db.connect({ max: 1, debug: (_c, query) => statements.push(query) });
      return { pool: counted, statements };
    },
    close: () => db.close(),
  };
}

export const harnesses: readonly (() => Promise<Harness>)[] = [memoryHarness, postgresHarness];
