// OpenTelemetry of PostgresStore with the real SDK: spans of append/readStream/readEvents, their
// parent from the active context, the error status of a failed append, and the traceId an append
// fills in from the active trace.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { metrics, trace } from "@opentelemetry/api";
import { otel } from "../internal/otel_support_test.ts";
import type { Telemetry, TelemetryMeter, TelemetryTracer } from "../internal/telemetry.ts";
import { testDatabase } from "../testing/test_database.ts";
import { ConcurrencyError, ValidationError } from "./errors.ts";
import { any, exact, noStream } from "./expected_version.ts";
import { migrate } from "./migration.ts";
import { PostgresStore } from "./postgres_store.ts";
import type { Event } from "./types.ts";

const T = { timeout: 60_000 };

const event = (aggregateId: string, extra: Partial<Event> = {}): Event => ({
  aggregateType: "Order",
  aggregateId,
  eventType: "OrderPlaced",
  payload: new TextEncoder().encode("{}"),
  ...extra,
});

// The real API objects satisfy the structural types (a type error here fails `deno check`).
const apiTelemetry: Telemetry = {
  tracer: trace.getTracer("eventsalsa") satisfies TelemetryTracer,
  meter: metrics.getMeter("eventsalsa") satisfies TelemetryMeter,
};

describe("PostgresStore telemetry", () => {
  it("append runs in a span under the active one and fills traceId from its trace", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const store = new PostgresStore({ telemetry: o.telemetry });
      const { parentSpanId, parentTraceId, result } = await o.tracer.startActiveSpan(
        "request",
        async (parent) => {
          try {
            const result = await store.append(db.sql, noStream(), [
              event("o-1"),
              event("o-1", { traceId: "caller-trace", correlationId: "c-1", causationId: "k-1" }),
            ]);
            return {
              parentSpanId: parent.spanContext().spanId,
              parentTraceId: parent.spanContext().traceId,
              result,
            };
          } finally {
            parent.end();
          }
        },
      );
      const [span] = o.spans("eventsalsa.store.append");
      assert.ok(span, "an append span");
      assert.equal(span.parentSpanContext?.spanId, parentSpanId);
      assert.equal(span.spanContext().traceId, parentTraceId);
      assert.deepEqual(span.attributes, {
        "db.system.name": "postgresql",
        "db.collection.name": "events",
        "eventsalsa.aggregate_type": "Order",
        "eventsalsa.aggregate_id": "o-1",
        "eventsalsa.event_count": 2,
        "eventsalsa.expected_version": "NoStream",
        "eventsalsa.from_version": 0,
        "eventsalsa.to_version": 2,
        "eventsalsa.first_position": result.globalPositions[0],
        "eventsalsa.last_position": result.globalPositions[1],
      });
      assert.equal(span.status.code, 0, "unset: no error");
      // Filled where not given, kept where given; correlation and causation are never invented.
      assert.deepEqual(result.events.map((e) => e.traceId), [parentTraceId, "caller-trace"]);
      const rows = await db.sql`SELECT trace_id, correlation_id, causation_id FROM events
        ORDER BY global_position`;
      assert.deepEqual(rows.map((r) => [r.trace_id, r.correlation_id, r.causation_id]), [
        [parentTraceId, null, null],
        ["caller-trace", "c-1", "k-1"],
      ]);
    } finally {
      await o.close();
      await db.close();
    }
  });

  it("without an active span, events carry the append span's own trace", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const store = new PostgresStore({ telemetry: o.telemetry });
      const result = await store.append(db.sql, any(), [event("o-2")]);
      const [span] = o.spans("eventsalsa.store.append");
      assert.equal(span.parentSpanContext, undefined, "a root span");
      assert.match(span.spanContext().traceId, /^[0-9a-f]{32}$/);
      assert.equal(result.events[0].traceId, span.spanContext().traceId);
      const stream = await store.readStream(db.sql, "Order", "o-2");
      assert.equal(stream.events[0].traceId, span.spanContext().traceId);
    } finally {
      await o.close();
      await db.close();
    }
  });

  it("readStream and readEvents spans carry what they read", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const store = new PostgresStore({ telemetry: o.telemetry });
      await store.append(db.sql, any(), [event("o-3"), event("o-3"), event("o-3")]);
      await store.append(db.sql, any(), [event("c-1", { aggregateType: "Customer" })]);
      await o.tracer.startActiveSpan("read", async (parent) => {
        await store.readStream(db.sql, "Order", "o-3", { fromVersion: 2 });
        await store.readEvents(db.sql, 1, 10, { aggregateTypes: ["Order", "Customer"] });
        parent.end();
      });
      const [parent] = o.spans("read");
      const [stream] = o.spans("eventsalsa.store.read_stream");
      assert.equal(stream.parentSpanContext?.spanId, parent.spanContext().spanId);
      assert.deepEqual(stream.attributes, {
        "db.system.name": "postgresql",
        "db.collection.name": "events",
        "eventsalsa.aggregate_type": "Order",
        "eventsalsa.aggregate_id": "o-3",
        "eventsalsa.event_count": 2,
        "eventsalsa.stream_version": 3,
      });
      const [events] = o.spans("eventsalsa.store.read_events");
      assert.equal(events.parentSpanContext?.spanId, parent.spanContext().spanId);
      assert.deepEqual(events.attributes, {
        "db.system.name": "postgresql",
        "db.collection.name": "events",
        "eventsalsa.after_position": 1,
        "eventsalsa.limit": 10,
        "eventsalsa.aggregate_types": "Order,Customer",
        "eventsalsa.event_count": 3,
        "eventsalsa.last_position": 4,
      });
    } finally {
      await o.close();
      await db.close();
    }
  });

  it("a failed append ends its span with an error status and the exception", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const store = new PostgresStore({ telemetry: o.telemetry });
      await store.append(db.sql, any(), [event("o-4")]);
      await assert.rejects(store.append(db.sql, exact(5), [event("o-4")]), ConcurrencyError);
      const [, failed] = o.spans("eventsalsa.store.append");
      assert.equal(failed.status.code, 2, "ERROR");
      assert.match(failed.status.message ?? "", /o-4/);
      assert.equal(failed.attributes["error.type"], "ConcurrencyError");
      assert.equal(failed.attributes["eventsalsa.to_version"], undefined);
      assert.equal(failed.events[0]?.name, "exception");
      assert.equal(failed.events[0]?.attributes?.["exception.type"], "ConcurrencyError");
    } finally {
      await o.close();
      await db.close();
    }
  });

  it("without telemetry nothing is traced and traceId stays unset", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const store = new PostgresStore();
      const result = await o.tracer.startActiveSpan("request", async (parent) => {
        try {
          return await store.append(db.sql, any(), [event("o-5")]);
        } finally {
          parent.end();
        }
      });
      assert.equal(result.events[0].traceId, null);
      assert.deepEqual(o.spans().map((s) => s.name), ["request"]);
      // The API's no-op tracer (no SDK registered) fills nothing either: its spans are invalid.
      const noop = new PostgresStore({ telemetry: apiTelemetry });
      const plain = await noop.append(db.sql, any(), [event("o-6")]);
      assert.equal(plain.events[0].traceId, null);
    } finally {
      await o.close();
      await db.close();
    }
  });

  it("rejects a telemetry option that is not OpenTelemetry objects", () => {
    assert.throws(
      () => new PostgresStore({ telemetry: { tracer: {} as TelemetryTracer } }),
      ValidationError,
    );
    assert.throws(
      () => new PostgresStore({ telemetry: "otel" as unknown as Telemetry }),
      ValidationError,
    );
    // A meter alone is accepted (the store only traces) and costs nothing.
    new PostgresStore({ telemetry: { meter: apiTelemetry.meter } });
  });
});
