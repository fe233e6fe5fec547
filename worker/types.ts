/**
 * The consumer contract and the shapes the worker reports through its observer.
 *
 * @module
 */
import type { TransactionSql } from "postgres";
import type { PersistedEvent } from "../store/types.ts";
import type { AssignmentChange } from "./core/assignment.ts";

/**
 * The transaction a PostgreSQL consumer's handler receives: the worker's batch transaction, which
 * also moves the consumer's checkpoint. Write your projection through it and the write commits
 * atomically with the checkpoint (effectively once). Never commit or roll it back yourself.
 *
 * @example
 * ```ts
 * import type { WorkerTransaction } from "@eventsalsa/eventsalsa/worker";
 * async function bump(tx: WorkerTransaction, id: string): Promise<void> {
 *   await tx`update counters set n = n + 1 where id = ${id}`;
 * }
 * ```
 */
// deno-lint-ignore no-explicit-any
export type WorkerTransaction = TransactionSql<any>;

/**
 * What a handler gets besides the transaction and the event(s).
 *
 * @example
 * ```ts
 * import type { HandlerContext } from "@eventsalsa/eventsalsa/worker";
 * async function slowCall(context: HandlerContext): Promise<void> {
 *   await fetch("https://example.com", { signal: context.signal });
 * }
 * ```
 */
export interface HandlerContext {
  /** Aborts when the batch times out or the worker stops; pass it to anything cancellable. */
  readonly signal: AbortSignal;
  /** The consumer's name. */
  readonly consumer: string;
  /** The worker running the batch. */
  readonly workerId: string;
  /** 1 for a first attempt; counts up while the same batch keeps failing. */
  readonly attempt: number;
}

/**
 * A failed attempt at one event, as the poison policy sees it.
 *
 * @example
 * ```ts
 * import type { HandlerFailure } from "@eventsalsa/eventsalsa/worker";
 * const describe = (f: HandlerFailure) => `${f.consumer} @${f.event.globalPosition}: attempt ${f.attempts}`;
 * ```
 */
export interface HandlerFailure {
  /** The consumer's name. */
  readonly consumer: string;
  /** The event whose handling failed. */
  readonly event: PersistedEvent;
  /** What the handler threw. */
  readonly error: unknown;
  /** Consecutive failed attempts at this event, this one included (1 on the first failure). */
  readonly attempts: number;
}

/**
 * What to do with an event whose handler failed:
 * - `"retry"`: an ordinary failure: roll back, back off, retry (counts toward
 *   `maxConsecutiveFailures`);
 * - `"deadLetter"`: record the event in the dead-letter table (visible in `status`), then retry as
 *   above; the consumer does not move past it;
 * - `"skip"`: record it in the dead-letter table and move past it, atomically with the rest of the
 *   batch; `retryDeadLetter` can redrive it later.
 *
 * @example
 * ```ts
 * import type { PoisonDecision } from "@eventsalsa/eventsalsa/worker";
 * const decision: PoisonDecision = "skip";
 * ```
 */
export type PoisonDecision = "retry" | "deadLetter" | "skip";

/**
 * Decides what a failure means (see {@link PoisonDecision}). Called once per failed attempt that
 * can be attributed to one event.
 *
 * @example
 * ```ts
 * import { PoisonEventError, type PoisonPolicy } from "@eventsalsa/eventsalsa/worker";
 * const policy: PoisonPolicy = (f) =>
 *   f.error instanceof PoisonEventError || f.attempts >= 3 ? "skip" : "retry";
 * ```
 */
export type PoisonPolicy = (failure: HandlerFailure) => PoisonDecision;

/**
 * An asynchronous consumer: a projection, a process manager, an outbox relay. `name` is the
 * identity of its checkpoint and assignment; keep it stable.
 *
 * Events arrive in strict global-position order, each exactly once per committed checkpoint move.
 * Give `handle` (called per event) or `handleBatch` (called once per batch with the matching
 * events), or both (`handleBatch` wins). `aggregateTypes`/`eventTypes` narrow what reaches the
 * handler (exact, case-sensitive match; omitted or empty = everything); the checkpoint still
 * moves past events that do not match. Both lists are read again for every batch.
 *
 * @example
 * ```ts
 * import type { Consumer } from "@eventsalsa/eventsalsa/worker";
 * const orderTotals: Consumer = {
 *   name: "order_totals",
 *   aggregateTypes: ["Order"],
 *   eventTypes: ["OrderPlaced"],
 *   async handle(tx, event) {
 *     const { total } = JSON.parse(new TextDecoder().decode(event.payload));
 *     await tx`insert into order_totals (id, total) values (${event.aggregateId}, ${total})
 *       on conflict (id) do update set total = excluded.total`;
 *   },
 * };
 * ```
 */
export interface Consumer<Tx = WorkerTransaction> {
  /** Unique, stable name: the checkpoint's and the assignment's identity. */
  readonly name: string;
  /** Only events of these aggregate types reach the handler. */
  readonly aggregateTypes?: readonly string[];
  /** Only events of these event types reach the handler. */
  readonly eventTypes?: readonly string[];
  /** Handles one event inside the batch transaction. */
  handle?(tx: Tx, event: PersistedEvent, context: HandlerContext): void | Promise<void>;
  /** Handles the batch's matching events at once (never called with an empty list). */
  handleBatch?(
    tx: Tx,
    events: readonly PersistedEvent[],
    context: HandlerContext,
  ): void | Promise<void>;
  /** This consumer's poison policy; the worker's `onPoison` (or the default) when omitted. */
  readonly onPoison?: PoisonPolicy;
}

/**
 * The transaction holding up a gap, as far as the database can tell.
 *
 * @example
 * ```ts
 * import type { GapBlocker } from "@eventsalsa/eventsalsa/worker";
 * const line = (b: GapBlocker) => `pid ${b.pid} xid ${b.xid} open for ${b.transactionAgeMs} ms`;
 * ```
 */
export interface GapBlocker {
  /** Backend process id (`pg_stat_activity.pid`), or null when not applicable. */
  readonly pid: number | null;
  /** The transaction id, or null when not applicable. */
  readonly xid: string | null;
  /** How long the transaction has been open, in milliseconds, when known. */
  readonly transactionAgeMs: number | null;
  /** The backend's state, e.g. `idle in transaction`. */
  readonly state: string | null;
  /** The backend's application name. */
  readonly applicationName: string | null;
  /**
   * The start of its current or last statement; only for a transaction of the worker's own
   * database (null for another database's, whose SQL is never copied into reports or logs).
   */
  readonly query: string | null;
  /**
   * The database the transaction runs in, or null when unknown. Another database's transaction is
   * named only while the worker cannot trust the activity view and waits for the whole server.
   * Absent from adapters without databases (the in-memory one) and from reports written by
   * earlier versions (`status()` reads those as null).
   */
  readonly database?: string | null;
}

/**
 * A consumer waiting at a hole in the global log: position `position` is not visible yet but
 * later ones are, and some transaction that could still commit it is open.
 *
 * @example
 * ```ts
 * import type { GapWait } from "@eventsalsa/eventsalsa/worker";
 * const text = (g: GapWait) => `${g.consumer} waits at ${g.position} for ${g.waitingMs} ms`;
 * ```
 */
export interface GapWait {
  /** The waiting consumer. */
  readonly consumer: string;
  /** The first missing position. */
  readonly position: number;
  /** When the hole was first seen (worker clock, ms since epoch). */
  readonly since: number;
  /** How long it has waited so far. */
  readonly waitingMs: number;
  /** Open transactions that may hold the position. */
  readonly blockers: readonly GapBlocker[];
}

/**
 * A hole skipped because it outlived `maxGapWait` (also written to the gap-skip audit table).
 *
 * @example
 * ```ts
 * import type { GapSkip } from "@eventsalsa/eventsalsa/worker";
 * const text = (s: GapSkip) => `${s.consumer} skipped ${s.skippedPositions.join(",")}`;
 * ```
 */
export interface GapSkip {
  /** The consumer that skipped. */
  readonly consumer: string;
  /** The first skipped position. */
  readonly gapPosition: number;
  /** The checkpoint after the skip. */
  readonly skipTo: number;
  /** Every position skipped (missing when the batch ran). */
  readonly skippedPositions: readonly number[];
  /** The highest position visible when the skip was decided. */
  readonly highestVisible: number;
  /** When the hole was first seen (worker clock). */
  readonly firstSeenAt: number;
}

/**
 * Hooks for metrics and tracing; every one is optional and must not throw (errors are ignored).
 *
 * @example
 * ```ts
 * import type { WorkerObserver } from "@eventsalsa/eventsalsa/worker";
 * const observer: WorkerObserver = {
 *   batchCommitted: (b) => console.log(`${b.consumer}: ${b.from}..${b.to} (${b.handled} handled)`),
 *   gapWaiting: (g) => console.warn(`${g.consumer} waits at ${g.position}`, g.blockers),
 * };
 * ```
 */
export interface WorkerObserver {
  /** A batch committed and moved the checkpoint from `from` to `to`. */
  batchCommitted?(info: {
    consumer: string;
    from: number;
    to: number;
    handled: number;
    durationMs: number;
  }): void;
  /** An attempt failed; the consumer retries after `retryInMs` unless the failure was fatal. */
  batchFailed?(info: {
    consumer: string;
    error: unknown;
    consecutiveFailures: number;
    retryInMs: number;
  }): void;
  /** A gap has been waited on for `gapReportInterval` (repeated at that interval). */
  gapWaiting?(info: GapWait): void;
  /** A gap was skipped after `maxGapWait`. */
  gapSkipped?(info: GapSkip): void;
  /** An event was written to the dead-letter table. */
  deadLettered?(
    info: { consumer: string; event: PersistedEvent; error: unknown; skipped: boolean },
  ): void;
  /** This worker started running a consumer (it was assigned to it). */
  consumerStarted?(info: { consumer: string; workerId: string }): void;
  /**
   * A consumer loop ended: `stopped` (shutdown), `released` (assigned elsewhere; stopped between
   * batches), `ownershipLost` (the batch fence found another owner), `failed` (fatal).
   */
  consumerStopped?(
    info: { consumer: string; reason: "stopped" | "released" | "ownershipLost" | "failed" },
  ): void;
  /** This worker became the leader, or stopped being it (`reason` says why). */
  leadershipChanged?(info: { workerId: string; leader: boolean; reason: string }): void;
  /** This worker, as leader, changed assignments (only the rows that changed). */
  rebalanced?(info: { workerId: string; changes: readonly AssignmentChange[] }): void;
}

/**
 * A worker's registration, as `status` reports it.
 *
 * @example
 * ```ts
 * import type { WorkerNodeStatus } from "@eventsalsa/eventsalsa/worker";
 * const line = (w: WorkerNodeStatus) => `${w.workerId} ${w.live ? "live" : "silent"}`;
 * ```
 */
export interface WorkerNodeStatus {
  /** The worker's id. */
  readonly workerId: string;
  /** When it registered. */
  readonly startedAt: Date;
  /** Its last heartbeat. */
  readonly heartbeatAt: Date;
  /** The consumers it registered (runs, when assigned). */
  readonly consumers: readonly string[];
  /** Heartbeat within the heartbeat timeout. */
  readonly live: boolean;
}

/**
 * One consumer's state, as `status` reports it.
 *
 * @example
 * ```ts
 * import type { ConsumerStatus } from "@eventsalsa/eventsalsa/worker";
 * const line = (c: ConsumerStatus) => `${c.name}@${c.checkpoint} lag ${c.lag}`;
 * ```
 */
export interface ConsumerStatus {
  /** The consumer's name. */
  readonly name: string;
  /** The worker it is assigned to, or null. */
  readonly workerId: string | null;
  /** Its checkpoint (last position handled or passed). */
  readonly checkpoint: number;
  /** Latest position minus checkpoint. */
  readonly lag: number;
  /** When the checkpoint row last changed. */
  readonly updatedAt: Date | null;
  /** The gap it is waiting at, when it has waited for at least `gapReportInterval`. */
  readonly gap: {
    readonly position: number;
    readonly since: Date;
    readonly waitingMs: number;
    readonly blockers: readonly GapBlocker[];
  } | null;
  /** Dead letters: skipped and not redriven; not skipped and not yet resolved. */
  readonly deadLetters: { readonly skipped: number; readonly blocking: number };
  /** How many `maxGapWait` skips were audited. */
  readonly gapSkips: number;
}

/**
 * The current leader, as `status` reports it.
 *
 * @example
 * ```ts
 * import type { LeaderStatus } from "@eventsalsa/eventsalsa/worker";
 * const line = (l: LeaderStatus) => `${l.workerId} leads (${l.strategy}) since ${l.since.toISOString()}`;
 * ```
 */
export interface LeaderStatus {
  /** The leading worker. */
  readonly workerId: string;
  /** How it was elected. */
  readonly strategy: "advisory" | "lease";
  /** When it became leader. */
  readonly since: Date;
  /** When its lease runs out (lease strategy), or null (advisory: held while its session lives). */
  readonly expiresAt: Date | null;
}

/**
 * What `status` returns.
 *
 * @example
 * ```ts
 * import type { WorkerStatus } from "@eventsalsa/eventsalsa/worker";
 * const behind = (s: WorkerStatus) => s.consumers.filter((c) => c.lag > 1_000).map((c) => c.name);
 * ```
 */
export interface WorkerStatus {
  /** The highest visible position of the log. */
  readonly latestPosition: number;
  /** Registered workers. */
  readonly workers: readonly WorkerNodeStatus[];
  /** The current leader, or null when none holds the lock or an unexpired lease. */
  readonly leader: LeaderStatus | null;
  /** Every consumer with a checkpoint or an assignment, by name. */
  readonly consumers: readonly ConsumerStatus[];
}
