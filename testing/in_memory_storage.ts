/**
 * The worker's storage port (`worker/core/storage.ts`) in memory: maps for registrations,
 * assignments, checkpoints, dead letters, gap skips and the leader, next to an
 * {@link InMemoryEventStore}. It makes no decision — the coordination protocol does — but it
 * behaves like a PostgreSQL connection where the protocol could go wrong, so that the multi-worker
 * simulation, which runs the production protocol over it, catches a protocol defect:
 *
 * - **Row locks.** A consumer's rows are locked by `lockConsumer` and `lockAssignments` until the
 *   transaction ends; `lockAssignments` (and every lock wait) gives up after the transaction's
 *   `lockTimeout`, by the storage's clock. Deleting a registration waits for the consumers it
 *   unassigns (the foreign key's cascade) and for transactions assigning to it (the foreign key's
 *   check); a cycle of waits fails one of them, as a deadlock does.
 * - **Commit.** A transaction's writes apply at commit and vanish on rollback; notifications are
 *   delivered after commit. A failed statement (or a cancelled one) aborts the transaction: its
 *   commit becomes a rollback. A transaction does not read its own writes (the protocol never
 *   needs to).
 * - **After the end.** A statement sent once the transaction has ended runs on its own, in
 *   auto-commit, as it would on the connection the transaction left behind: a row operation, or a
 *   handler's `tx.onCommit(fn)` through a handle whose `isOpen` still says true (`fn` runs at
 *   once). A lost connection fails every later statement instead.
 * - **The server's side.** `idleTimeout` (from `lockConsumer`) ends a transaction silent that
 *   long: it is marked `lost`, rolled back, its rows freed. `cancel()` fails the statement
 *   waiting in the transaction (`pg_cancel_backend`); {@link InMemoryStorage.terminate} ends the
 *   connection (`pg_terminate_backend`).
 * - **Leadership.** `advisory`: a lock held by the leader's session, which dies with it; the
 *   rebalance runs on that session. `lease`: an expiry by the storage's clock, its row locked by
 *   the rebalance transaction (a competing acquire waits for it).
 *
 * The gap rule's token is the list of positions open store transactions hold
 * (`InMemoryEventStore.inFlightPositions`), in place of PostgreSQL's snapshot.
 *
 * @module
 */
import { type Clock, systemClock } from "../internal/clock.ts";
import type { PersistedEvent } from "../store/types.ts";
import {
  type AssignmentChange,
  type AssignmentSnapshot,
  compareCodePoints,
  type WorkerMembership,
} from "../worker/core/assignment.ts";
import type {
  CoordinationChange,
  DeadLetterRecord,
  GapSkipRecord,
  ListenerHandle,
} from "../worker/core/coordination.ts";
import type { GapToken, WindowQuery, WindowRead } from "../worker/core/gap_rule.ts";
import { readCount, windowOf } from "../worker/core/window.ts";
import type {
  ConsumerRegistration,
  ConsumerRows,
  LeadershipSettings,
  LeadershipStorage,
  LockConsumerOptions,
  StatusRows,
  StorageInfo,
  StorageTransaction,
  TransactionOptions,
  WorkerRows,
  WorkerStorage,
} from "../worker/core/storage.ts";
import { BatchClosedError, errorText } from "../worker/errors.ts";
import type { GapBlocker, GapWait, LeaderStatus } from "../worker/types.ts";
import { type InMemoryEventStore, InMemoryTransaction } from "./in_memory_store.ts";

/**
 * A dead letter as the in-memory storage keeps it.
 *
 * @example
 * ```ts
 * import type { InMemoryDeadLetter } from "@eventsalsa/eventsalsa/testing";
 * const open = (d: InMemoryDeadLetter) => d.skipped && d.redrivenAt === null;
 * ```
 */
export interface InMemoryDeadLetter {
  /** The consumer that failed on the event. */
  readonly consumer: string;
  /** The event's global position. */
  readonly globalPosition: number;
  /** The event's id. */
  readonly eventId: string;
  /** The error text. */
  readonly error: string;
  /** Failed attempts so far. */
  readonly attempts: number;
  /** True: the checkpoint moved past it. False: the consumer stays at it. */
  readonly skipped: boolean;
  /** The worker that recorded it last. */
  readonly workerId: string;
  /** Clock time it was resolved (handled after all), or null. */
  readonly resolvedAt: number | null;
  /** Clock time it was redriven, or null. */
  readonly redrivenAt: number | null;
}

/**
 * One rebalance a leader committed, as the in-memory storage records it (for the simulation's
 * checks: what the leader read in its transaction, and what it changed).
 *
 * @example
 * ```ts
 * import type { InMemoryRebalance } from "@eventsalsa/eventsalsa/testing";
 * const moved = (r: InMemoryRebalance) => r.changes.filter((c) => c.from !== null).length;
 * ```
 */
export interface InMemoryRebalance {
  /** Storage clock time of the commit. */
  readonly at: number;
  /** The leader that wrote it. */
  readonly leader: string;
  /** What the leader read (live workers and assignments) in the same transaction. */
  readonly snapshot: AssignmentSnapshot;
  /** The rows it changed. */
  readonly changes: readonly AssignmentChange[];
}

// --- row locks -----------------------------------------------------------------------------------

/** PostgreSQL's row lock modes the storage needs: FOR KEY SHARE, FOR NO KEY UPDATE, FOR UPDATE. */
type LockMode = "keyShare" | "update" | "exclusive";

const CONFLICTS: Readonly<Record<LockMode, readonly LockMode[]>> = {
  keyShare: ["exclusive"],
  update: ["update", "exclusive"],
  exclusive: ["keyShare", "update", "exclusive"],
};
const STRENGTH: Readonly<Record<LockMode, number>> = { keyShare: 0, update: 1, exclusive: 2 };

/** A transaction, or one auto-commit statement, as the lock table knows it. */
class LockOwner {
  readonly held = new Set<string>();
  waiting: Waiter | null = null;
}

interface Waiter {
  readonly owner: LockOwner;
  readonly key: string;
  readonly mode: LockMode;
  readonly grant: () => void;
  readonly fail: (error: unknown) => void;
}

interface LockedRow {
  /** Each holder with the strongest mode it holds. */
  readonly holders: Map<LockOwner, LockMode>;
  readonly queue: Waiter[];
}

/** The row lock table: first come, first served, with lock timeouts and deadlock detection. */
class RowLocks {
  readonly #rows = new Map<string, LockedRow>();
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Takes the lock: null when granted at once (the statement goes on synchronously). */
  take(owner: LockOwner, key: string, mode: LockMode, timeoutMs?: number): Promise<void> | null {
    let row = this.#rows.get(key);
    if (row === undefined) this.#rows.set(key, row = { holders: new Map(), queue: [] });
    const held = row.holders.get(owner);
    if (held !== undefined && STRENGTH[held] >= STRENGTH[mode]) return null;
    if (row.queue.length === 0 && this.#blockers(row, owner, mode).length === 0) {
      this.#grant(row, owner, key, mode);
      return null;
    }
    if (this.#closesCycle(owner, row, mode)) {
      return Promise.reject(
        new Error(`deadlock detected waiting for the row lock on ${label(key)}`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      let timer: unknown = null;
      const done = () => {
        if (timer !== null) this.#clock.clearTimeout(timer);
        if (owner.waiting === waiter) owner.waiting = null;
      };
      const waiter: Waiter = {
        owner,
        key,
        mode,
        grant: () => {
          done();
          resolve();
        },
        fail: (error) => {
          done();
          const queue = this.#rows.get(key)?.queue;
          const at = queue?.indexOf(waiter) ?? -1;
          if (at >= 0) queue!.splice(at, 1);
          this.#drain(key);
          reject(error);
        },
      };
      if (timeoutMs !== undefined) {
        timer = this.#clock.setTimeout(
          () => waiter.fail(new Error(`canceling statement due to lock timeout on ${label(key)}`)),
          timeoutMs,
        );
      }
      row.queue.push(waiter);
      owner.waiting = waiter;
    });
  }

  /** Fails the owner's waiting statement, if any. */
  cancel(owner: LockOwner, error: unknown): void {
    owner.waiting?.fail(error);
  }

  /** Releases every lock of the owner (its transaction ended) and fails its waiting statement. */
  releaseAll(owner: LockOwner): void {
    owner.waiting?.fail(new Error("the transaction ended while the statement waited for a lock"));
    const keys = [...owner.held];
    owner.held.clear();
    for (const key of keys) {
      this.#rows.get(key)?.holders.delete(owner);
      this.#drain(key);
    }
  }

  #grant(row: LockedRow, owner: LockOwner, key: string, mode: LockMode): void {
    const held = row.holders.get(owner);
    row.holders.set(owner, held !== undefined && STRENGTH[held] > STRENGTH[mode] ? held : mode);
    owner.held.add(key);
  }

  #drain(key: string): void {
    const row = this.#rows.get(key);
    if (row === undefined) return;
    while (row.queue.length > 0) {
      const next = row.queue[0];
      if (this.#blockers(row, next.owner, next.mode).length > 0) break;
      row.queue.shift();
      this.#grant(row, next.owner, key, next.mode);
      next.grant();
    }
    if (row.holders.size === 0 && row.queue.length === 0) this.#rows.delete(key);
  }

  #blockers(row: LockedRow, owner: LockOwner, mode: LockMode): LockOwner[] {
    const blockers: LockOwner[] = [];
    for (const [holder, held] of row.holders) {
      if (holder !== owner && CONFLICTS[mode].includes(held)) blockers.push(holder);
    }
    return blockers;
  }

  /** Whether waiting would close a cycle: a blocker (transitively) waits for this owner. */
  #closesCycle(owner: LockOwner, row: LockedRow, mode: LockMode): boolean {
    const seen = new Set<LockOwner>();
    const stack = this.#blockers(row, owner, mode);
    while (stack.length > 0) {
      const next = stack.pop()!;
      if (next === owner) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      const waiting = next.waiting;
      const waited = waiting === null ? undefined : this.#rows.get(waiting.key);
      if (waited !== undefined) stack.push(...this.#blockers(waited, next, waiting!.mode));
    }
    return false;
  }
}

/** In the error of a transaction the server ended (idle timeout). */
export const ENDED_BY_THE_SERVER = "was ended by the server";

const nodeKey = (workerId: string) => `worker\u0000${workerId}`;
const consumerKey = (consumer: string) => `consumer\u0000${consumer}`;
const deadLetterKey = (consumer: string, position: number) =>
  `dead letter\u0000${consumer}\u0000${position}`;
const LEASE_KEY = "leader lease";
const label = (key: string) => key.replaceAll("\u0000", " ");

// --- the tables ----------------------------------------------------------------------------------

interface NodeRow {
  readonly startedAt: number;
  readonly heartbeatAt: number;
  readonly consumers: readonly string[];
}

interface CheckpointRow {
  readonly position: number;
  readonly updatedAt: number;
  readonly gap: GapWait | null;
}

interface Lease {
  readonly leaderId: string | null;
  readonly expiresAt: number;
  readonly since: number;
}

interface AdvisoryHolder {
  readonly workerId: string;
  readonly session: object;
  readonly since: number;
}

interface Subscription {
  readonly topic: "events" | "coordination";
  readonly onMessage: (change: CoordinationChange | null) => void;
  readonly lose: (error: unknown) => void;
}

interface InMemoryToken {
  readonly inFlight: readonly number[];
}

/** What a statement runs with: its locks, its writes and notifications, and what reads see. */
interface Scope {
  /** Takes a row lock (held until the transaction ends); null when granted at once. */
  lock(key: string, mode?: LockMode): Promise<void> | null;
  /** A write: applied at commit (in a transaction) or at once (auto-commit). */
  write(apply: () => void): void;
  /** A notification, delivered after commit. */
  notify(change: CoordinationChange): void;
  /** What store reads go through (a transaction sees its own appends). */
  readonly reader: InMemoryTransaction | InMemoryEventStore;
  /** The transaction, or null in auto-commit. */
  readonly tx: InMemoryStorageTransaction | null;
}

type Statement<T> = (scope: Scope) => T | Promise<T>;

function start<T>(statement: Statement<T>, scope: Scope): Promise<T> {
  try {
    return Promise.resolve(statement(scope));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Takes the locks in order; null when all were granted at once. */
function lockAll(scope: Scope, keys: readonly string[], mode?: LockMode): Promise<void> | null {
  for (let i = 0; i < keys.length; i++) {
    const wait = scope.lock(keys[i], mode);
    if (wait !== null) {
      return wait.then(() => lockAll(scope, keys.slice(i + 1), mode) ?? undefined);
    }
  }
  return null;
}

const byCodePoints = (a: string, b: string) => compareCodePoints(a, b);

/** The data and the lock table one storage shares between every connection to it. */
class Database {
  readonly store: InMemoryEventStore;
  readonly clock: Clock;
  readonly locks: RowLocks;
  readonly nodes = new Map<string, NodeRow>();
  readonly assignments = new Map<string, string | null>();
  readonly checkpoints = new Map<string, CheckpointRow>();
  readonly deadLetters = new Map<string, InMemoryDeadLetter>();
  readonly gapSkips: GapSkipRecord[] = [];
  readonly rebalances: InMemoryRebalance[] = [];
  readonly subscriptions = new Set<Subscription>();
  /** Open transactions by advisory session (a terminated session takes its transaction along). */
  readonly sessions = new Map<object, Set<InMemoryStorageTransaction>>();
  lease: Lease | null = null;
  advisory: AdvisoryHolder | null = null;

  constructor(store: InMemoryEventStore, clock: Clock) {
    this.store = store;
    this.clock = clock;
    this.locks = new RowLocks(clock);
  }

  /** One statement on its own: its locks are released and its writes applied when it ends. */
  autocommit<T>(statement: Statement<T>): Promise<T> {
    const owner = new LockOwner();
    const scope: Scope = {
      lock: (key, mode = "exclusive") => this.locks.take(owner, key, mode),
      // The statement checks first and writes last: a write is its own commit.
      write: (apply) => apply(),
      notify: (change) => this.deliver([change]),
      reader: this.store,
      tx: null,
    };
    return start(statement, scope).finally(() => this.locks.releaseAll(owner));
  }

  /** Delivers notifications as a NOTIFY does: after the commit, asynchronously. */
  deliver(changes: readonly CoordinationChange[]): void {
    if (changes.length === 0) return;
    const targets = [...this.subscriptions].filter((s) => s.topic === "coordination");
    queueMicrotask(() => {
      for (const change of changes) {
        for (const target of targets) {
          if (this.subscriptions.has(target)) target.onMessage(change);
        }
      }
    });
  }

  /** The consumers assigned to `workerId`, in code-point order. */
  owned(workerId: string): string[] {
    return [...this.assignments].filter(([, owner]) => owner === workerId).map(([name]) => name)
      .sort(byCodePoints);
  }

  /** Deletes a registration: its assignments become free, its lease row goes (the foreign keys). */
  removeNode(workerId: string): void {
    if (!this.nodes.delete(workerId)) return;
    for (const [name, owner] of this.assignments) {
      if (owner === workerId) this.assignments.set(name, null);
    }
    if (this.lease?.leaderId === workerId) this.lease = null;
  }

  token(): InMemoryToken {
    return { inFlight: this.store.inFlightPositions() };
  }

  resolved(token: GapToken | null): boolean {
    if (token === null) return false;
    const open = new Set(this.store.inFlightPositions());
    return (token as InMemoryToken).inFlight.every((position) => !open.has(position));
  }

  async read(
    reader: InMemoryTransaction | InMemoryEventStore,
    query: WindowQuery,
  ): Promise<WindowRead> {
    const pendingResolved = this.resolved(query.pendingToken);
    const scanned = await this.store.readEvents(reader, query.after, readCount(query));
    const window = windowOf(query, scanned);
    return { ...window, pendingResolved, token: () => Promise.resolve(this.token()) };
  }

  leader(): LeaderStatus | null {
    if (this.advisory !== null) {
      return {
        workerId: this.advisory.workerId,
        strategy: "advisory",
        since: new Date(this.advisory.since),
        expiresAt: null,
      };
    }
    const lease = this.lease;
    if (lease !== null && lease.leaderId !== null && lease.expiresAt > this.clock.now()) {
      return {
        workerId: lease.leaderId,
        strategy: "lease",
        since: new Date(lease.since),
        expiresAt: new Date(lease.expiresAt),
      };
    }
    return null;
  }

  deadLettersOf(consumer?: string): InMemoryDeadLetter[] {
    return [...this.deadLetters.values()]
      .filter((d) => consumer === undefined || d.consumer === consumer)
      .sort((a, b) =>
        compareCodePoints(a.consumer, b.consumer) || a.globalPosition - b.globalPosition
      );
  }
}

// --- the row vocabulary --------------------------------------------------------------------------

/** The port's row operations; how each statement runs (auto-commit or in a transaction) varies. */
abstract class RowStatements implements WorkerRows {
  protected readonly db: Database;

  constructor(db: Database) {
    this.db = db;
  }

  /** Runs one statement. */
  protected abstract run<T>(statement: Statement<T>): Promise<T>;

  registerWorker(
    workerId: string,
    consumers: readonly string[],
    heartbeatTimeoutMs: number,
  ): Promise<boolean> {
    const list = [...consumers];
    return this.run(async (s) => {
      const wait = s.lock(nodeKey(workerId));
      if (wait !== null) await wait;
      const now = this.db.clock.now();
      const existing = this.db.nodes.get(workerId);
      if (existing !== undefined && now - existing.heartbeatAt < heartbeatTimeoutMs) return false;
      s.write(() =>
        this.db.nodes.set(workerId, { startedAt: now, heartbeatAt: now, consumers: list })
      );
      return true;
    });
  }

  ensureConsumers(consumers: readonly ConsumerRegistration[]): Promise<void> {
    const list = consumers.map((c) => ({ ...c }));
    return this.run(async (s) => {
      // "end": the highest visible position as this statement reads it.
      const end = list.some((c) => c.startFrom === "end")
        ? await this.db.store.latestPosition(s.reader)
        : 0;
      s.write(() => {
        const now = this.db.clock.now();
        for (const { name, startFrom } of list) {
          if (!this.db.assignments.has(name)) this.db.assignments.set(name, null);
          if (!this.db.checkpoints.has(name)) {
            const position = startFrom === "end" ? end : startFrom;
            this.db.checkpoints.set(name, { position, updatedAt: now, gap: null });
          }
        }
      });
    });
  }

  heartbeat(workerId: string): Promise<boolean> {
    return this.run(async (s) => {
      const wait = s.lock(nodeKey(workerId), "update");
      if (wait !== null) await wait;
      if (!this.db.nodes.has(workerId)) return false;
      s.write(() => {
        const node = this.db.nodes.get(workerId);
        if (node !== undefined) {
          this.db.nodes.set(workerId, { ...node, heartbeatAt: this.db.clock.now() });
        }
      });
      return true;
    });
  }

  deleteWorker(workerId: string): Promise<boolean> {
    return this.run(async (s) => {
      // The row first (assignments to it wait from now on), then the cascade's rows.
      let wait = s.lock(nodeKey(workerId));
      if (wait !== null) await wait;
      if (!this.db.nodes.has(workerId)) return false;
      wait = lockAll(s, this.db.owned(workerId).map(consumerKey));
      if (wait !== null) await wait;
      s.write(() => this.db.removeNode(workerId));
      return true;
    });
  }

  deleteStaleWorkers(olderThanMs: number): Promise<number> {
    return this.run(async (s) => {
      const stale = (ids: Iterable<string>) => {
        const now = this.db.clock.now();
        return [...ids].filter((id) => {
          const node = this.db.nodes.get(id);
          return node !== undefined && now - node.heartbeatAt > olderThanMs;
        }).sort(byCodePoints);
      };
      const candidates = stale(this.db.nodes.keys());
      let wait = lockAll(s, candidates.map(nodeKey));
      if (wait !== null) await wait;
      // A heartbeat that got in before the lock saved its worker.
      const gone = stale(candidates);
      wait = lockAll(
        s,
        gone.flatMap((id) => this.db.owned(id)).sort(byCodePoints).map(consumerKey),
      );
      if (wait !== null) await wait;
      s.write(() => {
        for (const id of gone) this.db.removeNode(id);
      });
      return gone.length;
    });
  }

  liveWorkers(heartbeatTimeoutMs: number): Promise<WorkerMembership[]> {
    return this.run((s) => {
      const now = this.db.clock.now();
      const workers = [...this.db.nodes]
        .filter(([, node]) => now - node.heartbeatAt <= heartbeatTimeoutMs)
        .map(([workerId, node]) => ({ workerId, consumers: [...node.consumers] }));
      s.tx?.observed({ workers });
      return workers.map((w) => ({ ...w, consumers: [...w.consumers] }));
    });
  }

  assignments(): Promise<Map<string, string | null>> {
    return this.run((s) => {
      s.tx?.observed({ assignments: new Map(this.db.assignments) });
      return new Map(this.db.assignments);
    });
  }

  owned(workerId: string): Promise<Map<string, number>> {
    return this.run(() =>
      new Map(
        this.db.owned(workerId).map((name) => [name, this.db.checkpoints.get(name)?.position ?? 0]),
      )
    );
  }

  lockAssignments(consumers: readonly string[]): Promise<Map<string, string | null>> {
    const names = [...consumers];
    return this.run(async (s) => {
      const wait = lockAll(s, names.map(consumerKey));
      if (wait !== null) await wait;
      return new Map(
        names.filter((name) => this.db.assignments.has(name))
          .map((name) => [name, this.db.assignments.get(name) ?? null]),
      );
    });
  }

  writeAssignments(changes: readonly AssignmentChange[]): Promise<void> {
    const list = changes.map((c) => ({ ...c }));
    return this.run(async (s) => {
      // The foreign key's check: the new owners' rows are share-locked, so a deletion waits.
      const owners = [...new Set(list.flatMap((c) => c.to === null ? [] : [c.to]))]
        .sort(byCodePoints);
      let wait = lockAll(s, owners.map(nodeKey), "keyShare");
      if (wait !== null) await wait;
      for (const owner of owners) {
        if (!this.db.nodes.has(owner)) {
          throw new Error(
            `insert or update on the assignments violates the foreign key: worker ${owner} is not registered`,
          );
        }
      }
      wait = lockAll(s, list.map((c) => consumerKey(c.consumer)).sort(byCodePoints));
      if (wait !== null) await wait;
      s.write(() => {
        for (const change of list) this.db.assignments.set(change.consumer, change.to);
      });
      s.tx?.wrote(list);
    });
  }

  notify(change: CoordinationChange): Promise<void> {
    return this.run((s) => s.notify(change));
  }

  lockConsumer(consumer: string, options: LockConsumerOptions = {}): Promise<ConsumerRows | null> {
    const { read = null, idleTimeout } = options;
    return this.run(async (s) => {
      const wait = s.lock(consumerKey(consumer));
      if (wait !== null) await wait;
      if (idleTimeout !== undefined) s.tx?.idleAfter(consumer, idleTimeout);
      const checkpoint = this.db.checkpoints.get(consumer);
      if (!this.db.assignments.has(consumer) || checkpoint === undefined) return null;
      return {
        owner: this.db.assignments.get(consumer) ?? null,
        checkpoint: checkpoint.position,
        read: read === null ? null : await this.db.read(s.reader, read),
      };
    });
  }

  saveCheckpoint(consumer: string, position: number, expected: number): Promise<void> {
    return this.run(async (s) => {
      const wait = s.lock(consumerKey(consumer));
      if (wait !== null) await wait;
      const current = this.db.checkpoints.get(consumer)?.position;
      if (current !== expected) {
        throw new Error(
          `the checkpoint of ${consumer} is ${current ?? "missing"}, not ${expected}: ` +
            `the save matched no row`,
        );
      }
      s.write(() => {
        const row = this.db.checkpoints.get(consumer);
        this.db.checkpoints.set(consumer, {
          position,
          updatedAt: this.db.clock.now(),
          gap: row?.gap ?? null,
        });
      });
    });
  }

  readCheckpoint(consumer: string): Promise<number> {
    return this.run(() => this.db.checkpoints.get(consumer)?.position ?? 0);
  }

  reportGap(consumer: string, gap: GapWait | null): Promise<void> {
    return this.run(async (s) => {
      const wait = s.lock(consumerKey(consumer), "update");
      if (wait !== null) await wait;
      s.write(() => {
        const row = this.db.checkpoints.get(consumer);
        if (row !== undefined) this.db.checkpoints.set(consumer, { ...row, gap });
      });
    });
  }

  writeDeadLetter(record: DeadLetterRecord): Promise<void> {
    const position = record.event.globalPosition;
    const row: InMemoryDeadLetter = {
      consumer: record.consumer,
      globalPosition: position,
      eventId: record.event.eventId,
      error: record.error,
      attempts: record.attempts,
      skipped: record.skipped,
      workerId: record.workerId,
      resolvedAt: null,
      redrivenAt: null,
    };
    return this.run(async (s) => {
      const key = deadLetterKey(record.consumer, position);
      const wait = s.lock(key);
      if (wait !== null) await wait;
      s.write(() => this.db.deadLetters.set(key, row));
    });
  }

  resolveDeadLetters(consumer: string, positions: readonly number[]): Promise<void> {
    const keys = [...new Set(positions)].sort((a, b) => a - b)
      .map((position) => deadLetterKey(consumer, position));
    return this.run(async (s) => {
      const wait = lockAll(s, keys.filter((key) => this.db.deadLetters.has(key)));
      if (wait !== null) await wait;
      s.write(() => {
        const now = this.db.clock.now();
        for (const key of keys) {
          const row = this.db.deadLetters.get(key);
          if (row !== undefined && !row.skipped && row.resolvedAt === null) {
            this.db.deadLetters.set(key, { ...row, resolvedAt: now });
          }
        }
      });
    });
  }

  deleteDeadLetters(consumer: string, afterPosition: number): Promise<void> {
    return this.run(async (s) => {
      const keys = this.db.deadLettersOf(consumer)
        .filter((d) => d.globalPosition > afterPosition)
        .sort((a, b) => a.globalPosition - b.globalPosition)
        .map((d) => deadLetterKey(consumer, d.globalPosition));
      const wait = lockAll(s, keys);
      if (wait !== null) await wait;
      s.write(() => {
        for (const key of keys) this.db.deadLetters.delete(key);
      });
    });
  }

  blockingDeadLetters(consumer: string): Promise<number[]> {
    return this.run(() =>
      this.db.deadLettersOf(consumer)
        .filter((d) => !d.skipped && d.resolvedAt === null)
        .map((d) => d.globalPosition)
    );
  }

  lockDeadLetter(consumer: string, position: number): Promise<boolean> {
    return this.run(async (s) => {
      const key = deadLetterKey(consumer, position);
      const wait = s.lock(key);
      if (wait !== null) await wait;
      const row = this.db.deadLetters.get(key);
      return row !== undefined && row.skipped && row.redrivenAt === null;
    });
  }

  markRedriven(consumer: string, position: number): Promise<void> {
    return this.run(async (s) => {
      const key = deadLetterKey(consumer, position);
      const wait = s.lock(key);
      if (wait !== null) await wait;
      s.write(() => {
        const row = this.db.deadLetters.get(key);
        if (row !== undefined) {
          this.db.deadLetters.set(key, { ...row, redrivenAt: this.db.clock.now() });
        }
      });
    });
  }

  writeGapSkip(record: GapSkipRecord): Promise<void> {
    const row = { ...record, skippedPositions: [...record.skippedPositions] };
    return this.run((s) => s.write(() => this.db.gapSkips.push(row)));
  }

  readWindow(query: WindowQuery): Promise<WindowRead> {
    return this.run((s) => this.db.read(s.reader, query));
  }

  readEvent(position: number): Promise<PersistedEvent | null> {
    return this.run(async (s) => {
      const [event] = await this.db.store.readEvents(s.reader, position - 1, 1);
      return event !== undefined && event.globalPosition === position ? event : null;
    });
  }

  latestPosition(): Promise<number> {
    return this.run((s) => this.db.store.latestPosition(s.reader));
  }

  gapBlockers(token: GapToken): Promise<GapBlocker[]> {
    return this.run(() => {
      const open = new Set(this.db.store.inFlightPositions());
      const held = (token as InMemoryToken).inFlight.filter((p) => open.has(p));
      return held.length === 0 ? [] : [{
        pid: null,
        xid: null,
        transactionAgeMs: null,
        state: "in flight",
        applicationName: "in-memory",
        query: `holds positions ${held.join(", ")}`,
      }];
    });
  }

  statusRows(heartbeatTimeoutMs: number): Promise<StatusRows> {
    return this.run(async (s) => {
      const latestPosition = await this.db.store.latestPosition(s.reader);
      const db = this.db;
      const now = db.clock.now();
      const names = [...new Set([...db.checkpoints.keys(), ...db.assignments.keys()])];
      return {
        latestPosition,
        workers: [...db.nodes].map(([workerId, node]) => ({
          workerId,
          startedAt: new Date(node.startedAt),
          heartbeatAt: new Date(node.heartbeatAt),
          consumers: [...node.consumers],
          live: now - node.heartbeatAt <= heartbeatTimeoutMs,
        })),
        leader: db.leader(),
        consumers: names.map((name) => {
          const row = db.checkpoints.get(name);
          const letters = db.deadLettersOf(name);
          return {
            name,
            workerId: db.assignments.get(name) ?? null,
            checkpoint: row?.position ?? 0,
            updatedAt: row === undefined ? null : new Date(row.updatedAt),
            gap: row?.gap == null ? null : {
              position: row.gap.position,
              since: new Date(row.gap.since),
              waitingMs: now - row.gap.since,
              blockers: row.gap.blockers,
            },
            skippedDeadLetters: letters.filter((d) => d.skipped && d.redrivenAt === null).length,
            blockingDeadLetters: letters.filter((d) => !d.skipped && d.resolvedAt === null).length,
            gapSkips: db.gapSkips.filter((g) => g.consumer === name).length,
          };
        }),
      };
    });
  }
}

/** The row operations outside any transaction: each statement commits on its own. */
class AutoCommitRows extends RowStatements {
  protected run<T>(statement: Statement<T>): Promise<T> {
    return this.db.autocommit(statement);
  }
}

/**
 * One transaction of an {@link InMemoryStorage}: a transaction of the event store (so a
 * handler's appends and `tx.onCommit` writes commit with it), its row locks, and its deferred
 * writes. Exported for the simulation's fault injection; not part of the package.
 */
export class InMemoryStorageTransaction extends RowStatements
  implements StorageTransaction<InMemoryTransaction> {
  /** The event store's transaction underneath. */
  readonly raw: InMemoryTransaction;
  /** Rejects when the connection is lost (the transaction then rolls back). */
  readonly ended: Promise<never>;
  readonly #owner = new LockOwner();
  readonly #scope: Scope;
  readonly #writes: Array<() => void> = [];
  readonly #changes: CoordinationChange[] = [];
  #lost: Error | null = null;
  #fail: (error: Error) => void = () => {};
  #running = 0;
  #idle: { consumer: string; ms: number; timer: unknown } | null = null;
  #leader: string | null = null;
  /** The advisory session it runs on, if any (its end takes this transaction along). */
  session: object | null = null;
  #read: { workers?: WorkerMembership[]; assignments?: Map<string, string | null> } = {};
  #written: AssignmentChange[] | null = null;

  constructor(db: Database, raw: InMemoryTransaction, options: TransactionOptions) {
    super(db);
    this.raw = raw;
    this.ended = new Promise<never>((_, reject) => (this.#fail = reject));
    this.ended.catch(() => {});
    const lockTimeout = options.lockTimeout;
    this.#scope = {
      lock: (key, mode = "exclusive") => db.locks.take(this.#owner, key, mode, lockTimeout),
      write: (apply) => this.#writes.push(apply),
      notify: (change) => this.#changes.push(change),
      reader: raw,
      tx: this,
    };
    // Registered first, so the rows are written before any handler's onCommit runs.
    raw.onCommit(() => this.#commit());
    raw.onRollback(() => this.#end());
  }

  /** True once the connection is lost: nothing more reaches the server. */
  get lost(): boolean {
    return this.#lost !== null;
  }

  /** The transaction as a handler of `consumer` sees it (see the port and the module doc). */
  handle(consumer: string, isOpen: () => boolean): InMemoryTransaction {
    return new BatchHandle(this, consumer, isOpen);
  }

  /** Fails the statement waiting in this transaction, like `pg_cancel_backend`. */
  cancel(): Promise<void> {
    this.db.locks.cancel(this.#owner, new Error("canceling statement due to user request"));
    return Promise.resolve();
  }

  /** Ends the connection: marked lost, the waiting statement failed, the transaction rolled back. */
  terminate(error: Error): void {
    if (this.#lost !== null || !this.raw.isOpen) return;
    this.#lost = error;
    this.#stopIdle();
    this.db.locks.cancel(this.#owner, error);
    this.#fail(error);
  }

  /** Marks this as `workerId`'s leadership transaction (for the rebalance record). */
  leadBy(workerId: string): void {
    this.#leader = workerId;
  }

  /** Locks the lease row for the transaction; null when granted at once. */
  lockLease(): Promise<void> | null {
    return this.#scope.lock(LEASE_KEY);
  }

  /** Where a handler's statement goes now: the transaction, or null (it has ended: auto-commit). */
  statementTarget(): InMemoryTransaction | null {
    if (this.#lost !== null) throw this.#lost;
    if (!this.raw.isOpen) return null;
    this.#startIdle();
    return this.raw;
  }

  /** Records what a rebalance read. */
  observed(read: { workers?: WorkerMembership[]; assignments?: Map<string, string | null> }): void {
    this.#read = { ...this.#read, ...read };
  }

  /** Records what a rebalance wrote. */
  wrote(changes: AssignmentChange[]): void {
    this.#written = [...(this.#written ?? []), ...changes];
  }

  /** Arms the server-side bound on silence (`idle_in_transaction_session_timeout`). */
  idleAfter(consumer: string, ms: number): void {
    this.#stopIdle();
    this.#idle = { consumer, ms, timer: null };
  }

  protected run<T>(statement: Statement<T>): Promise<T> {
    if (this.#lost !== null) return Promise.reject(this.#lost);
    // A statement sent after the end runs on the connection on its own.
    if (!this.raw.isOpen) return this.db.autocommit(statement);
    if (this.raw.isAborted) {
      return Promise.reject(
        new Error("current transaction is aborted, commands ignored until end of transaction"),
      );
    }
    this.#stopIdle();
    this.#running++;
    return start(statement, this.#scope).then(
      (value) => {
        this.#running--;
        this.#startIdle();
        return value;
      },
      (error) => {
        this.#running--;
        // Like PostgreSQL: a failed statement aborts the transaction; COMMIT rolls it back.
        if (this.raw.isOpen) this.raw.abort(errorText(error));
        this.#startIdle();
        throw error;
      },
    );
  }

  #startIdle(): void {
    const idle = this.#idle;
    if (idle === null || this.#running > 0 || this.#lost !== null || !this.raw.isOpen) return;
    if (idle.timer !== null) this.db.clock.clearTimeout(idle.timer);
    idle.timer = this.db.clock.setTimeout(() => {
      idle.timer = null;
      this.terminate(
        new Error(
          `the transaction of ${idle.consumer} ${ENDED_BY_THE_SERVER}: silent for ${idle.ms} ms ` +
            `(idle timeout)`,
        ),
      );
    }, idle.ms);
  }

  #stopIdle(): void {
    const idle = this.#idle;
    if (idle?.timer != null) {
      this.db.clock.clearTimeout(idle.timer);
      idle.timer = null;
    }
  }

  #commit(): void {
    for (const write of this.#writes) write();
    if (this.#leader !== null && this.#written !== null) {
      this.db.rebalances.push({
        at: this.db.clock.now(),
        leader: this.#leader,
        snapshot: {
          workers: this.#read.workers ?? [],
          assignments: this.#read.assignments ?? new Map(),
        },
        changes: this.#written,
      });
    }
    this.#end();
    this.db.deliver(this.#changes);
  }

  #end(): void {
    this.#stopIdle();
    this.#idle = null;
    this.db.locks.releaseAll(this.#owner);
    const session = this.session;
    const open = session === null ? undefined : this.db.sessions.get(session);
    open?.delete(this);
    if (open?.size === 0) this.db.sessions.delete(session!);
  }
}

/**
 * The transaction a handler gets: the store's transaction while the batch is open; refused
 * (`BatchClosedError`) once `isOpen` says so; and, should `isOpen` still say true after the
 * transaction ended, a connection on its own: `onCommit` hooks run at once (auto-commit). The
 * store's bookkeeping fields are the transaction's own, so `store.append(tx, …)` joins it.
 */
class BatchHandle extends InMemoryTransaction {
  readonly #tx: InMemoryStorageTransaction;
  readonly #consumer: string;
  readonly #isOpen: () => boolean;

  constructor(tx: InMemoryStorageTransaction, consumer: string, isOpen: () => boolean) {
    super();
    this.#tx = tx;
    this.#consumer = consumer;
    this.#isOpen = isOpen;
    const raw = tx.raw;
    // Not a Proxy: the store's methods read these fields and the transaction's private state.
    for (const field of ["pendingEvents", "pendingHeads", "locks", "notifications"] as const) {
      Object.defineProperty(this, field, { get: () => raw[field], enumerable: true });
    }
    Object.defineProperty(this, "waitingFor", {
      get: () => raw.waitingFor,
      set: (key: string | null) => (raw.waitingFor = key),
      enumerable: true,
    });
  }

  /** The transaction a statement goes to, or null (auto-commit); throws when refused. */
  #target(): InMemoryTransaction | null {
    if (!this.#isOpen()) throw new BatchClosedError(this.#consumer);
    return this.#tx.statementTarget();
  }

  /** Whether the transaction underneath is open (the store's in-flight positions read this). */
  override get isOpen(): boolean {
    return this.#tx.raw.isOpen;
  }

  /** Runs `hook` at commit; at once when the transaction has ended (auto-commit). */
  override onCommit(hook: () => void): void {
    const target = this.#target();
    if (target === null) hook();
    else target.onCommit(hook);
  }

  /** Runs `hook` on rollback (never, once the transaction has ended). */
  override onRollback(hook: () => void): void {
    this.#target()?.onRollback(hook);
  }

  /** Throws unless a statement can run in the transaction. */
  override assertUsable(): void {
    (this.#target() ?? this.#tx.raw).assertUsable();
  }

  /** Marks the transaction failed. */
  override abort(reason: string): void {
    this.#tx.raw.abort(reason);
  }

  /** Whether a statement failed in the transaction. */
  override get isAborted(): boolean {
    return this.#tx.raw.isAborted;
  }

  /** A handle does not end its transaction; the batch does. */
  override finish(): void {
    throw new Error("a batch's transaction is ended by the batch, not by its handle");
  }
}

// --- the storage ---------------------------------------------------------------------------------

/**
 * The worker's storage port in memory (see the module doc). One storage serves any number of
 * workers, each through its own `CoordinationProtocol` (as `InMemoryCoordinator`), which is what
 * the multi-worker simulation drives.
 *
 * @example
 * ```ts
 * import { InMemoryEventStore, InMemoryStorage } from "@eventsalsa/eventsalsa/testing";
 * const storage = new InMemoryStorage(new InMemoryEventStore());
 * await storage.transaction({}, async (tx) => {
 *   await tx.registerWorker("w-1", ["audit"], 30_000);
 *   await tx.ensureConsumers(["audit"]);
 * });
 * console.log(storage.registrations().has("w-1"), storage.checkpoint("audit")); // true 0
 * ```
 */
export class InMemoryStorage implements WorkerStorage<InMemoryTransaction> {
  /** The event store the workers read and handlers write through. */
  readonly store: InMemoryEventStore;
  /** Row operations outside a transaction, each committed on its own. */
  readonly rows: WorkerRows;
  readonly #db: Database;

  /** Creates a storage over `store`; `clock` is the database's time (heartbeats, leases). */
  constructor(store: InMemoryEventStore, options: { readonly clock?: Clock } = {}) {
    this.store = store;
    this.#db = new Database(store, options.clock ?? systemClock);
    this.rows = new AutoCommitRows(this.#db);
  }

  /** Nothing to check in memory; many sessions. */
  prepare(): Promise<StorageInfo> {
    return Promise.resolve({ singleSession: false });
  }

  /** Runs `work` in a transaction (see the port and the module doc). */
  transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>,
  ): Promise<T> {
    return this.#transaction(options, null, work);
  }

  async #transaction<T>(
    options: TransactionOptions,
    session: object | null,
    work: (tx: InMemoryStorageTransaction) => Promise<T>,
  ): Promise<T> {
    const db = this.#db;
    return await this.store.transaction(async (raw) => {
      const tx = new InMemoryStorageTransaction(db, raw, options);
      if (session !== null) {
        tx.session = session;
        let open = db.sessions.get(session);
        if (open === undefined) db.sessions.set(session, open = new Set());
        open.add(tx);
      }
      const result = await Promise.race([work(tx), tx.ended]);
      // Lost as the work finished: the commit never reached the server.
      if (tx.lost) throw await tx.ended.catch((error) => error);
      return result;
    });
  }

  /**
   * Subscribes: `events` to the store's notify channel (rejects without one), `coordination` to
   * the changes announced by `notify`. {@link InMemoryStorage.dropListeners} loses them.
   */
  listen(
    topic: "events" | "coordination",
    onMessage: (change: CoordinationChange | null) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    let unlisten = () => {};
    if (topic === "events") {
      const channel = this.store.notifyChannel;
      if (channel === null) {
        return Promise.reject(new Error("the in-memory store has no notifyChannel to listen on"));
      }
      unlisten = this.store.listen(channel, () => onMessage(null));
    }
    const subscriptions = this.#db.subscriptions;
    const subscription: Subscription = {
      topic,
      onMessage,
      lose: (error) => {
        subscriptions.delete(subscription);
        unlisten();
        onClose(error);
      },
    };
    subscriptions.add(subscription);
    return Promise.resolve({
      close: () => {
        subscriptions.delete(subscription);
        unlisten();
        return Promise.resolve();
      },
    });
  }

  /** The leadership mechanism of `workerId` (see the module doc for the two strategies). */
  leadership(
    workerId: string,
    settings: LeadershipSettings,
  ): LeadershipStorage<InMemoryTransaction> {
    const db = this.#db;
    if (settings.strategy === "advisory") {
      let session: object | null = null;
      const holds = () => session !== null && db.advisory?.session === session;
      return {
        acquire: () => {
          if (session !== null) {
            if (holds()) return Promise.resolve(true);
            session = null; // the session died: a new one is opened next time
            return Promise.resolve(false);
          }
          if (db.advisory !== null) return Promise.resolve(false);
          session = {};
          db.advisory = { workerId, session, since: db.clock.now() };
          return Promise.resolve(true);
        },
        transaction: async <T>(
          options: TransactionOptions,
          work: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>,
        ): Promise<T | null> => {
          const mine = session;
          if (mine === null || !holds()) {
            session = null;
            return null;
          }
          // On the lock's own session: if that session is terminated, the transaction goes too.
          return await this.#transaction(options, mine, (tx) => {
            tx.leadBy(workerId);
            return work(tx);
          });
        },
        release: () => {
          if (holds()) db.advisory = null;
          session = null;
          return Promise.resolve();
        },
      };
    }
    const notLeading = Symbol("not leading");
    const lease = async <T>(
      update: (lease: Lease | null, now: number) => T,
    ): Promise<T> =>
      await db.autocommit(async (s) => {
        const wait = s.lock(LEASE_KEY);
        if (wait !== null) await wait;
        return update(db.lease, db.clock.now());
      });
    return {
      acquire: () =>
        lease((current, now) => {
          if (
            current !== null && current.leaderId !== null && current.leaderId !== workerId &&
            current.expiresAt > now
          ) {
            return false;
          }
          // The lease row references the registration: no renewal without one.
          if (!db.nodes.has(workerId)) return false;
          db.lease = {
            leaderId: workerId,
            expiresAt: now + settings.leaseMs,
            since: current?.leaderId === workerId && current.expiresAt > now ? current.since : now,
          };
          return true;
        }),
      transaction: async <T>(
        options: TransactionOptions,
        work: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>,
      ): Promise<T | null> => {
        const result = await this.#transaction(options, null, async (tx) => {
          // The lease row, locked for the transaction and checked to be this worker's.
          const wait = tx.lockLease();
          if (wait !== null) await wait;
          const current = db.lease;
          if (current?.leaderId !== workerId || current.expiresAt <= db.clock.now()) {
            return notLeading;
          }
          tx.leadBy(workerId);
          return await work(tx);
        });
        return result === notLeading ? null : result as T;
      },
      release: () =>
        lease((current, now) => {
          if (current?.leaderId === workerId) {
            db.lease = { ...current, leaderId: null, expiresAt: now - 60_000 };
          }
        }),
    };
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  // --- faults and test controls ------------------------------------------------------------------

  /**
   * Ends a transaction's connection, like `pg_terminate_backend` or a dropped network: it is
   * marked `lost`, its waiting statement fails, it rolls back and `transaction` rejects with
   * `error`. A no-op once it has ended.
   */
  terminate(
    tx: StorageTransaction<InMemoryTransaction>,
    error: Error = new Error("terminating connection: the connection was lost"),
  ): void {
    if (tx instanceof InMemoryStorageTransaction) tx.terminate(error);
  }

  /** Simulates losing every listener connection (their `onClose` fires). */
  dropListeners(error: unknown = new Error("listener connection lost")): void {
    for (const subscription of [...this.#db.subscriptions]) subscription.lose(error);
  }

  /** How many `events` listeners are connected. */
  get listenerCount(): number {
    return [...this.#db.subscriptions].filter((s) => s.topic === "events").length;
  }

  /** How many `coordination` listeners are connected. */
  get changeListenerCount(): number {
    return [...this.#db.subscriptions].filter((s) => s.topic === "coordination").length;
  }

  /**
   * Reassigns a consumer by hand (e.g. to another worker, or null), at once and without a
   * notification: set up a test with it, not under a running batch (which it does not wait for).
   */
  setAssignment(consumer: string, workerId: string | null): void {
    this.#db.assignments.set(consumer, workerId);
  }

  /**
   * Ends the advisory leader's session (like `pg_terminate_backend` on it, or its process dying):
   * the lock is free, a transaction running on the session is lost; that leader finds out at its
   * next check. With `workerId`, only if that worker holds it. Returns whether one was ended.
   */
  terminateLeaderSession(workerId?: string): boolean {
    const holder = this.#db.advisory;
    if (holder === null) return false;
    if (workerId !== undefined && holder.workerId !== workerId) return false;
    this.#db.advisory = null;
    for (const tx of this.#db.sessions.get(holder.session) ?? []) {
      tx.terminate(new Error("terminating connection: the leader's session was ended"));
    }
    this.#db.sessions.delete(holder.session);
    return true;
  }

  /** Makes the current lease run out now (a leader that could not renew in time). */
  expireLease(): void {
    const lease = this.#db.lease;
    if (lease !== null) this.#db.lease = { ...lease, expiresAt: this.#db.clock.now() };
  }

  /** The current leader (advisory lock holder, or unexpired lease), or null. */
  leader(): LeaderStatus | null {
    return this.#db.leader();
  }

  /** Registered workers (live or not) with the consumers each registered. */
  registrations(): Map<string, { heartbeatAt: number; consumers: string[] }> {
    return new Map(
      [...this.#db.nodes].map(([id, node]) => [id, {
        heartbeatAt: node.heartbeatAt,
        consumers: [...node.consumers],
      }]),
    );
  }

  /** Every assignment row. */
  assignments(): Map<string, string | null> {
    return new Map(this.#db.assignments);
  }

  /** Every rebalance a leader committed, oldest first. */
  rebalances(): readonly InMemoryRebalance[] {
    return this.#db.rebalances;
  }

  /** The consumer's checkpoint (0 when none). */
  checkpoint(consumer: string): number {
    return this.#db.checkpoints.get(consumer)?.position ?? 0;
  }

  /** The worker a consumer is assigned to. */
  assignment(consumer: string): string | null {
    return this.#db.assignments.get(consumer) ?? null;
  }

  /** Every dead letter, by consumer and position. */
  deadLetters(consumer?: string): InMemoryDeadLetter[] {
    return this.#db.deadLettersOf(consumer);
  }

  /** Every gap-skip audit record. */
  gapSkips(consumer?: string): GapSkipRecord[] {
    return this.#db.gapSkips.filter((s) => consumer === undefined || s.consumer === consumer);
  }
}
