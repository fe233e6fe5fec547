/**
 * The worker's OpenTelemetry (the `telemetry` option): a span per batch transaction, and metrics
 * for handled events, batch durations, consumer lag, gap waits and dead letters. Built once per
 * `telemetry` object (its instruments are created once) and shared by the worker's consumer
 * loops; a worker without the option never reaches this module's code.
 *
 * @module
 */
import {
  KIND_CONSUMER,
  recordFailure,
  type Telemetry,
  type TelemetryAttributes,
  type TelemetryCounter,
  type TelemetryHistogram,
  type TelemetryObservableCallback,
  type TelemetryObservableGauge,
  type TelemetrySpan,
  type TelemetryTracer,
} from "../../internal/telemetry.ts";
import type { GapWait } from "../types.ts";
import type { BatchOutcome } from "./coordination.ts";

/** What a committed batch tells its span: where the checkpoint went, how many events were handled. */
export interface BatchSummary {
  readonly plan: { readonly target: number };
  readonly handled: number;
}

/** How a batch ended, as the span's `eventsalsa.batch.outcome` and the duration's attribute. */
export type BatchOutcomeName = "committed" | "failed" | "notOwner" | "checkpointMoved";

/** Bucket boundaries (seconds) for batch durations: 5 ms to the default 30 s batch timeout. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const CONSUMER = "eventsalsa.consumer";

const cache = new WeakMap<Telemetry, WorkerTelemetry>();

/** The worker telemetry of a resolved `telemetry` option (one per option object), or null. */
export function workerTelemetry(telemetry: Telemetry | null): WorkerTelemetry | null {
  if (telemetry === null) return null;
  let built = cache.get(telemetry);
  if (built === undefined) {
    built = new WorkerTelemetry(telemetry);
    cache.set(telemetry, built);
  }
  return built;
}

/** Spans and instruments of one `telemetry` option. */
export class WorkerTelemetry {
  readonly #tracer: TelemetryTracer | null;
  readonly #handled: TelemetryCounter | null = null;
  readonly #duration: TelemetryHistogram | null = null;
  readonly #gapWaits: TelemetryCounter | null = null;
  readonly #deadLetters: TelemetryCounter | null = null;
  readonly #lag: TelemetryObservableGauge | null = null;
  /** The gap wait last counted per consumer, so a wait reported again is counted once. */
  readonly #waits = new Map<string, string>();

  /** Creates the instruments (when there is a meter). */
  constructor(telemetry: Telemetry) {
    this.#tracer = telemetry.tracer ?? null;
    const meter = telemetry.meter;
    if (meter === undefined) return;
    this.#handled = meter.createCounter("eventsalsa.worker.events.handled", {
      description: "Events handed to consumer handlers in committed batches",
      unit: "{event}",
    });
    this.#duration = meter.createHistogram("eventsalsa.worker.batch.duration", {
      description: "Duration of batch transactions, by consumer and outcome",
      unit: "s",
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.#gapWaits = meter.createCounter("eventsalsa.worker.gap.waits", {
      description: "Gaps in the global log a consumer waited at for at least gapReportInterval",
      unit: "{wait}",
    });
    this.#deadLetters = meter.createCounter("eventsalsa.worker.dead_letters", {
      description: "Events written to the dead-letter table (skipped or blocking)",
      unit: "{event}",
    });
    this.#lag = meter.createObservableGauge("eventsalsa.worker.consumer.lag", {
      description: "Latest position minus the checkpoint, for the consumers this worker runs",
      unit: "{position}",
    });
  }

  /**
   * Runs one batch transaction (`run`) in an active span (handlers' own spans are its children)
   * and records its duration and handled events. `signal` is the batch's: when it aborted, its
   * reason (timeout, shutdown) is the error recorded, not what the cancelled statement threw.
   */
  batch<T extends BatchSummary>(
    consumer: string,
    from: number,
    signal: AbortSignal,
    run: () => Promise<BatchOutcome<T>>,
  ): Promise<BatchOutcome<T>> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#measure(consumer, from, signal, run, null);
    const attributes: TelemetryAttributes = {
      [CONSUMER]: consumer,
      "eventsalsa.batch.from_position": from,
    };
    return tracer.startActiveSpan(
      "eventsalsa.worker.batch",
      { kind: KIND_CONSUMER, attributes },
      (span) => this.#measure(consumer, from, signal, run, span),
    );
  }

  async #measure<T extends BatchSummary>(
    consumer: string,
    from: number,
    signal: AbortSignal,
    run: () => Promise<BatchOutcome<T>>,
    span: TelemetrySpan | null,
  ): Promise<BatchOutcome<T>> {
    const started = performance.now();
    let outcome: BatchOutcomeName = "failed";
    try {
      const result = await run();
      outcome = result.kind;
      if (result.kind === "committed") {
        const handled = result.value.handled;
        span?.setAttribute(
          "eventsalsa.batch.to_position",
          Math.max(from, result.value.plan.target),
        );
        span?.setAttribute("eventsalsa.batch.events_handled", handled);
        if (handled > 0) this.#handled?.add(handled, { [CONSUMER]: consumer });
      } else if (result.kind === "checkpointMoved") {
        span?.setAttribute("eventsalsa.batch.checkpoint", result.checkpoint);
      } else if (result.owner !== null) {
        span?.setAttribute("eventsalsa.batch.owner", result.owner);
      }
      return result;
    } catch (error) {
      if (span !== null) recordFailure(span, signal.aborted ? signal.reason : error);
      throw error;
    } finally {
      if (span !== null) {
        span.setAttribute("eventsalsa.batch.outcome", outcome);
        span.end();
      }
      this.#duration?.record((performance.now() - started) / 1000, {
        [CONSUMER]: consumer,
        "eventsalsa.batch.outcome": outcome,
      });
    }
  }

  /** An event went to the dead-letter table. */
  deadLettered(consumer: string, skipped: boolean): void {
    this.#deadLetters?.add(1, { [CONSUMER]: consumer, "eventsalsa.dead_letter.skipped": skipped });
  }

  /** A gap wait was reported; counted once per wait (position and start), however often reported. */
  gapWaiting(wait: GapWait): void {
    const counter = this.#gapWaits;
    if (counter === null) return;
    const key = `${wait.position}@${wait.since}`;
    if (this.#waits.get(wait.consumer) === key) return;
    this.#waits.set(wait.consumer, key);
    counter.add(1, { [CONSUMER]: wait.consumer });
  }

  /**
   * Reports the lag of the consumers `checkpoints` lists (this worker's running loops) at every
   * collection, from one `latest` read, until the returned function is called. A failed read
   * reports nothing rather than a wrong value.
   */
  watchLag(
    latest: () => Promise<number>,
    checkpoints: () => ReadonlyMap<string, number>,
  ): () => void {
    const gauge = this.#lag;
    if (gauge === null) return () => {};
    const callback: TelemetryObservableCallback = async (result) => {
      if (checkpoints().size === 0) return;
      let position: number;
      try {
        position = await latest();
      } catch {
        return;
      }
      for (const [consumer, checkpoint] of checkpoints()) {
        result.observe(Math.max(0, position - checkpoint), { [CONSUMER]: consumer });
      }
    };
    gauge.addCallback(callback);
    return () => gauge.removeCallback(callback);
  }
}
