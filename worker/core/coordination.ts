/**
 * What the consumer loop, the dispatchers and the runtime ask of coordination: the
 * {@link Coordinator} interface. It is implemented once, by the protocol of `./protocol.ts`, over
 * the storage port of `./storage.ts`; PostgreSQL and the in-memory adapter implement only that
 * port.
 *
 * Several worker processes coordinate only through storage: registrations with heartbeats, a
 * {@link LeaderElection} whose leader rewrites the assignment rows (fenced by its leadership, only
 * the rows that change), change notifications that tell workers to re-read their assignments, and
 * the batch fence (assignment row lock and checkpoint compare-and-set) that keeps a worker which
 * lost a consumer from committing for it.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import type { LeaderStrategy } from "../options.ts";
import type { GapBlocker, GapWait } from "../types.ts";
import type { AssignmentChange, AssignmentSnapshot } from "./assignment.ts";
import type { GapToken, WindowQuery, WindowRead } from "./gap_rule.ts";
import type { ConsumerRegistration } from "./storage.ts";

/**
 * A dead letter to record, in the batch transaction.
 */
export interface DeadLetterRecord {
  /** The consumer that failed on the event. */
  readonly consumer: string;
  /** The worker that ran the batch. */
  readonly workerId: string;
  /** The event the handler failed on. */
  readonly event: PersistedEvent;
  /** The error text. */
  readonly error: string;
  /** Failed attempts so far. */
  readonly attempts: number;
  /** True: the checkpoint moves past it in this transaction. False: the consumer stays at it. */
  readonly skipped: boolean;
}

/**
 * A `maxGapWait` skip to audit, in the batch transaction that moves the checkpoint past it.
 */
export interface GapSkipRecord {
  /** The consumer whose checkpoint moves past the hole. */
  readonly consumer: string;
  /** The worker that skipped. */
  readonly workerId: string;
  /** The first missing position. */
  readonly gapPosition: number;
  /** The checkpoint the batch moves to. */
  readonly skipTo: number;
  /** Every missing position the skip passes over. */
  readonly skippedPositions: readonly number[];
  /** The highest position that was visible when the hole was skipped. */
  readonly highestVisible: number;
  /** Worker clock, ms since epoch. */
  readonly firstSeenAt: number;
}

/**
 * What the core asks `runBatch` for.
 */
export interface BatchRequest {
  /** The consumer the batch is for. */
  readonly consumer: string;
  /** The worker asking; the fence checks that it owns the consumer. */
  readonly workerId: string;
  /** The checkpoint the core believes in; the adapter compares it under lock. */
  readonly expectedCheckpoint: number;
  /**
   * Aborts on batch timeout or shutdown: the adapter must then roll back promptly (cancelling
   * whatever statement runs) and reject with `signal.reason`.
   */
  readonly signal: AbortSignal;
  /**
   * Read the window inside the transaction, after the fence (catch-up and `maxGapWait` skips),
   * instead of relying on an earlier probe.
   */
  readonly read: Omit<WindowQuery, "after"> | null;
  /**
   * Server-side bound, in milliseconds: if the worker goes silent inside the transaction this long
   * (a frozen or partitioned process), the database ends the transaction and frees the rows
   * (PostgreSQL: `idle_in_transaction_session_timeout`). Omitted: no bound.
   */
  readonly idleTimeout?: number;
}

/**
 * The transaction `runBatch` opened, after its fence passed.
 */
export interface BatchSession<Tx> {
  /** The transaction handed to handlers; it refuses statements once the batch is over. */
  readonly tx: Tx;
  /** The in-transaction window read, when the request asked for one. */
  readonly read: WindowRead | null;
  /**
   * Moves the checkpoint; the batch's last write (the fence holds the row, so it cannot have
   * moved meanwhile). An adapter may send it together with the commit and report its failure from
   * `runBatch` instead.
   */
  saveCheckpoint(position: number): Promise<void>;
  /** Inserts or updates a dead letter. */
  recordDeadLetter(record: DeadLetterRecord): Promise<void>;
  /** Marks non-skipped dead letters at these positions as resolved (handled after all). */
  resolveDeadLetters(consumer: string, positions: readonly number[]): Promise<void>;
  /** Writes a gap-skip audit row. */
  recordGapSkip(record: GapSkipRecord): Promise<void>;
}

/**
 * How a batch ended, short of an error.
 */
export type BatchOutcome<T> =
  | { readonly kind: "committed"; readonly value: T }
  | { readonly kind: "notOwner"; readonly owner: string | null }
  | { readonly kind: "checkpointMoved"; readonly checkpoint: number };

/**
 * A live notification subscription (see {@link Coordinator.openListener}).
 */
export interface ListenerHandle {
  /** Stops listening and releases the connection. */
  close(): Promise<void>;
}

/**
 * What a change notification announces: a worker registered or left (`membership`: the leader
 * should rebalance), or the leader rewrote assignments (`assignments`: workers re-read theirs).
 */
export type CoordinationChange = "membership" | "assignments";

/**
 * Leader election for one worker, on one strategy. The leader loop of the core calls `acquire`
 * every cycle and `rebalance` while it leads; the adapter provides the mechanism (PostgreSQL: a
 * session advisory lock on a reserved connection, or a lease row with an expiry in database time).
 */
export interface LeaderElection {
  /**
   * Acquires leadership, or confirms (advisory: the session still holds the lock) or renews (lease)
   * it. True while this worker leads; false when another does or the lock/lease was lost.
   */
  acquire(): Promise<boolean>;
  /**
   * In one transaction fenced by leadership (checked inside it): reads the live workers and every
   * assignment row, calls `plan`, writes only the changed rows (locked in name order, each checked
   * to still hold what was read) and notifies `assignments`. Resolves the applied changes, or null
   * when leadership could not be confirmed (nothing written). Rejects with the signal's reason
   * when it aborts (the transaction rolls back).
   */
  rebalance(
    plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
    signal: AbortSignal,
  ): Promise<readonly AssignmentChange[] | null>;
  /** Gives leadership up (best effort; a crashed leader's lock or lease lapses by itself). */
  release(): Promise<void>;
}

/**
 * Settings of a {@link LeaderElection}.
 */
export interface LeaderElectionSettings {
  /** `advisory` (session lock) or `lease` (row with an expiry). */
  readonly strategy: LeaderStrategy;
  /** Lease length (lease strategy). */
  readonly leaseMs: number;
  /** A worker whose heartbeat is older is not live and gets no consumers. */
  readonly heartbeatTimeoutMs: number;
  /** How long a rebalance waits for an assignment row held by a running batch. */
  readonly rebalanceLockTimeoutMs: number;
}

/**
 * The coordination port (see the module doc). `Tx` is what handlers receive.
 */
export interface Coordinator<Tx> {
  /** Start-up checks (schema present, position sequence usable by the gap rule). */
  prepare(): Promise<void>;
  /**
   * True, once `prepare` has run, when the backend serves one session only (the embedded PGlite)
   * and so opens no connection of its own: the runtime then uses the poll dispatcher instead of
   * `openListener`. Omitted: false.
   */
  readonly singleSession?: boolean;
  /**
   * Deletes registrations whose heartbeat is older than `olderThanMs` (crashed workers; their
   * assignments become free). Returns how many were removed.
   */
  cleanupStaleWorkers(olderThanMs: number): Promise<number>;
  /**
   * Registers the worker and the consumers it runs (checkpoint and assignment rows exist after),
   * and notifies `membership`. A live registration with the same id is a `WorkerIdInUseError`.
   */
  registerWorker(
    workerId: string,
    consumers: readonly ConsumerRegistration[],
    heartbeatTimeoutMs: number,
  ): Promise<void>;
  /** Refreshes the worker's heartbeat; false when its registration is gone. */
  heartbeat(workerId: string): Promise<boolean>;
  /** Removes the worker's registration (its assignments become free) and notifies `membership`. */
  unregisterWorker(workerId: string): Promise<void>;
  /** The consumers currently assigned to `workerId`, with their stored checkpoints. */
  assignedConsumers(workerId: string): Promise<Map<string, number>>;
  /**
   * Every consumer the worker tables hold rows for (registered by some worker, ever): start-up
   * checks that no partitioned consumer changed its partition count.
   */
  consumerNames(): Promise<string[]>;
  /** The leader election of `workerId` (nothing happens until its first `acquire`). */
  leaderElection(workerId: string, settings: LeaderElectionSettings): LeaderElection;
  /**
   * Listens for coordination changes on a dedicated connection: `onChange` per notification,
   * `onClose` once if the connection is lost. Resolves null when the adapter is configured without
   * notifications (workers then rely on polling alone). Rejects when listening cannot start.
   */
  openChangeListener(
    onChange: (change: CoordinationChange) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null>;

  /** The consumer's checkpoint (0 when none). */
  readCheckpoint(consumer: string): Promise<number>;
  /** Positions of the consumer's unresolved, non-skipped dead letters. */
  blockingDeadLetters(consumer: string): Promise<number[]>;
  /**
   * Reads the window `query` describes (see ./window.ts). When it carries a `pendingToken`, first
   * checks (in an earlier statement) whether that has resolved.
   */
  readWindow(query: WindowQuery, signal: AbortSignal): Promise<WindowRead>;
  /** The highest visible position (0 when the log is empty). */
  latestPosition(): Promise<number>;

  /** Open transactions that may hold the positions a pending token covers. */
  gapBlockers(token: GapToken): Promise<GapBlocker[]>;
  /** Persists (or, with null, clears) the consumer's current gap wait for `status`. */
  reportGap(consumer: string, gap: GapWait | null): Promise<void>;

  /**
   * Opens a transaction, locks the consumer's assignment and checkpoint rows, checks that
   * `workerId` owns the consumer and that the checkpoint equals `expectedCheckpoint`, then runs
   * `work` and commits; rolls back when `work` throws or the signal aborts.
   */
  runBatch<T>(
    request: BatchRequest,
    work: (session: BatchSession<Tx>) => Promise<T>,
  ): Promise<BatchOutcome<T>>;

  /**
   * Redrive: locks the consumer as a batch would, finds its skipped, not yet redriven dead letter
   * at `position` (else rejects with `DeadLetterNotFoundError`), runs `work` on the event in a
   * transaction and marks the dead letter redriven in the same transaction.
   */
  redriveDeadLetter<T>(
    consumer: string,
    position: number,
    work: (tx: Tx, event: PersistedEvent) => Promise<T>,
  ): Promise<T>;

  /**
   * The event of the consumer's skipped, not yet redriven dead letter at `position` (else rejects
   * with `DeadLetterNotFoundError`), read in a short transaction that writes nothing: what a
   * detached redrive hands its handler before marking the letter redriven.
   */
  readDeadLetter(consumer: string, position: number): Promise<PersistedEvent>;

  /**
   * Listens for append notifications on a dedicated connection: `onNotify` per notification,
   * `onClose` once if the connection is lost. Rejects when listening cannot start.
   */
  openListener(onNotify: () => void, onClose: (error: unknown) => void): Promise<ListenerHandle>;

  /**
   * Resets the consumer's checkpoint to `toPosition`, fenced like a batch (it waits for a running
   * batch of the consumer, whose worker then finds the checkpoint moved and follows it): in one
   * transaction, `hook` (the consumer's `reset`) runs, dead letters after the position are
   * forgotten, the gap report is cleared and the checkpoint is set. Returns the checkpoint before.
   * Several names (the partitions of one consumer) move together, the hook running once; the
   * highest checkpoint before is returned.
   */
  resetConsumer(
    consumer: string | readonly string[],
    toPosition: number,
    hook: ((tx: Tx) => Promise<void>) | null,
  ): Promise<number>;

  /** Releases connections the adapter opened for itself (not the caller's pool). */
  close(): Promise<void>;
}
