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
 * What a handler gets besides the event(s) (and, for a transactional {@link Consumer}, the batch
 * transaction; a {@link DetachedConsumer}'s handlers get none).
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
  /**
   * Aborts when the batch times out or the worker stops (and, for a {@link DetachedConsumer},
   * when the consumer is assigned to another worker); pass it to anything cancellable.
   */
  readonly signal: AbortSignal;
  /**
   * The name the batch's checkpoint is kept under: the consumer's name, or for a partitioned
   * consumer its partition's (`orders#2of4`), as in `status`, the observer and dead letters.
   */
  readonly consumer: string;
  /** The worker running the batch. */
  readonly workerId: string;
  /** 1 for a first attempt; counts up while the same batch keeps failing. */
  readonly attempt: number;
  /**
   * For a consumer with `partitions` > 1: which partition runs the batch (`index` from 0 to
   * `count` − 1). Its events are those of the aggregates that hash to `index`. Absent otherwise.
   */
  readonly partition?: { readonly index: number; readonly count: number };
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
  /**
   * Where the consumer starts when it is first registered (its checkpoint row is created):
   * `"beginning"` (the default: every event), `"end"` (after the highest position visible at that
   * moment: only what is appended from then on), or a position (events after it). Ignored once
   * the consumer has a checkpoint; a reset sets a new one.
   */
  readonly startFrom?: "beginning" | "end" | number;
  /**
   * Clears the consumer's read model when it is reset (`worker.resetConsumer`, or the CLI's
   * `consumers reset` / `consumers rebuild` with `--module`), in the same transaction that moves
   * the checkpoint back, so readers never see a half-cleared model with the old checkpoint.
   */
  reset?(tx: Tx, context: ResetContext): void | Promise<void>;
  /**
   * Run the consumer as this many partitions (default 1; at most 1024): each handles the events
   * whose aggregate hashes to it, with a checkpoint and an assignment of its own, so the
   * partitions of one hot projection spread over the fleet's processes. Partition `i` of `N` is
   * named `<name>#<i>of<N>` (names ending like that are reserved); the events of one aggregate
   * all go to one partition, in order. The hash is FNV-1a (32-bit) over the UTF-8 bytes of
   * `aggregateType + "\u0000" + aggregateId`, modulo N. The count cannot change while the
   * consumer's rows exist (the worker refuses to start): see "Partitioned consumers" in the guide.
   */
  readonly partitions?: number;
  /**
   * `"transactional"` (the default, also when omitted): handlers write through the batch
   * transaction and their writes commit with the checkpoint (effectively once). A consumer whose
   * handlers call the outside world (e-mail, HTTP, queues) and must not hold a transaction open
   * meanwhile is a {@link DetachedConsumer} (`mode: "detached"`) instead.
   */
  readonly mode?: "transactional";
}

/**
 * A detached consumer (`mode: "detached"`; the Go projector's `DetachedProjection`): for handlers
 * that call the outside world — e-mail, HTTP, queues — and must not hold a database transaction
 * open while they do. Its handlers get no transaction: the worker reads the window outside any
 * transaction, calls them with none open, and only then saves the checkpoint (with dead letters
 * and gap skips) in a short transaction fenced like every batch (owner check, checkpoint
 * compare-and-set).
 *
 * **At least once.** A crash, a lost connection or a reassignment after a handler ran and before
 * that checkpoint committed hands the same events to the handler again (to the next owner, maybe
 * while the previous one is still finishing: its `context.signal` aborts when it learns of the
 * move). Order per consumer is kept. Guard each side effect by the event's id (or its global
 * position), which never changes across redeliveries: check a table of done ids first and record
 * the id after the effect, and give the receiver the id as an idempotency key where it takes one —
 * see "Detached consumers" in the guide. Everything else (filters, `startFrom`, `partitions`,
 * `reset`, the poison policy, retries and `maxConsecutiveFailures`) works as for a
 * {@link Consumer}; when `handle` fails on an event, the checkpoint first moves past the events
 * before it that were handled, so they are not delivered again.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import type { DetachedConsumer } from "@eventsalsa/eventsalsa/worker";
 * const sql = postgres(process.env.DATABASE_URL!);
 * const welcomeEmails: DetachedConsumer = {
 *   name: "welcome_emails",
 *   mode: "detached",
 *   eventTypes: ["UserRegistered"],
 *   async handle(event, { signal }) {
 *     const [sent] = await sql`SELECT 1 FROM welcome_emails_sent WHERE event_id = ${event.eventId}`;
 *     if (sent !== undefined) return; // delivered again: already done
 *     const response = await fetch("https://mail.example.com/send", {
 *       method: "POST",
 *       headers: { "content-type": "application/json", "idempotency-key": event.eventId },
 *       body: new TextDecoder().decode(event.payload),
 *       signal,
 *     });
 *     if (!response.ok) throw new Error(`mail service: ${response.status}`);
 *     await sql`INSERT INTO welcome_emails_sent (event_id) VALUES (${event.eventId})
 *       ON CONFLICT (event_id) DO NOTHING`;
 *   },
 * };
 * ```
 */
export interface DetachedConsumer<Tx = WorkerTransaction>
  extends Omit<Consumer<Tx>, "handle" | "handleBatch" | "mode"> {
  /** Marks the consumer detached (required: without it a consumer is transactional). */
  readonly mode: "detached";
  /**
   * Handles one event, with no transaction open. Returning moves nothing yet: the checkpoint is
   * saved after the batch's last handler returns.
   */
  handle?(event: PersistedEvent, context: HandlerContext): void | Promise<void>;
  /**
   * Handles the batch's matching events at once, with no transaction open (never called with an
   * empty list). A failure redelivers the whole batch, whatever it had done.
   */
  handleBatch?(events: readonly PersistedEvent[], context: HandlerContext): void | Promise<void>;
}

/**
 * Any consumer a worker runs: transactional ({@link Consumer}) or {@link DetachedConsumer}.
 * Internal (the entry points spell the union out).
 *
 * @example
 * ```ts ignore
 * const consumers: AnyConsumer[] = [
 *   { name: "orders_view", async handle(tx, event) {} },
 *   { name: "order_emails", mode: "detached", async handle(event, context) {} },
 * ];
 * ```
 */
export type AnyConsumer<Tx = WorkerTransaction> = Consumer<Tx> | DetachedConsumer<Tx>;

/**
 * What a consumer's `reset` hook is told.
 *
 * @example
 * ```ts
 * import type { ResetContext } from "@eventsalsa/eventsalsa/worker";
 * const context: ResetContext = { consumer: "orders_view", toPosition: 0 };
 * ```
 */
export interface ResetContext {
  /** The consumer being reset. */
  readonly consumer: string;
  /** Its new checkpoint: events after it are handled again. */
  readonly toPosition: number;
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
