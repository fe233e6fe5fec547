/**
 * OpenTelemetry without a dependency on it: the small structural slices of the `@opentelemetry/api`
 * `Tracer`, `Span` and `Meter` that eventsalsa calls. Pass the real objects
 * (`trace.getTracer(...)`, `metrics.getMeter(...)`) as `telemetry: { tracer, meter }` to
 * `PostgresStore`, the worker and `createEncryption`; without them the library makes no telemetry
 * call at all (one null check per operation).
 *
 * @module
 */

/**
 * Attribute values eventsalsa sets on spans and metric points: strings, numbers and booleans only.
 *
 * @example
 * ```ts
 * import type { TelemetryAttributes } from "@eventsalsa/eventsalsa/store";
 * const attributes: TelemetryAttributes = { "eventsalsa.consumer": "order_totals" };
 * ```
 */
export type TelemetryAttributes = Record<string, string | number | boolean>;

/**
 * The identity of a span (`Span.spanContext()` in OpenTelemetry).
 *
 * @example
 * ```ts
 * import type { TelemetrySpanContext } from "@eventsalsa/eventsalsa/store";
 * const short = (c: TelemetrySpanContext) => `${c.traceId.slice(0, 8)}/${c.spanId}`;
 * ```
 */
export interface TelemetrySpanContext {
  /** 32 lowercase hex digits; all zeros for an invalid (no-op) span. */
  readonly traceId: string;
  /** 16 lowercase hex digits. */
  readonly spanId: string;
}

/**
 * What eventsalsa calls on a span: an OpenTelemetry `Span` satisfies it.
 *
 * @example
 * ```ts
 * import type { TelemetrySpan } from "@eventsalsa/eventsalsa/store";
 * const finish = (span: TelemetrySpan) => span.end();
 * ```
 */
export interface TelemetrySpan {
  /** The span's trace and span ids. */
  spanContext(): TelemetrySpanContext;
  /** Sets one attribute. */
  setAttribute(key: string, value: string | number | boolean): unknown;
  /** Sets the status: code 2 is OpenTelemetry's `SpanStatusCode.ERROR`. */
  setStatus(status: { code: number; message?: string }): unknown;
  /** Records an exception as a span event. */
  recordException(exception: Error | string): void;
  /** Ends the span. */
  end(): void;
}

/**
 * Options eventsalsa passes when it starts a span (a subset of OpenTelemetry's `SpanOptions`).
 *
 * @example
 * ```ts
 * import type { TelemetrySpanOptions } from "@eventsalsa/eventsalsa/store";
 * const options: TelemetrySpanOptions = { kind: 4, attributes: { "eventsalsa.consumer": "c" } };
 * ```
 */
export interface TelemetrySpanOptions {
  /** OpenTelemetry's `SpanKind`: 0 internal (the default), 4 consumer. */
  kind?: number;
  /** Attributes known at the start. */
  attributes?: TelemetryAttributes;
}

/**
 * What eventsalsa calls on a tracer: an OpenTelemetry `Tracer` (`trace.getTracer("eventsalsa")`)
 * satisfies it. `startSpan` parents the span on the active context, as OpenTelemetry does;
 * `startActiveSpan` also makes it the active span while `fn` runs (the worker uses it for batches,
 * so spans your handlers start are children of the batch span).
 *
 * @example
 * ```ts
 * import { trace } from "npm:@opentelemetry/api@1.9.1";
 * import type { TelemetryTracer } from "@eventsalsa/eventsalsa/store";
 * const tracer: TelemetryTracer = trace.getTracer("eventsalsa");
 * ```
 */
export interface TelemetryTracer {
  /** Starts a span, a child of the active span when there is one. */
  startSpan(name: string, options?: TelemetrySpanOptions): TelemetrySpan;
  /** Starts a span and runs `fn` with it as the active span; returns what `fn` returns. */
  startActiveSpan<T>(
    name: string,
    options: TelemetrySpanOptions,
    fn: (span: TelemetrySpan) => Promise<T>,
  ): Promise<T>;
}

/**
 * Options eventsalsa passes when it creates an instrument (a subset of OpenTelemetry's
 * `MetricOptions`).
 *
 * @example
 * ```ts
 * import type { TelemetryMetricOptions } from "@eventsalsa/eventsalsa/store";
 * const options: TelemetryMetricOptions = { unit: "s", description: "batch duration" };
 * ```
 */
export interface TelemetryMetricOptions {
  /** What the instrument measures. */
  description?: string;
  /** UCUM unit, e.g. `s` or `{event}`. */
  unit?: string;
  /** Histogram bucket boundaries suggested to the SDK. */
  advice?: { explicitBucketBoundaries?: number[] };
}

/**
 * A monotonic counter (OpenTelemetry `Counter`).
 *
 * @example
 * ```ts
 * import type { TelemetryCounter } from "@eventsalsa/eventsalsa/store";
 * const bump = (counter: TelemetryCounter) => counter.add(1, { consumer: "c" });
 * ```
 */
export interface TelemetryCounter {
  /** Adds a non-negative value. */
  add(value: number, attributes?: TelemetryAttributes): void;
}

/**
 * A histogram (OpenTelemetry `Histogram`).
 *
 * @example
 * ```ts
 * import type { TelemetryHistogram } from "@eventsalsa/eventsalsa/store";
 * const record = (h: TelemetryHistogram, seconds: number) => h.record(seconds);
 * ```
 */
export interface TelemetryHistogram {
  /** Records one value. */
  record(value: number, attributes?: TelemetryAttributes): void;
}

/**
 * What an observable instrument's callback reports into (OpenTelemetry `ObservableResult`).
 *
 * @example
 * ```ts
 * import type { TelemetryObservableResult } from "@eventsalsa/eventsalsa/store";
 * const report = (result: TelemetryObservableResult) => result.observe(42, { consumer: "c" });
 * ```
 */
export interface TelemetryObservableResult {
  /** Reports the current value for one attribute set. */
  observe(value: number, attributes?: TelemetryAttributes): void;
}

/**
 * A callback of an observable instrument, called at every collection; it may be asynchronous.
 *
 * @example
 * ```ts
 * import type { TelemetryObservableCallback } from "@eventsalsa/eventsalsa/store";
 * const callback: TelemetryObservableCallback = (result) => result.observe(0);
 * ```
 */
export type TelemetryObservableCallback = (
  result: TelemetryObservableResult,
) => void | Promise<void>;

/**
 * An asynchronous gauge (OpenTelemetry `ObservableGauge`).
 *
 * @example
 * ```ts
 * import type { TelemetryObservableGauge } from "@eventsalsa/eventsalsa/store";
 * const watch = (gauge: TelemetryObservableGauge) => gauge.addCallback((r) => r.observe(1));
 * ```
 */
export interface TelemetryObservableGauge {
  /** Registers a callback. */
  addCallback(callback: TelemetryObservableCallback): void;
  /** Unregisters it. */
  removeCallback(callback: TelemetryObservableCallback): void;
}

/**
 * What eventsalsa calls on a meter: an OpenTelemetry `Meter` (`metrics.getMeter("eventsalsa")`)
 * satisfies it. Instruments are created once, when the component is built.
 *
 * @example
 * ```ts
 * import { metrics } from "npm:@opentelemetry/api@1.9.1";
 * import type { TelemetryMeter } from "@eventsalsa/eventsalsa/store";
 * const meter: TelemetryMeter = metrics.getMeter("eventsalsa");
 * ```
 */
export interface TelemetryMeter {
  /** Creates a counter. */
  createCounter(name: string, options?: TelemetryMetricOptions): TelemetryCounter;
  /** Creates a histogram. */
  createHistogram(name: string, options?: TelemetryMetricOptions): TelemetryHistogram;
  /** Creates an asynchronous gauge. */
  createObservableGauge(name: string, options?: TelemetryMetricOptions): TelemetryObservableGauge;
}

/**
 * The `telemetry` option of `PostgresStore`, the worker and `createEncryption`: OpenTelemetry
 * objects passed in, so eventsalsa does not depend on `@opentelemetry/api`. Omitted (or either
 * part omitted): no spans, or no metrics, and no cost beyond a null check. The store and the
 * encryption component only trace; the worker traces and measures.
 *
 * @example
 * ```ts
 * import { metrics, trace } from "npm:@opentelemetry/api@1.9.1";
 * import { PostgresStore, type Telemetry } from "@eventsalsa/eventsalsa/store";
 * const telemetry: Telemetry = {
 *   tracer: trace.getTracer("eventsalsa"),
 *   meter: metrics.getMeter("eventsalsa"),
 * };
 * const store = new PostgresStore({ telemetry });
 * ```
 */
export interface Telemetry {
  /** Spans; none when omitted. */
  readonly tracer?: TelemetryTracer;
  /** Metrics; none when omitted. */
  readonly meter?: TelemetryMeter;
}

/** OpenTelemetry's `SpanStatusCode.ERROR`. */
export const STATUS_ERROR = 2;
/** OpenTelemetry's `SpanKind.CONSUMER`. */
export const KIND_CONSUMER = 4;
/** The trace id of an invalid span context (a no-op tracer without an active span). */
const INVALID_TRACE_ID = "00000000000000000000000000000000";

function hasMethods(value: unknown, names: readonly string[]): boolean {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return names.every((name) => typeof record[name] === "function");
}

/**
 * Validates a `telemetry` option and returns it; `invalid` builds the component's own error type.
 * Null when it is omitted or has neither part.
 */
export function checkTelemetry(
  value: unknown,
  invalid: (message: string) => Error,
): Telemetry | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "object") throw invalid("telemetry must be an object { tracer, meter }");
  const { tracer, meter } = value as { tracer?: unknown; meter?: unknown };
  if (tracer !== undefined && !hasMethods(tracer, ["startSpan", "startActiveSpan"])) {
    throw invalid("telemetry.tracer must be an OpenTelemetry Tracer (startSpan, startActiveSpan)");
  }
  if (
    meter !== undefined &&
    !hasMethods(meter, ["createCounter", "createHistogram", "createObservableGauge"])
  ) {
    throw invalid(
      "telemetry.meter must be an OpenTelemetry Meter (createCounter, createHistogram, " +
        "createObservableGauge)",
    );
  }
  return tracer === undefined && meter === undefined ? null : value as Telemetry;
}

/** The span's trace id, or null when the span context is not a valid one. */
export function traceIdOf(span: TelemetrySpan): string | null {
  const traceId = span.spanContext().traceId;
  return typeof traceId === "string" && traceId.length === 32 && traceId !== INVALID_TRACE_ID
    ? traceId
    : null;
}

/** Marks a span failed: `error.type`, the exception event, and an error status. */
export function recordFailure(span: TelemetrySpan, error: unknown): void {
  const type = error instanceof Error ? error.name : typeof error;
  span.setAttribute("error.type", type);
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({
    code: STATUS_ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
}

/**
 * Runs `work` in a span (a child of the active one) that ends when `work` settles; a rejection is
 * recorded on it and rethrown.
 */
export async function inSpan<T>(
  tracer: TelemetryTracer,
  name: string,
  attributes: TelemetryAttributes,
  work: (span: TelemetrySpan) => Promise<T>,
): Promise<T> {
  const span = tracer.startSpan(name, { attributes });
  try {
    return await work(span);
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}
