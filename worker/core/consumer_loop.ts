/**
 * One consumer's loop: probe the log, apply the gap rule, run the batch transaction, back off
 * when idle or failing. Runtime-agnostic: it talks to the coordination port and the clock only.
 *
 * Each iteration either
 * - probes outside any transaction (`readWindow`) and, when the frontier can move, runs a batch
 *   on the probe's events (the batch's fence re-checks the checkpoint under lock), or
 * - while catching up (the previous batch was full) or when a `maxGapWait` skip is due, reads the
 *   window inside the batch transaction, after the fence, saving the separate probe.
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
import type { Consumer, HandlerContext, PoisonDecision } from "../types.ts";
import { failureBackoff, nextPollInterval } from "./backoff.ts";
import type {
  BatchOutcome,
  BatchRequest,
  BatchSession,
  Coordinator,
  DeadLetterRecord,
} from "./coordination.ts";
import { type GapPlan, GapTracker } from "./gap_rule.ts";
import { type WorkerTelemetry, workerTelemetry } from "./telemetry.ts";
import { pause, type Wakeup } from "./wakeup.ts";

/** Inputs of a consumer loop. */
export interface ConsumerLoopContext<Tx> {
  readonly consumer: Consumer<Tx>;
  readonly coordinator: Coordinator<Tx>;
  readonly options: ResolvedRuntimeOptions;
  readonly wakeup: Wakeup;
  /** Shutdown: aborts waits and in-flight batches. */
  readonly signal: AbortSignal;
  /**
   * Reassignment: the consumer moved elsewhere. Aborts waits; an in-flight batch finishes (its
   * fence held the assignment row, so the move waited for it), then the loop ends `released`.
   */
  readonly release?: AbortSignal;
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

function matches(list: readonly string[] | undefined, value: string): boolean {
  return list === undefined || list.length === 0 || list.includes(value);
}

/**
 * Runs one consumer until shutdown, loss of ownership, or `maxConsecutiveFailures`.
 */
export class ConsumerLoop<Tx> {
  readonly #c: ConsumerLoopContext<Tx>;
  readonly #name: string;
  #checkpoint: number | null = null;
  readonly #tracker: GapTracker;
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
  #gapReportedAt: number | null = null;
  /** Spans and metrics, or null without the `telemetry` option. */
  readonly #telemetry: WorkerTelemetry | null;

  /** Creates the loop; nothing runs until {@link ConsumerLoop.run}. */
  constructor(context: ConsumerLoopContext<Tx>) {
    this.#c = context;
    this.#name = context.consumer.name;
    this.#tracker = new GapTracker(context.options.maxGapWait);
    this.#limit = context.options.batchSize;
    this.#telemetry = workerTelemetry(context.options.telemetry);
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
          delay = o.batchPause;
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
    if (this.#checkpoint === null) {
      const checkpoint = await coordinator.readCheckpoint(this.#name);
      this.#blocking = new Set(await coordinator.blockingDeadLetters(this.#name));
      this.#checkpoint = checkpoint;
    }
    const from = this.#checkpoint;
    const batch = this.#batchSignal();
    const started = o.clock.now();
    try {
      let plan: GapPlan | null = null;
      if (!this.#catchUp && !this.#tracker.skipDue(o.clock.now())) {
        const read = await coordinator.readWindow(
          from,
          this.#limit,
          this.#tracker.pendingToken,
          batch.signal,
        );
        plan = this.#narrow(from, await this.#tracker.plan(from, read, o.clock.now()));
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
        read: probed === null
          ? { limit: this.#limit, pendingToken: this.#tracker.pendingToken }
          : null,
      }, async (session) => {
        const p = probed ??
          this.#narrow(from, await this.#tracker.plan(from, session.read!, o.clock.now()));
        if (p.target <= from) return { plan: p, handled: 0, deadLetters: [] };
        return await this.#apply(session, p, from, batch.signal);
      });
      if (outcome.kind === "notOwner") return { kind: "notOwner", owner: outcome.owner };
      if (outcome.kind === "checkpointMoved") {
        this.#checkpoint = outcome.checkpoint;
        this.#catchUp = false;
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

  /** `coordinator.runBatch`, in a span and measured when the worker has telemetry. */
  #runBatch(
    from: number,
    signal: AbortSignal,
    request: BatchRequest,
    work: (session: BatchSession<Tx>) => Promise<BatchValue>,
  ): Promise<BatchOutcome<BatchValue>> {
    const coordinator = this.#c.coordinator;
    const telemetry = this.#telemetry;
    if (telemetry === null) return coordinator.runBatch(request, work);
    return telemetry.batch(this.#name, from, signal, () => coordinator.runBatch(request, work));
  }

  /** The server-side bound of a batch transaction: past the batch timeout the worker gave up. */
  #idleTimeout(): number {
    const o = this.#c.options;
    return Math.min(2_147_483_647, o.batchTimeout + Math.max(1_000, o.batchTimeout / 10));
  }

  /** The signal of one batch: aborts on shutdown, or with `BatchTimeoutError` after `batchTimeout`. */
  #batchSignal(): { signal: AbortSignal; dispose(): void } {
    const { options: o, signal } = this.#c;
    const controller = new AbortController();
    const onShutdown = () => controller.abort(signal.reason);
    if (signal.aborted) onShutdown();
    else signal.addEventListener("abort", onShutdown, { once: true });
    const timer = o.clock.setTimeout(
      () => controller.abort(new BatchTimeoutError(this.#name, o.batchTimeout)),
      o.batchTimeout,
    );
    return {
      signal: controller.signal,
      dispose: () => {
        o.clock.clearTimeout(timer);
        signal.removeEventListener("abort", onShutdown);
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
      windowSize: Math.max(plan.windowSize, this.#c.options.batchSize),
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
    this.#catchUp = plan.windowSize >= this.#limit;
    this.#isolate = false;
    this.#attempts = null;
    this.#cap = null;
    this.#limit = Math.min(o.batchSize, this.#limit * 2);
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
    const { consumer, options: o } = this.#c;
    const aggregateTypes = consumer.aggregateTypes;
    const eventTypes = consumer.eventTypes;
    const selected: PersistedEvent[] = [];
    const deadLetters: DeadLetterRecord[] = [];
    for (const event of plan.events) {
      const poison = this.#poisonSkips.get(event.globalPosition);
      if (poison !== undefined) deadLetters.push(poison);
      else if (
        matches(aggregateTypes, event.aggregateType) && matches(eventTypes, event.eventType)
      ) {
        selected.push(event);
      }
    }
    for (const record of deadLetters) await session.recordDeadLetter(record);
    if (plan.skip !== null) {
      await session.recordGapSkip({
        consumer: this.#name,
        workerId: o.workerId,
        gapPosition: plan.skip.gapPosition,
        skipTo: plan.target,
        skippedPositions: plan.skip.skippedPositions,
        highestVisible: plan.highestVisible,
        firstSeenAt: plan.skip.firstSeenAt,
      });
    }
    const context: HandlerContext = {
      signal,
      consumer: this.#name,
      workerId: o.workerId,
      attempt: this.#failures + 1,
    };
    this.#firstHandled = selected[0]?.globalPosition ?? null;
    await this.#handle(session.tx, selected, context);
    // A batch given up on (timeout, shutdown) writes nothing more, checkpoint included: the
    // adapter refuses it too, this keeps the rule in one place for every adapter.
    if (signal.aborted) throw signal.reason;
    const resolved = [...this.#blocking].filter((p) => p > from && p <= plan.target);
    if (resolved.length > 0) await session.resolveDeadLetters(this.#name, resolved);
    await session.saveCheckpoint(plan.target);
    return { plan, handled: selected.length, deadLetters };
  }

  async #handle(tx: Tx, events: readonly PersistedEvent[], context: HandlerContext): Promise<void> {
    const consumer = this.#c.consumer;
    if (consumer.handleBatch !== undefined && !this.#isolate) {
      if (events.length === 0) return;
      try {
        await consumer.handleBatch(tx, events, context);
      } catch (error) {
        const named = error instanceof PoisonEventError && error.event !== null
          ? events.find((e) => e.globalPosition === error.event!.globalPosition) ?? null
          : null;
        throw new HandlerError(this.#name, named, error);
      }
      return;
    }
    for (const event of events) {
      try {
        if (consumer.handle !== undefined) await consumer.handle(tx, event, context);
        else await consumer.handleBatch!(tx, [event], context);
      } catch (error) {
        throw new HandlerError(this.#name, event, error);
      }
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
