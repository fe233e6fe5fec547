/**
 * The worker's storage port: the primitives the coordination protocol (`./protocol.ts`) is
 * written against. An adapter stores and locks rows and delivers notifications; it makes no
 * decision. Who owns a consumer, whether a batch may commit, what a rebalance changes, when a
 * transaction's handle closes and what `status` reports are decided once, in the core, for every
 * adapter: PostgreSQL (`worker/postgres/storage.ts`, SQL only) and in-memory
 * (`testing/in_memory_storage.ts`, maps and per-row locks), which the simulation drives with faults.
 *
 * The port has eight operations — `prepare`, `rows`, `transaction`, `listen`, and a leadership
 * mechanism's `acquire`, `transaction` and `release` — plus `close`; the clock comes with the
 * worker's options. {@link WorkerRows} is the row vocabulary both a transaction and auto-commit
 * offer: each operation is one statement on the worker's tables (or a read of the log).
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import type { LeaderStrategy } from "../options.ts";
import type { GapBlocker, GapWait } from "../types.ts";
import type { AssignmentChange, WorkerMembership } from "./assignment.ts";
import type {
  CoordinationChange,
  DeadLetterRecord,
  GapSkipRecord,
  ListenerHandle,
} from "./coordination.ts";
import type { GapToken, WindowQuery, WindowRead } from "./gap_rule.ts";

/** What `prepare` learnt about the backend. */
export interface StorageInfo {
  /**
   * The backend serves one session only (the embedded PGlite): the runtime polls instead of
   * listening, and elects by lease.
   */
  readonly singleSession: boolean;
}

/** The consumer's rows as the fence reads them, locked until the transaction ends. */
export interface ConsumerRows {
  /** The assignment's owner (null: unassigned). */
  readonly owner: string | null;
  /** The checkpoint. */
  readonly checkpoint: number;
  /** The window read asked for (after the checkpoint the caller expected), else null. */
  readonly read: WindowRead | null;
}

/**
 * A consumer as a worker registers it: its name, and where its checkpoint starts if it has none
 * (a position, or `"end"`: the highest visible position at that moment).
 */
export interface ConsumerRegistration {
  readonly name: string;
  readonly startFrom: number | "end";
}

/** What `lockConsumer` also does, in the same round trip when the backend can. */
export interface LockConsumerOptions {
  /**
   * Read this window (checking its `pendingToken` first) in the same transaction, for the caller
   * to use if the fence passes.
   */
  readonly read?: WindowQuery | null;
  /** Bound the transaction server-side: ended after this long silent (ms). */
  readonly idleTimeout?: number;
}

/** One row of `statusRows().workers`. */
export interface WorkerRow {
  readonly workerId: string;
  readonly startedAt: Date;
  readonly heartbeatAt: Date;
  readonly consumers: readonly string[];
  /** Heartbeat within the timeout, by the storage's clock. */
  readonly live: boolean;
}

/** One row of `statusRows().consumers`: checkpoint, assignment and counts. */
export interface ConsumerRow {
  readonly name: string;
  readonly workerId: string | null;
  readonly checkpoint: number;
  readonly updatedAt: Date | null;
  readonly gap: {
    readonly position: number;
    readonly since: Date;
    readonly waitingMs: number;
    readonly blockers: readonly GapBlocker[];
  } | null;
  readonly skippedDeadLetters: number;
  readonly blockingDeadLetters: number;
  readonly gapSkips: number;
}

/** One consistent read of everything `status` reports. */
export interface StatusRows {
  readonly latestPosition: number;
  readonly workers: readonly WorkerRow[];
  /** The leader when its lease is unexpired or its lock held, else null. */
  readonly leader: {
    readonly workerId: string;
    readonly strategy: LeaderStrategy;
    readonly since: Date;
    readonly expiresAt: Date | null;
  } | null;
  readonly consumers: readonly ConsumerRow[];
}

/**
 * The row vocabulary: each operation is one statement. Outside a transaction (`storage.rows`)
 * each commits on its own; inside one, with it.
 */
export interface WorkerRows {
  // --- the fleet ---------------------------------------------------------------------------------
  /**
   * Inserts the registration, or takes over one whose heartbeat is older than
   * `heartbeatTimeoutMs`. False: a live registration with this id exists (nothing written).
   */
  registerWorker(
    workerId: string,
    consumers: readonly string[],
    heartbeatTimeoutMs: number,
  ): Promise<boolean>;
  /**
   * Creates missing assignment and checkpoint rows (existing ones unchanged); a new checkpoint
   * starts at the consumer's `startFrom`.
   */
  ensureConsumers(consumers: readonly ConsumerRegistration[]): Promise<void>;
  /** Refreshes the heartbeat; false when the registration is gone. */
  heartbeat(workerId: string): Promise<boolean>;
  /**
   * Deletes the registration; its assignments become unassigned (waiting for batches holding
   * them) and its lease ends. False when there was none.
   */
  deleteWorker(workerId: string): Promise<boolean>;
  /** Deletes registrations silent longer than `olderThanMs`; how many. */
  deleteStaleWorkers(olderThanMs: number): Promise<number>;
  /** Registrations whose heartbeat is within `heartbeatTimeoutMs`. */
  liveWorkers(heartbeatTimeoutMs: number): Promise<WorkerMembership[]>;
  /** Every assignment (consumer → owner). */
  assignments(): Promise<Map<string, string | null>>;
  /** The consumers `workerId` owns, with their checkpoints (consumer → checkpoint). */
  owned(workerId: string): Promise<Map<string, number>>;
  /**
   * Locks these assignment rows in the given order (waiting for running batches, up to the
   * transaction's lock timeout) and returns what they hold; missing rows are absent.
   */
  lockAssignments(consumers: readonly string[]): Promise<Map<string, string | null>>;
  /** Writes the new owners (rows already locked). Fails when an owner is not registered. */
  writeAssignments(changes: readonly AssignmentChange[]): Promise<void>;
  /** Announces a change to every coordination listener (in a transaction: on commit). */
  notify(change: CoordinationChange): Promise<void>;

  // --- one consumer --------------------------------------------------------------------------------
  /** Locks the consumer's assignment and checkpoint rows; null when they do not exist. */
  lockConsumer(consumer: string, options?: LockConsumerOptions): Promise<ConsumerRows | null>;
  /**
   * Moves the checkpoint from `expected` to `position`. The adapter may send it with the commit;
   * if no row held `expected`, the transaction fails.
   */
  saveCheckpoint(consumer: string, position: number, expected: number): Promise<void>;
  /** The checkpoint (0 when none). */
  readCheckpoint(consumer: string): Promise<number>;
  /** Persists (or with null clears) the consumer's gap wait, for `status`. */
  reportGap(consumer: string, gap: GapWait | null): Promise<void>;
  /** Inserts or replaces a dead letter (un-resolving it). */
  writeDeadLetter(record: DeadLetterRecord): Promise<void>;
  /** Marks the non-skipped, unresolved dead letters at these positions resolved. */
  resolveDeadLetters(consumer: string, positions: readonly number[]): Promise<void>;
  /** Positions of unresolved, non-skipped dead letters. */
  blockingDeadLetters(consumer: string): Promise<number[]>;
  /** Deletes the consumer's dead letters after `afterPosition` (a reset forgets them). */
  deleteDeadLetters(consumer: string, afterPosition: number): Promise<void>;
  /** Locks the skipped, not yet redriven dead letter at `position`; false when there is none. */
  lockDeadLetter(consumer: string, position: number): Promise<boolean>;
  /** Marks the dead letter at `position` redriven. */
  markRedriven(consumer: string, position: number): Promise<void>;
  /** Writes a gap-skip audit row. */
  writeGapSkip(record: GapSkipRecord): Promise<void>;

  // --- the log -------------------------------------------------------------------------------------
  /**
   * Checks the query's `pendingToken` (when given), then reads its window (see ./window.ts): the
   * read sees every position the check found settled. A filtered window returns full rows for its
   * matching events only.
   */
  readWindow(query: WindowQuery): Promise<WindowRead>;
  /** The event at `position`, or null. */
  readEvent(position: number): Promise<PersistedEvent | null>;
  /** The highest visible position (0 when the log is empty). */
  latestPosition(): Promise<number>;
  /** Open transactions that may hold positions the token covers. */
  gapBlockers(token: GapToken): Promise<GapBlocker[]>;
  /** One consistent read for `status`. */
  statusRows(heartbeatTimeoutMs: number): Promise<StatusRows>;
}

/** An open transaction. */
export interface StorageTransaction<Tx> extends WorkerRows {
  /**
   * The transaction as a handler sees it: every statement checks `isOpen()` when it is built
   * and again when it is sent, and is refused with `BatchClosedError` (naming `consumer`) once
   * that is false. A statement on a transaction that has ended would otherwise run on whatever the
   * connection has become.
   */
  handle(consumer: string, isOpen: () => boolean): Tx;
  /** True once the connection is known lost: nothing more reaches the server. */
  readonly lost: boolean;
  /** Cancels the statement running in this transaction (from elsewhere); best effort. */
  cancel(): Promise<void>;
}

/** Options of {@link WorkerStorage.transaction}. */
export interface TransactionOptions {
  /** How long a row lock may be waited for (ms); then the statement fails. */
  readonly lockTimeout?: number;
  /** Repeatable-read and read-only (`status`). */
  readonly snapshot?: boolean;
}

/** A leadership mechanism for one worker (advisory session lock or lease row). */
export interface LeadershipStorage<Tx> {
  /**
   * Takes leadership, or confirms (lock) or renews (lease) it. True while this worker leads.
   * On a lost or doubtful lock it lets go before answering false.
   */
  acquire(): Promise<boolean>;
  /**
   * Runs `work` in a transaction that first confirms, under lock, that this worker still leads;
   * resolves null, with nothing run, when it does not.
   */
  transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<Tx>) => Promise<T>,
  ): Promise<T | null>;
  /** Gives leadership up (best effort; a crashed leader's lock or lease lapses by itself). */
  release(): Promise<void>;
}

/** Settings of a leadership mechanism. */
export interface LeadershipSettings {
  /** `advisory` (session lock) or `lease` (row with an expiry). */
  readonly strategy: LeaderStrategy;
  /** Lease length (lease strategy). */
  readonly leaseMs: number;
}

/** The storage port (see the module doc). `Tx` is what handlers receive. */
export interface WorkerStorage<Tx> {
  /** Checks the schema; tells what the backend can do. */
  prepare(): Promise<StorageInfo>;
  /** Row operations outside a transaction, each committed on its own. */
  readonly rows: WorkerRows;
  /**
   * Opens a transaction, runs `work`, commits when it resolves and rolls back when it rejects
   * (rejecting with its error). A lost connection rejects it and marks it `lost`.
   */
  transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<Tx>) => Promise<T>,
  ): Promise<T>;
  /**
   * Subscribes on a connection of its own: `events` (appends; `onMessage` without payload) or
   * `coordination` (a {@link CoordinationChange}). `onClose` fires once if it is lost. Null when
   * the topic has no channel (the worker then polls). Rejects when listening cannot start.
   */
  listen(
    topic: "events" | "coordination",
    onMessage: (change: CoordinationChange | null) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null>;
  /** The leadership mechanism of `workerId` (nothing happens until `acquire`). */
  leadership(workerId: string, settings: LeadershipSettings): LeadershipStorage<Tx>;
  /** Releases connections the adapter opened for itself (never the caller's pool). */
  close(): Promise<void>;
}
