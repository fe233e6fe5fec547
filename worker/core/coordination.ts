/**
 * The coordination port: everything the runtime-agnostic core needs from a backend. The
 * PostgreSQL adapter (`worker/postgres/`) and the in-memory adapter
 * (`@eventsalsa/eventsalsa/testing`) implement it; the consumer loop, gap rule, back-off and
 * dispatchers are written against it only.
 *
 * Seams for issue 4 (several worker processes): registration and heartbeats are here already;
 * `claimConsumers` is the single-process stand-in for the leader's assignments and is the method
 * that rebalancing replaces (the fence in `runBatch` already refuses a worker that lost a
 * consumer).
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import type { GapBlocker, GapWait } from "../types.ts";
import type { GapToken, WindowRead } from "./gap_rule.ts";

/**
 * A dead letter to record, in the batch transaction.
 *
 * @example
 * ```ts
 * import type { DeadLetterRecord } from "@eventsalsa/eventsalsa/worker";
 * declare const event: import("@eventsalsa/eventsalsa/store").PersistedEvent;
 * const record: DeadLetterRecord = {
 *   consumer: "p", workerId: "w-1", event, error: "Error: bad", attempts: 1, skipped: true,
 * };
 * ```
 */
export interface DeadLetterRecord {
  readonly consumer: string;
  readonly workerId: string;
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
 *
 * @example
 * ```ts
 * import type { GapSkipRecord } from "@eventsalsa/eventsalsa/worker";
 * const record: GapSkipRecord = {
 *   consumer: "p", workerId: "w-1", gapPosition: 7, skipTo: 9, skippedPositions: [7],
 *   highestVisible: 12, firstSeenAt: Date.now() - 60_000,
 * };
 * ```
 */
export interface GapSkipRecord {
  readonly consumer: string;
  readonly workerId: string;
  readonly gapPosition: number;
  readonly skipTo: number;
  readonly skippedPositions: readonly number[];
  readonly highestVisible: number;
  /** Worker clock, ms since epoch. */
  readonly firstSeenAt: number;
}

/**
 * What the core asks `runBatch` for.
 *
 * @example
 * ```ts
 * import type { BatchRequest } from "@eventsalsa/eventsalsa/worker";
 * const request: BatchRequest = {
 *   consumer: "p", workerId: "w-1", expectedCheckpoint: 0,
 *   signal: new AbortController().signal, read: { limit: 100, pendingToken: null },
 * };
 * ```
 */
export interface BatchRequest {
  readonly consumer: string;
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
  readonly read: { readonly limit: number; readonly pendingToken: GapToken | null } | null;
}

/**
 * The transaction `runBatch` opened, after its fence passed.
 *
 * @example
 * ```ts
 * import type { BatchSession } from "@eventsalsa/eventsalsa/worker";
 * async function finish<Tx>(session: BatchSession<Tx>, target: number): Promise<void> {
 *   await session.saveCheckpoint(target);
 * }
 * ```
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
 *
 * @example
 * ```ts
 * import type { BatchOutcome } from "@eventsalsa/eventsalsa/worker";
 * const lost: BatchOutcome<void> = { kind: "notOwner", owner: "w-2" };
 * ```
 */
export type BatchOutcome<T> =
  | { readonly kind: "committed"; readonly value: T }
  | { readonly kind: "notOwner"; readonly owner: string | null }
  | { readonly kind: "checkpointMoved"; readonly checkpoint: number };

/**
 * A live notification subscription (see {@link Coordinator.openListener}).
 *
 * @example
 * ```ts
 * import type { ListenerHandle } from "@eventsalsa/eventsalsa/worker";
 * const handle: ListenerHandle = { close: () => Promise.resolve() };
 * ```
 */
export interface ListenerHandle {
  /** Stops listening and releases the connection. */
  close(): Promise<void>;
}

/**
 * The coordination port (see the module doc). `Tx` is what handlers receive.
 *
 * @example
 * ```ts
 * import type { Coordinator } from "@eventsalsa/eventsalsa/worker";
 * async function lag<Tx>(coordinator: Coordinator<Tx>, consumer: string): Promise<number> {
 *   return (await coordinator.latestPosition()) - (await coordinator.readCheckpoint(consumer));
 * }
 * ```
 */
export interface Coordinator<Tx> {
  /** Start-up checks (schema present, position sequence usable by the gap rule). */
  prepare(): Promise<void>;
  /** Registers the worker and the consumers it runs (checkpoint and assignment rows exist after). */
  registerWorker(
    workerId: string,
    consumers: readonly string[],
    heartbeatTimeoutMs: number,
  ): Promise<void>;
  /** Refreshes the worker's heartbeat; false when its registration is gone. */
  heartbeat(workerId: string): Promise<boolean>;
  /** Removes the worker's registration; its assignments become free. */
  unregisterWorker(workerId: string): Promise<void>;
  /** Single-process mode: assigns these consumers to this worker (issue 4: the leader assigns). */
  claimConsumers(workerId: string, consumers: readonly string[]): Promise<void>;

  /** The consumer's checkpoint (0 when none). */
  readCheckpoint(consumer: string): Promise<number>;
  /** Positions of the consumer's unresolved, non-skipped dead letters. */
  blockingDeadLetters(consumer: string): Promise<number[]>;
  /**
   * Reads up to `limit` committed events after `afterPosition`, unscoped. When `pendingToken` is
   * given, first checks (in an earlier statement) whether it has resolved.
   */
  readWindow(
    afterPosition: number,
    limit: number,
    pendingToken: GapToken | null,
    signal: AbortSignal,
  ): Promise<WindowRead>;
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
   * Listens for append notifications on a dedicated connection: `onNotify` per notification,
   * `onClose` once if the connection is lost. Rejects when listening cannot start.
   */
  openListener(onNotify: () => void, onClose: (error: unknown) => void): Promise<ListenerHandle>;

  /** Releases connections the adapter opened for itself (not the caller's pool). */
  close(): Promise<void>;
}
