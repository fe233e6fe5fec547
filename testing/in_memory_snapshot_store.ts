import {
  checkMaxSchemaVersion,
  checkSnapshotIdentity,
  checkStoredSnapshot,
  type SnapshotIdentity,
  type SnapshotStore,
  type StoredSnapshot,
} from "../command/snapshots.ts";
import { checkAggregate } from "../store/validation.ts";
import { InMemoryEventStore, InMemoryTransaction } from "./in_memory_store.ts";

type Rows = Map<number, StoredSnapshot>;
type Staged = { snapshot: StoredSnapshot; replacing: SnapshotIdentity | null };

const keyOf = (type: string, id: string): string => `${type}\u0000${id}`;

function copy(snapshot: StoredSnapshot, createdAt: Date): StoredSnapshot {
  return { ...snapshot, payload: snapshot.payload.slice(), createdAt };
}

/** Whether `next` may replace `current` under the monotonic rule (or as the named orphan). */
function replaces(
  current: StoredSnapshot | undefined,
  next: StoredSnapshot,
  replacing: SnapshotIdentity | null,
): boolean {
  if (current === undefined || next.aggregateVersion >= current.aggregateVersion) return true;
  return replacing !== null && current.aggregateVersion === replacing.aggregateVersion &&
    current.eventId.toLowerCase() === replacing.eventId.toLowerCase();
}

/**
 * Snapshots in memory, with `PostgresSnapshotStore`'s semantics, joined to the
 * {@link InMemoryEventStore}'s transactions: a snapshot put in a transaction is seen by that
 * transaction at once and by everyone after commit, and vanishes on rollback. The put is monotonic
 * (checked again at commit). Use it with the command handler over the in-memory store.
 *
 * @example
 * ```ts
 * import { InMemoryEventStore, InMemorySnapshotStore } from "@eventsalsa/eventsalsa/testing";
 * const events = new InMemoryEventStore();
 * const snapshots = new InMemorySnapshotStore();
 * console.log(await snapshots.get(events, "Account", "acc-1", 1)); // null
 * snapshots.clear(); // like TRUNCATE: snapshots are disposable
 * ```
 */
export class InMemorySnapshotStore
  implements SnapshotStore<InMemoryTransaction | InMemoryEventStore> {
  #rows = new Map<string, Rows>();
  #pending = new WeakMap<InMemoryTransaction, Map<string, Map<number, Staged>>>();

  /**
   * The snapshot with the highest schema version ≤ `maxSchemaVersion`, as `tx` sees it, or null.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore, InMemorySnapshotStore } from "@eventsalsa/eventsalsa/testing";
   * const events = new InMemoryEventStore();
   * const snapshot = await new InMemorySnapshotStore().get(events, "Account", "acc-1", 2);
   * ```
   */
  get(
    tx: InMemoryTransaction | InMemoryEventStore,
    aggregateType: string,
    aggregateId: string,
    maxSchemaVersion: number,
  ): Promise<StoredSnapshot | null> {
    try {
      const key = checkAggregate(aggregateType, aggregateId);
      const max = checkMaxSchemaVersion(maxSchemaVersion);
      if (tx instanceof InMemoryTransaction) tx.assertUsable();
      const k = keyOf(key.aggregateType, key.aggregateId);
      const staged = tx instanceof InMemoryTransaction ? this.#pending.get(tx)?.get(k) : undefined;
      const visible = new Map(this.#rows.get(k));
      for (const [schema, { snapshot }] of staged ?? []) visible.set(schema, snapshot);
      let best: StoredSnapshot | null = null;
      for (const [schema, row] of visible) {
        if (schema <= max && (best === null || schema > best.schemaVersion)) best = row;
      }
      return Promise.resolve(best === null ? null : copy(best, best.createdAt ?? new Date()));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Writes the snapshot unless a higher version is stored under its key; see
   * `SnapshotStore.put`. In a transaction, it lands on commit.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore, InMemorySnapshotStore } from "@eventsalsa/eventsalsa/testing";
   * const events = new InMemoryEventStore();
   * const written = await new InMemorySnapshotStore().put(events, {
   *   aggregateType: "Account",
   *   aggregateId: "acc-1",
   *   schemaVersion: 1,
   *   aggregateVersion: 3,
   *   eventId: "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6f",
   *   encoding: "json",
   *   payload: new TextEncoder().encode('{"balance":5}'),
   * }, null);
   * ```
   */
  put(
    tx: InMemoryTransaction | InMemoryEventStore,
    snapshot: StoredSnapshot,
    replacing: SnapshotIdentity | null,
  ): Promise<boolean> {
    try {
      const checked = copy(checkStoredSnapshot(snapshot), new Date());
      const orphan = checkSnapshotIdentity(replacing);
      const k = keyOf(checked.aggregateType, checked.aggregateId);
      if (tx instanceof InMemoryEventStore) {
        return Promise.resolve(this.#apply(k, checked, orphan));
      }
      tx.assertUsable();
      let pending = this.#pending.get(tx);
      if (pending === undefined) {
        this.#pending.set(tx, pending = new Map());
        const staged = pending;
        tx.onCommit(() => {
          for (const [key, rows] of staged) {
            for (const row of rows.values()) this.#apply(key, row.snapshot, row.replacing);
          }
        });
      }
      const own = pending.get(k)?.get(checked.schemaVersion)?.snapshot;
      const current = own ?? this.#rows.get(k)?.get(checked.schemaVersion);
      if (!replaces(current, checked, orphan)) return Promise.resolve(false);
      let rows = pending.get(k);
      if (rows === undefined) pending.set(k, rows = new Map());
      rows.set(checked.schemaVersion, { snapshot: checked, replacing: orphan });
      return Promise.resolve(true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #apply(key: string, snapshot: StoredSnapshot, replacing: SnapshotIdentity | null): boolean {
    let rows = this.#rows.get(key);
    if (!replaces(rows?.get(snapshot.schemaVersion), snapshot, replacing)) return false;
    if (rows === undefined) this.#rows.set(key, rows = new Map());
    rows.set(snapshot.schemaVersion, snapshot);
    return true;
  }

  /**
   * Every committed snapshot, for assertions.
   *
   * @example
   * ```ts
   * import { InMemorySnapshotStore } from "@eventsalsa/eventsalsa/testing";
   * console.log(new InMemorySnapshotStore().snapshots().length); // 0
   * ```
   */
  snapshots(): StoredSnapshot[] {
    return [...this.#rows.values()].flatMap((rows) =>
      [...rows.values()].map((row) => copy(row, row.createdAt ?? new Date()))
    );
  }

  /**
   * Drops every committed snapshot, like `TRUNCATE`: loads replay from the events until the next
   * snapshot is written.
   *
   * @example
   * ```ts
   * import { InMemorySnapshotStore } from "@eventsalsa/eventsalsa/testing";
   * new InMemorySnapshotStore().clear();
   * ```
   */
  clear(): void {
    this.#rows.clear();
  }
}
