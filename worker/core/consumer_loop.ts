/**
 * One consumer's loop: probe the log, apply the gap rule, run the batch transaction, back off
 * when idle or failing. Runtime-agnostic: it talks to the coordination port and the clock only.
 *
 * Each iteration either
 * - probes outside any transaction (`readWindow`) and, when the frontier can move, runs a batch
 *   on the probe's events (the batch's fence re-checks the checkpoint under lock), or
 * - while catching up (the previous batch was full) or when a `maxGapWait` skip is due, reads the
 *   window inside the batch transaction, after the fence, saving the separate probe — unless the
 *   worker shares its reads among several consumers (./shared_windows.ts): then a catch-up
 *   probes too, and a window read once serves every consumer at that position.
 *
 * A detached consumer's iteration always probes, calls the handlers with no transaction open, and
 * only then runs the (short) batch transaction that saves the checkpoint: see
 * `#iterateDetached`.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import {
  BatchTimeoutError,
  ConsecutiveFailuresError,
  errorText,
  HandlerError,
  PoisonEventError,
} from "../errors.ts";
import type { ResolvedRuntimeOptions } from "../options.ts";
import type { AnyConsumer, HandlerContext, PoisonDecision } from "../types.ts";
import { failureBackoff, nextPollInterval } from "./backoff.ts";
import { callBatch, callOne } from "./handlers.ts";
import type {
  BatchOutcome,
  BatchRequest,
  BatchSession,
  Coordinator,
  DeadLetterRecord,
} from "./coordination.ts";
import { type GapPlan, GapTracker, type WindowQuery, type WindowRead } from "./gap_rule.ts";
import { type ConsumerPartition, inPartition, partitionOf, windowSize } from "./partitions.ts";
import { type WorkerTelemetry, workerTelemetry } from "./telemetry.ts";
import type { SharedWindows } from "./shared_windows.ts";
import { pause, rejectOnAbort, type Wakeup } from "./wakeup.ts";
import { MAX_REACH, nextReach, scanSize, type TypeFilter, typeFilter } from "./window.ts";

/** Inputs of a consumer loop. */
export interface ConsumerLoopContext<Tx> {
  readonly consumer: AnyConsumer<Tx>;
  readonly coordinator: Coordinator<Tx>;
  readonly options: ResolvedRuntimeOptions;
  readonly wakeup: Wakeup;
  /** Shutdown: aborts waits and in-flight batches. */
  readonly signal: AbortSignal;
  /**
   * Reassignment: the consumer moved elsewhere. Aborts waits; an in-flight batch finishes (its
   * fence held the assignment row, so the move waited for it), then the loop ends `released`. A
   * detached consumer's running handlers see their signal abort instead: its batch holds no row
   * lock, so the move did not wait for it.
   */
  readonly release?: AbortSignal;
  /**
   * The worker's shared window reads, when it runs several consumers: the loop then probes while
   * catching up too (the window comes from the share), instead of reading inside its batch.
   */
  readonly windows?: SharedWindows;
}

/** Why a consumer loop ended. */
export type ConsumerLoopExit =
  | { readonly reason: "stopped" }
  | { readonly reason: "released" }
  | { readonly reason: "ownershipLost"; readonly owner: string | null }
  | { readonly reason: "failed"; readonly error: ConsecutiveFailuresError };

type IterationResult =
  | { kind: "progressed"; fullWindow: boolean; plan: GapPlan }
  | { kind: "waiting"; plan: GapPlan }
  | { kind: "idle"; plan: GapPlan }
  | { kind: "checkpointMoved" }
  | { kind: "notOwner"; owner: string | null };

interface BatchValue {
  plan: GapPlan;
  handled: number;
  deadLetters: DeadLetterRecord[];
}

/** Calls an observer or logger hook; a throwing hook must not break the loop. */
export function safely(call: () => void): void {
  try {
    call();
  } catch {
    // Observers and loggers are the caller's; their failures are not the consumer's.
  }
}

/**
 * Runs one consumer until shutdown, loss of ownership, or `maxConsecutiveFailures`.
 */
export class ConsumerLoop<Tx> {
  readonly #c: ConsumerLoopContext<Tx>;
  readonly #name: string;
  #checkpoint: number | null = null;
  #tracker: GapTracker;
  /** Positions of unresolved, non-skipped dead letters. */
  #blocking = new Set<number>();
  /** Events the poison policy said to skip, by position. */
  readonly #poisonSkips = new Map<number, DeadLetterRecord>();
  #attempts: { position: number; count: number } | null = null;
  #failures = 0;
  #catchUp = false;
  /** After a `handleBatch` failure without a named event, handle one event at a time. */
  #isolate = false;
  /** How many events the next window may hold: halved after a failure, doubled after a commit. */
  #limit: number;
  /**
   * After a handler failed on an event that was not the batch's first, the next batch stops
   * short of it (commits what came before); after one that was first, the event goes alone.
   */
  #cap: number | null = null;
  /** The first event handed to handlers in the current batch. */
  #firstHandled: number | null = null;
  /** The last event whose handler returned, when handling one event at a time (else null). */
  #handledUpTo: number | null = null;
  #gapReportedAt: number | null = null;
  /** Set by `markStale`: forget before the next iteration. */
  #stale = false;
  /** Spans and metrics, or null without the `telemetry` option. */
  readonly #telemetry: WorkerTelemetry | null;
  /** The most events a window reads: `batchSize`, scaled for a partition (see `windowSize`). */
  readonly #batchSize: number;
  /** Which partition of its consumer this loop runs, or null. */
  readonly #partition: ConsumerPartition | null;
  /** The consumer's type lists, applied by the read (null: every event). */
  readonly #filter: TypeFilter | null;
  /** Positions its windows reach per event they may return (see `nextReach`). */
  #reach = MAX_REACH;

  /** Creates the loop; nothing runs until {@link ConsumerLoop.run}. */
  constructor(context: ConsumerLoopContext<Tx>) {
    this.#c = context;
    this.#name = context.consumer.name;
    this.#tracker = new GapTracker(context.options.maxGapWait);
    this.#partition = partitionOf(context.consumer);
    this.#batchSize = windowSize(context.options.batchSize, this.#partition);
    this.#limit = this.#batchSize;
    this.#filter = typeFilter(context.consumer.aggregateTypes, context.consumer.eventTypes);
    this.#telemetry = workerTelemetry(context.options.telemetry);
  }

  /** Makes the next iteration read the stored checkpoint first (it was moved elsewhere). */
  markStale(): void {
    this.#stale = true;
  }

  /** Drops what the loop remembers of its consumer's position; the next iteration reads it. */
  #forget(): void {
    this.#checkpoint = null;
    this.#catchUp = false;
    this.#tracker = new GapTracker(this.#c.options.maxGapWait);
    this.#poisonSkips.clear();
    this.#attempts = null;
    this.#cap = null;
    this.#limit = this.#batchSize;
  }

  /** The checkpoint as the loop last saw it (null before the first read). */
  get checkpoint(): number | null {
    return this.#checkpoint;
  }

  /** Runs until shutdown, loss of ownership, or too many consecutive failures. */
  async run(): Promise<ConsumerLoopExit> {
    try {
      return await this.#run();
    } finally {
      // A gap wait reported to status must not outlive the loop that reported it.
      if (this.#gapReportedAt !== null) {
        this.#gapReportedAt = null;
        await this.#c.coordinator.reportGap(this.#name, null).catch(() => {});
      }
    }
  }

  async #run(): Promise<ConsumerLoopExit> {
    const { options: o, signal, wakeup, release } = this.#c;
    const waits = release === undefined ? signal : AbortSignal.any([signal, release]);
    const ended = (): ConsumerLoopExit | null =>
      signal.aborted ? { reason: "stopped" } : release?.aborted ? { reason: "released" } : null;
    let idle = o.pollInterval;
    let delay = 0;
    let interruptible = false;
    let seen = wakeup.generation;
    for (;;) {
      const exit = ended();
      if (exit !== null) return exit;
      if (delay > 0) {
        const ok = interruptible
          ? (await wakeup.wait(seen, delay, o.clock, waits)) !== "aborted"
          : await pause(o.clock, delay, waits);
        if (!ok) return ended() ?? { reason: "stopped" };
      }
      seen = wakeup.generation;
      let result: IterationResult;
      try {
        result = await this.#iterate();
      } catch (error) {
        if (signal.aborted) return { reason: "stopped" };
        // A detached batch's handlers are aborted when the consumer moves: not a failure.
        if (release?.aborted && this.#c.consumer.mode === "detached") return { reason: "released" };
        const decision = await this.#onFailure(error);
        if (decision === "skip") {
          delay = 0;
          continue;
        }
        if (decision === "narrowed") {
          // Not counted: the next batch is strictly smaller and commits what came before.
          delay = 0;
          this.#reportFailure(
            "consumer batch failed; committing the events before the failing one",
            error,
            0,
          );
          continue;
        }
        this.#failures++;
        const failures = this.#failures;
        if (failures >= o.maxConsecutiveFailures) {
          this.#reportFailure("consumer failed too many times; stopping the worker", error, -1);
          return {
            reason: "failed",
            error: new ConsecutiveFailuresError(this.#name, failures, error),
          };
        }
        delay = failureBackoff(failures, o.pollInterval, o.maxPollInterval);
        interruptible = false;
        this.#reportFailure("consumer batch failed; retrying", error, delay);
        continue;
      }
      this.#failures = 0;
      switch (result.kind) {
        case "notOwner":
          return { reason: "ownershipLost", owner: result.owner };
        case "checkpointMoved":
          delay = o.batchPause;
          interruptible = false;
          continue;
        case "progressed":
          idle = o.pollInterval;
          delay = result.fullWindow ? o.batchPause : o.pollInterval;
          interruptible = !result.fullWindow;
          break;
        case "waiting":
          idle = o.pollInterval;
          delay = o.gapCheckInterval;
          interruptible = true;
          break;
        case "idle":
          idle = nextPollInterval(idle, o.maxPollInterval, o.pollInterval);
          delay = idle;
          interruptible = true;
          break;
      }
      await this.#reportGap(result.plan);
    }
  }

  /** Logs a failed batch and tells the observer (retryInMs: 0 at once, -1 never). */
  #reportFailure(message: string, error: unknown, retryInMs: number): void {
    const o = this.#c.options;
    const failure = {
      consumer: this.#name,
      error,
      consecutiveFailures: this.#failures,
      retryInMs,
    };
    safely(() =>
      o.logger.error?.(message, {
        consumer: this.#name,
        consecutiveFailures: failure.consecutiveFailures,
        retryInMs,
        error: errorText(error),
      })
    );
    safely(() => o.observer.batchFailed?.(failure));
  }

  async #iterate(): Promise<IterationResult> {
    const { coordinator, options: o, signal } = this.#c;
    if (this.#stale) {
      this.#stale = false;
      this.#forget();
    }
    if (this.#checkpoint === null) {
      const checkpoint = await coordinator.readCheckpoint(this.#name);
      this.#blocking = new Set(await coordinator.blockingDeadLetters(this.#name));
      this.#checkpoint = checkpoint;
    }
    const from = this.#checkpoint;
    if (this.#c.consumer.mode === "detached") return await this.#iterateDetached(from);
    const batch = this.#batchSignal();
    const started = o.clock.now();
    try {
      let plan: GapPlan | null = null;
      const probe = !this.#catchUp || this.#c.windows !== undefined;
      if (probe && !this.#tracker.skipDue(o.clock.now())) {
        const read = await this.#read(from, batch.signal);
        plan = await this.#plan(from, read);
        if (plan.skip === null && plan.target <= from) return this.#noProgress(plan);
        // A maxGapWait skip is decided again inside the transaction, on a fresh read.
        if (plan.skip !== null) plan = null;
      }
      const probed = plan;
      const outcome = await this.#runBatch(from, batch.signal, {
        consumer: this.#name,
        workerId: o.workerId,
        expectedCheckpoint: from,
        signal: batch.signal,
        idleTimeout: this.#idleTimeout(),
        read: probed === null ? this.#query(from) : null,
      }, async (session) => {
        const p = probed ??
          await this.#plan(from, session.read!);
        if (p.target <= from) return { plan: p, handled: 0, deadLetters: [] };
        return await this.#apply(session, p, from, batch.signal);
      });
      if (outcome.kind === "notOwner") return { kind: "notOwner", owner: outcome.owner };
      if (outcome.kind === "checkpointMoved") {
        // Someone else moved it (a reset, or a batch of a former owner): start over from what is
        // stored — checkpoint, dead letters, gap wait — rather than from this loop's memory.
        this.#forget();
        return { kind: "checkpointMoved" };
      }
      const { plan: done, handled, deadLetters } = outcome.value;
      if (done.target <= from) return this.#noProgress(done);
      this.#committed(from, done, handled, deadLetters, o.clock.now() - started);
      return { kind: "progressed", fullWindow: this.#catchUp, plan: done };
    } catch (error) {
      // A timeout surfaces as whatever the cancelled statement threw; report the cause instead.
      if (batch.signal.aborted && !signal.aborted) throw batch.signal.reason;
      throw error;
    } finally {
      batch.dispose();
    }
  }

  /**
   * The next window: up to `#limit` of the consumer's events after `from`, reaching as far as the
   * consumer's density says (see ./window.ts).
   */
  #query(from: number): WindowQuery {
    return {
      after: from,
      limit: this.#limit,
      scan: scanSize(this.#limit, this.#reach),
      filter: this.#filter,
      pendingToken: this.#tracker.pendingToken,
    };
  }

  /** The next window's probe, from the worker's shared reads when it has them. */
  #read(from: number, signal: AbortSignal): Promise<WindowRead> {
    const { coordinator, windows } = this.#c;
    const query = this.#query(from);
    if (windows === undefined) return coordinator.readWindow(query, signal);
    // The shared read is not this loop's to cut short (others may wait on it): only its wait is.
    const shared = windows.read(
      query,
      () => coordinator.readWindow(query, new AbortController().signal),
    );
    return Promise.race([shared, rejectOnAbort(signal)]);
  }

  /** Learns the density from a window read after `from`, then applies the gap rule and the cap. */
  async #plan(from: number, read: WindowRead): Promise<GapPlan> {
    if (this.#filter !== null) this.#reach = nextReach(this.#reach, from, read);
    return this.#narrow(from, await this.#tracker.plan(from, read, this.#c.options.clock.now()));
  }

  /** `coordinator.runBatch`, in a span and measured when the worker has telemetry. */
  #runBatch(
    from: number,
    signal: AbortSignal,
    request: BatchRequest,
    work: (session: BatchSession<Tx>) => Promise<BatchValue>,
  ): Promise<BatchOutcome<BatchValue>> {
    return this.#measured(from, signal, () => this.#c.coordinator.runBatch(request, work));
  }

  /** One batch's `run`, in a span and measured when the worker has telemetry. */
  #measured(
    from: number,
    signal: AbortSignal,
    run: () => Promise<BatchOutcome<BatchValue>>,
  ): Promise<BatchOutcome<BatchValue>> {
    const telemetry = this.#telemetry;
    return telemetry === null ? run() : telemetry.batch(this.#name, from, signal, run);
  }

  /** The server-side bound of a batch transaction: past the batch timeout the worker gave up. */
  #idleTimeout(): number {
    const o = this.#c.options;
    return Math.min(2_147_483_647, o.batchTimeout + Math.max(1_000, o.batchTimeout / 10));
  }

  /**
   * The signal of one batch: aborts with `BatchTimeoutError` after `batchTimeout`, and when one of
   * `follows` aborts (by default shutdown), with its reason.
   */
  #batchSignal(
    follows: readonly (AbortSignal | undefined)[] = [this.#c.signal],
  ): { signal: AbortSignal; dispose(): void } {
    const o = this.#c.options;
    const controller = new AbortController();
    const unfollow = follows.map((followed) => {
      if (followed === undefined) return () => {};
      const abort = () => controller.abort(followed.reason);
      if (followed.aborted) abort();
      else followed.addEventListener("abort", abort, { once: true });
      return () => followed.removeEventListener("abort", abort);
    });
    const timer = o.clock.setTimeout(
      () => controller.abort(new BatchTimeoutError(this.#name, o.batchTimeout)),
      o.batchTimeout,
    );
    return {
      signal: controller.signal,
      dispose: () => {
        o.clock.clearTimeout(timer);
        for (const stop of unfollow) stop();
      },
    };
  }

  /**
   * Applies the cap of a failure: the plan stops short of the event that failed (or at it, when it
   * was the first). A cap at or below the checkpoint is stale (the checkpoint moved past it).
   */
  #narrow(from: number, plan: GapPlan): GapPlan {
    const cap = this.#cap;
    if (cap === null || cap <= from || plan.target <= cap) return plan;
    return this.#capped(plan, cap);
  }

  /** `plan` cut at position `cap` (below its target): events, holes and skips up to `cap`. */
  #capped(plan: GapPlan, cap: number): GapPlan {
    const skipped = plan.skip?.skippedPositions.filter((p) => p <= cap) ?? [];
    return {
      ...plan,
      target: cap,
      events: plan.events.filter((e) => e.globalPosition <= cap),
      passedHoles: plan.passedHoles
        .filter(([start]) => start <= cap)
        .map(([start, end]) => [start, Math.min(end, cap)] as const),
      skip: plan.skip === null || skipped.length === 0 ? null : {
        ...plan.skip,
        gapPosition: skipped[0],
        skippedPositions: skipped,
      },
      // More follows: the loop goes on at once.
      full: true,
    };
  }

  #noProgress(plan: GapPlan): IterationResult {
    this.#catchUp = false;
    return plan.hole === null ? { kind: "idle", plan } : { kind: "waiting", plan };
  }

  #committed(
    from: number,
    plan: GapPlan,
    handled: number,
    deadLetters: readonly DeadLetterRecord[],
    durationMs: number,
  ): void {
    const { options: o } = this.#c;
    const to = plan.target;
    this.#checkpoint = to;
    this.#catchUp = plan.full;
    this.#isolate = false;
    this.#attempts = null;
    this.#cap = null;
    this.#limit = Math.min(this.#batchSize, this.#limit * 2);
    for (const position of [...this.#poisonSkips.keys()]) {
      if (position <= to) this.#poisonSkips.delete(position);
    }
    for (const position of [...this.#blocking]) if (position <= to) this.#blocking.delete(position);
    safely(() =>
      o.observer.batchCommitted?.({ consumer: this.#name, from, to, handled, durationMs })
    );
    safely(() => o.logger.debug?.("batch committed", { consumer: this.#name, from, to, handled }));
    for (const record of deadLetters) {
      this.#telemetry?.deadLettered(this.#name, true);
      safely(() =>
        o.observer.deadLettered?.({
          consumer: this.#name,
          event: record.event,
          error: record.error,
          skipped: true,
        })
      );
      safely(() =>
        o.logger.error?.("poison event skipped to the dead-letter table", {
          consumer: this.#name,
          globalPosition: record.event.globalPosition,
          eventId: record.event.eventId,
          error: record.error,
        })
      );
    }
    if (plan.skip !== null) {
      const skip = plan.skip;
      safely(() =>
        o.observer.gapSkipped?.({
          consumer: this.#name,
          gapPosition: skip.gapPosition,
          skipTo: to,
          skippedPositions: skip.skippedPositions,
          highestVisible: plan.highestVisible,
          firstSeenAt: skip.firstSeenAt,
        })
      );
      safely(() =>
        o.logger.error?.("gap skipped after maxGapWait", {
          consumer: this.#name,
          skippedPositions: skip.skippedPositions,
          skipTo: to,
        })
      );
    }
  }

  async #apply(
    session: BatchSession<Tx>,
    plan: GapPlan,
    from: number,
    signal: AbortSignal,
  ): Promise<BatchValue> {
    const { selected, deadLetters } = this.#select(plan);
    await this.#recordSkips(session, plan, deadLetters);
    const context = this.#context(signal);
    this.#firstHandled = selected[0]?.globalPosition ?? null;
    await this.#handle(session.tx, selected, context);
    // A batch given up on (timeout, shutdown) writes nothing more, checkpoint included: the
    // adapter refuses it too, this keeps the rule in one place for every adapter.
    if (signal.aborted) throw signal.reason;
    await this.#saveCheckpoint(session, plan, from);
    return { plan, handled: selected.length, deadLetters };
  }

  /**
   * The plan's events that reach the handlers (the read applied the type filters; this applies
   * the partition), and the dead letters of the poison skips it passes over.
   */
  #select(
    plan: GapPlan,
  ): { selected: readonly PersistedEvent[]; deadLetters: DeadLetterRecord[] } {
    // A partition's handlers get its aggregates only; it passes the rest, as a type filter does.
    const partition = this.#partition;
    if (partition === null && this.#poisonSkips.size === 0) {
      return { selected: plan.events, deadLetters: [] };
    }
    const selected: PersistedEvent[] = [];
    const deadLetters: DeadLetterRecord[] = [];
    for (const event of plan.events) {
      const poison = this.#poisonSkips.get(event.globalPosition);
      if (poison !== undefined) deadLetters.push(poison);
      else if (partition === null || inPartition(event, partition)) selected.push(event);
    }
    return { selected, deadLetters };
  }

  /** What the handlers of one batch are told. */
  #context(signal: AbortSignal): HandlerContext {
    const o = this.#c.options;
    const partition = this.#partition;
    return {
      signal,
      consumer: this.#name,
      workerId: o.workerId,
      attempt: this.#failures + 1,
      ...(partition === null
        ? {}
        : { partition: { index: partition.index, count: partition.count } }),
    };
  }

  /** Writes the batch's poison-skip dead letters and its `maxGapWait` audit row. */
  async #recordSkips(
    session: BatchSession<Tx>,
    plan: GapPlan,
    deadLetters: readonly DeadLetterRecord[],
  ): Promise<void> {
    for (const record of deadLetters) await session.recordDeadLetter(record);
    if (plan.skip !== null) {
      await session.recordGapSkip({
        consumer: this.#name,
        workerId: this.#c.options.workerId,
        gapPosition: plan.skip.gapPosition,
        skipTo: plan.target,
        skippedPositions: plan.skip.skippedPositions,
        highestVisible: plan.highestVisible,
        firstSeenAt: plan.skip.firstSeenAt,
      });
    }
  }

  /** Resolves the blocking dead letters the batch handled, then moves the checkpoint. */
  async #saveCheckpoint(session: BatchSession<Tx>, plan: GapPlan, from: number): Promise<void> {
    const resolved = [...this.#blocking].filter((p) => p > from && p <= plan.target);
    if (resolved.length > 0) await session.resolveDeadLetters(this.#name, resolved);
    await session.saveCheckpoint(plan.target);
  }

  /**
   * One batch of a detached consumer. The window is probed outside any transaction (the gap rule
   * applies unchanged), the handlers run with no transaction open, and only then does the short
   * batch transaction — fenced as always: owner check, checkpoint compare-and-set — record the
   * poison skips and gap skips and save the checkpoint. If the fence refuses, the next owner
   * delivers the events again (at least once). When `handle` fails on an event after handling
   * others, the checkpoint moves past those first, so they are not delivered again; the failure
   * then goes the usual way (the failing event goes first next time, counted, poison policy).
   */
  async #iterateDetached(from: number): Promise<IterationResult> {
    const { options: o, signal, release } = this.#c;
    // The handlers' signal also aborts when the consumer is assigned elsewhere: a detached batch
    // holds no row lock, so the move does not wait for it and the new owner may already run.
    const batch = this.#batchSignal([signal, release]);
    const started = o.clock.now();
    let failure: unknown = null;
    try {
      const read = await this.#read(from, batch.signal);
      const plan = await this.#plan(from, read);
      if (plan.skip === null && plan.target <= from) return this.#noProgress(plan);
      const work = async (): Promise<BatchOutcome<BatchValue>> => {
        const { selected, deadLetters } = this.#select(plan);
        this.#firstHandled = selected[0]?.globalPosition ?? null;
        let done = plan;
        try {
          await this.#awaitHandlers(
            this.#handle(null, selected, this.#context(batch.signal)),
            batch.signal,
            started,
          );
          // Stopped between events (its signal aborted): checkpoint what was handled.
          const upTo = this.#handledUpTo;
          const next = upTo === null ? undefined : selected.find((e) => e.globalPosition > upTo);
          if (next !== undefined) done = this.#capped(plan, next.globalPosition - 1);
        } catch (error) {
          const failed = error instanceof HandlerError ? error.event : null;
          if (failed === null || this.#handledUpTo === null) throw error;
          failure = error;
          done = this.#capped(plan, failed.globalPosition - 1);
        }
        return await this.#saveDetached(from, done, {
          plan: done,
          handled: selected.filter((e) => e.globalPosition <= done.target).length,
          deadLetters: deadLetters.filter((r) => r.event.globalPosition <= done.target),
        });
      };
      const outcome = await this.#measured(from, batch.signal, work);
      if (outcome.kind === "notOwner") return { kind: "notOwner", owner: outcome.owner };
      if (outcome.kind === "checkpointMoved") {
        this.#forget();
        return { kind: "checkpointMoved" };
      }
      const { plan: done, handled, deadLetters } = outcome.value;
      this.#committed(from, done, handled, deadLetters, o.clock.now() - started);
      if (failure !== null) throw failure;
      return { kind: "progressed", fullWindow: this.#catchUp, plan: done };
    } catch (error) {
      // A read cut short by the timeout: report the timeout. A handler's failure names its event.
      if (
        error !== failure && batch.signal.aborted && !signal.aborted &&
        !(error instanceof HandlerError)
      ) {
        throw batch.signal.reason;
      }
      throw error;
    } finally {
      batch.dispose();
    }
  }

  /**
   * Waits for a detached batch's handlers. Once their signal aborts at `batchTimeout` the worker
   * still waits (what they did is done; their return decides what is checkpointed) and logs that
   * the checkpoint waits. Only a shutdown stops the wait, and not before the batch's
   * `batchTimeout` has run out: a handler ignoring its signal holds `stop()` no longer than that.
   */
  #awaitHandlers(
    handlers: Promise<void>,
    batchSignal: AbortSignal,
    started: number,
  ): Promise<void> {
    const { options: o, signal } = this.#c;
    let timer: unknown = null;
    const onTimeout = () => {
      if (!(batchSignal.reason instanceof BatchTimeoutError)) return;
      safely(() =>
        o.logger.error?.(
          "detached handlers are still running past batchTimeout; the checkpoint waits for them",
          { consumer: this.#name, batchTimeout: o.batchTimeout },
        )
      );
    };
    let onStop = () => {};
    const abandoned = new Promise<never>((_, reject) => {
      onStop = () => {
        const left = started + o.batchTimeout - o.clock.now();
        if (left <= 0) reject(signal.reason);
        else timer = o.clock.setTimeout(() => reject(signal.reason), left);
      };
    });
    abandoned.catch(() => {});
    if (signal.aborted) onStop();
    else signal.addEventListener("abort", onStop, { once: true });
    if (!batchSignal.aborted) batchSignal.addEventListener("abort", onTimeout, { once: true });
    return Promise.race([handlers, abandoned]).finally(() => {
      signal.removeEventListener("abort", onStop);
      batchSignal.removeEventListener("abort", onTimeout);
      if (timer !== null) o.clock.clearTimeout(timer);
    });
  }

  /**
   * The short transaction of a detached batch: the fence, the poison and gap skips, the
   * checkpoint. Its own `batchTimeout`, not the handlers' (which may have fired), and not cut by
   * shutdown: what the handlers finished before a graceful stop is checkpointed.
   */
  async #saveDetached(
    from: number,
    plan: GapPlan,
    value: BatchValue,
  ): Promise<BatchOutcome<BatchValue>> {
    const o = this.#c.options;
    const commit = this.#batchSignal([]);
    try {
      return await this.#c.coordinator.runBatch({
        consumer: this.#name,
        workerId: o.workerId,
        expectedCheckpoint: from,
        signal: commit.signal,
        idleTimeout: this.#idleTimeout(),
        read: null,
      }, async (session) => {
        await this.#recordSkips(session, plan, value.deadLetters);
        await this.#saveCheckpoint(session, plan, from);
        return value;
      });
    } finally {
      commit.dispose();
    }
  }

  /**
   * Calls the handlers on `events`: `handleBatch` with all of them (unless isolating a failure),
   * else one event at a time, noting in `#handledUpTo` each event whose handler returned. `tx` is
   * the batch transaction; null for a detached consumer, whose handlers get none.
   */
  async #handle(
    tx: Tx | null,
    events: readonly PersistedEvent[],
    context: HandlerContext,
  ): Promise<void> {
    const consumer = this.#c.consumer;
    this.#handledUpTo = null;
    if (consumer.handleBatch !== undefined && !this.#isolate) {
      if (events.length === 0) return;
      try {
        await callBatch(consumer, tx, events, context);
      } catch (error) {
        const named = error instanceof PoisonEventError && error.event !== null
          ? events.find((e) => e.globalPosition === error.event!.globalPosition) ?? null
          : null;
        throw new HandlerError(this.#name, named, error);
      }
      return;
    }
    for (const event of events) {
      // A detached batch given up on (timeout, shutdown, moved) hands out no more events; what
      // was handled is checkpointed.
      if (tx === null && context.signal.aborted && this.#handledUpTo !== null) return;
      try {
        // A handler that returns nothing costs no await: a tick per event is a catch-up's price.
        const result = callOne(consumer, tx, event, context);
        if (result !== undefined) await result;
      } catch (error) {
        throw new HandlerError(this.#name, event, error);
      }
      this.#handledUpTo = event.globalPosition;
    }
  }

  /**
   * Narrows the next batch after a failure and applies the poison policy. "narrowed": the next
   * batch stops short of a failing event that was not first; "skip": the policy skips the event;
   * both retry at once, uncounted. "failure": counted, retried after back-off.
   */
  async #onFailure(error: unknown): Promise<"narrowed" | "skip" | "failure"> {
    const { consumer, options: o } = this.#c;
    const handlerError = error instanceof HandlerError ? error : null;
    const event = handlerError?.event ?? null;
    if (handlerError === null || event === null) {
      // Nothing names the culprit: a smaller window next time (a batch too big for batchTimeout
      // also ends here), one event at a time for handleBatch.
      this.#limit = Math.max(1, Math.floor(this.#limit / 2));
      if (handlerError !== null && consumer.handleBatch !== undefined) this.#isolate = true;
      return "failure";
    }
    const position = event.globalPosition;
    if (this.#firstHandled !== null && position > this.#firstHandled) {
      // Events before it were handled: commit them without it (transient failures cost
      // throughput, not progress). Strictly smaller each time, so this ends.
      this.#cap = position - 1;
      return "narrowed";
    }
    this.#cap = position;
    const count = this.#attempts?.position === position ? this.#attempts.count + 1 : 1;
    this.#attempts = { position, count };
    let decision: PoisonDecision;
    try {
      decision = (consumer.onPoison ?? o.onPoison)({
        consumer: this.#name,
        event,
        error: handlerError.cause,
        attempts: count,
      });
    } catch (policyError) {
      safely(() =>
        o.logger.error?.("poison policy threw; treating the failure as a retry", {
          consumer: this.#name,
          error: errorText(policyError),
        })
      );
      decision = "retry";
    }
    if (decision !== "skip" && decision !== "deadLetter") return "failure";
    const record: DeadLetterRecord = {
      consumer: this.#name,
      workerId: o.workerId,
      event,
      error: errorText(handlerError.cause),
      attempts: count,
      skipped: decision === "skip",
    };
    if (decision === "skip") {
      this.#poisonSkips.set(position, record);
      return "skip";
    }
    await this.#recordBlockingDeadLetter(record);
    return "failure";
  }

  async #recordBlockingDeadLetter(record: DeadLetterRecord): Promise<void> {
    const { coordinator, options: o } = this.#c;
    const batch = this.#batchSignal();
    try {
      const outcome = await coordinator.runBatch({
        consumer: this.#name,
        workerId: o.workerId,
        expectedCheckpoint: this.#checkpoint!,
        signal: batch.signal,
        idleTimeout: this.#idleTimeout(),
        read: null,
      }, (session) => session.recordDeadLetter(record));
      if (outcome.kind !== "committed") return;
      // Counted once per event: a retried poison event updates its dead letter row.
      if (this.#telemetry !== null && !this.#blocking.has(record.event.globalPosition)) {
        this.#telemetry.deadLettered(this.#name, false);
      }
      this.#blocking.add(record.event.globalPosition);
      safely(() =>
        o.observer.deadLettered?.({
          consumer: this.#name,
          event: record.event,
          error: record.error,
          skipped: false,
        })
      );
      safely(() =>
        o.logger.error?.(
          "poison event recorded in the dead-letter table; the consumer stays at it",
          {
            consumer: this.#name,
            globalPosition: record.event.globalPosition,
            eventId: record.event.eventId,
            attempts: record.attempts,
            error: record.error,
          },
        )
      );
    } catch (error) {
      safely(() =>
        o.logger.error?.("could not record a dead letter", {
          consumer: this.#name,
          error: errorText(error),
        })
      );
    } finally {
      batch.dispose();
    }
  }

  /** Reports a long gap wait (observer, log, status) every `gapReportInterval`; clears it after. */
  async #reportGap(plan: GapPlan): Promise<void> {
    const { coordinator, options: o } = this.#c;
    const now = o.clock.now();
    if (plan.hole !== null && plan.waitingSince !== null) {
      if (now - plan.waitingSince < o.gapReportInterval) return;
      if (this.#gapReportedAt !== null && now - this.#gapReportedAt < o.gapReportInterval) return;
      this.#gapReportedAt = now;
      const token = this.#tracker.pendingToken;
      const blockers = token === null ? [] : await coordinator.gapBlockers(token).catch(() => []);
      const wait = {
        consumer: this.#name,
        position: plan.hole,
        since: plan.waitingSince,
        waitingMs: now - plan.waitingSince,
        blockers,
      };
      this.#telemetry?.gapWaiting(wait);
      safely(() => o.observer.gapWaiting?.(wait));
      safely(() =>
        o.logger.error?.("consumer is waiting at a gap in the global log", {
          consumer: this.#name,
          position: wait.position,
          waitingMs: wait.waitingMs,
          blockers: blockers.map((b) =>
            `pid ${b.pid} xid ${b.xid} open ${b.transactionAgeMs} ms (${b.state ?? "?"}): ${
              b.query ?? ""
            }`
          ),
        })
      );
      await coordinator.reportGap(this.#name, wait).catch((error) =>
        safely(() => o.logger.error?.("could not record the gap wait", { error: errorText(error) }))
      );
    } else if (this.#gapReportedAt !== null) {
      this.#gapReportedAt = null;
      await coordinator.reportGap(this.#name, null).catch((error) =>
        safely(() => o.logger.error?.("could not clear the gap wait", { error: errorText(error) }))
      );
    }
  }
}
