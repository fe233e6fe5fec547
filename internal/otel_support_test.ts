// The real OpenTelemetry SDK for the telemetry tests (dev dependencies: package.json
// devDependencies, never imported by published code): an in-memory span exporter, a meter whose
// reader collects on demand, and the AsyncLocalStorage context manager so active spans follow
// async calls. Named `*_test.ts` so it is never published; it defines no tests itself.
import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import type { Telemetry } from "./telemetry.ts";

let contextManager = false;

/** A reader that exports nothing: tests call `collect()` when they want the numbers. */
class CollectingReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** One data point of a collected metric (a number, or a histogram's count and sum). */
export interface Point {
  readonly attributes: Record<string, unknown>;
  readonly value: number | { readonly count: number; readonly sum?: number };
}

export interface Otel {
  /** Pass to the component under test. */
  readonly telemetry: Required<Telemetry>;
  /** The SDK tracer, for the test's own spans (an active parent, a handler's child). */
  readonly tracer: ReturnType<BasicTracerProvider["getTracer"]>;
  /** Finished spans, optionally only those named `name`. */
  spans(name?: string): ReadableSpan[];
  /** Collects now and returns the points of metric `name` (empty when it has none). */
  points(name: string): Promise<Point[]>;
  /** The value of the point whose attributes include `attributes`, or undefined. */
  value(name: string, attributes: Record<string, unknown>): Promise<Point["value"] | undefined>;
  close(): Promise<void>;
}

/** A fresh tracer provider and meter provider for one test. */
export function otel(): Otel {
  if (!contextManager) {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    contextManager = true;
  }
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const reader = new CollectingReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const tracer = tracerProvider.getTracer("eventsalsa-test");
  const points = async (name: string): Promise<Point[]> => {
    const { resourceMetrics, errors } = await reader.collect();
    if (errors.length > 0) throw errors[0];
    const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)
      .find((m) => m.descriptor.name === name);
    return (metric?.dataPoints ?? []).map((point) => ({
      attributes: point.attributes,
      value: point.value as Point["value"],
    }));
  };
  return {
    telemetry: { tracer, meter: meterProvider.getMeter("eventsalsa-test") },
    tracer,
    spans: (name) =>
      exporter.getFinishedSpans().filter((s) => name === undefined || s.name === name),
    points,
    async value(name, attributes) {
      const found = (await points(name)).find((point) =>
        Object.entries(attributes).every(([key, value]) => point.attributes[key] === value)
      );
      return found?.value;
    },
    async close() {
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
    },
  };
}
