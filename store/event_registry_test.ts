import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { defineEvents, eventType, UnknownEventError } from "./event_registry.ts";
import { ValidationError } from "./errors.ts";
import type { PersistedEvent } from "./types.ts";
import { InMemoryEventStore } from "../testing/in_memory_store.ts";
import { noStream } from "./expected_version.ts";

const OrderEvents = defineEvents({
  OrderPlaced: eventType<{ total: number; currency: string; channel: string }>({
    version: 3,
    upcasters: {
      1: (v1: { total: number }) => ({ ...v1, currency: "EUR" }),
      2: (v2: { total: number; currency: string }) => ({ ...v2, channel: "web" }),
    },
  }),
  OrderShipped: eventType<{ carrier: string }>(),
});

function stored(eventType: string, eventVersion: number, data: unknown): PersistedEvent {
  return {
    globalPosition: 1,
    aggregateType: "Order",
    aggregateId: "o-1",
    aggregateVersion: 1,
    eventId: crypto.randomUUID(),
    eventType,
    eventVersion,
    payload: new TextEncoder().encode(JSON.stringify(data)),
    metadata: null,
    createdAt: new Date(),
    traceId: null,
    correlationId: null,
    causationId: null,
  };
}

describe("defineEvents", () => {
  it("round-trips through the store as a discriminated union", async () => {
    const store = new InMemoryEventStore();
    const events = OrderEvents.toEvents({ aggregateType: "Order", aggregateId: "o-1" }, [
      { type: "OrderPlaced", data: { total: 42, currency: "USD", channel: "shop" } },
      { type: "OrderShipped", data: { carrier: "dhl" } },
    ], { metadata: { by: "test" }, correlationId: "c-1" });
    assert.deepEqual(events.map((e) => e.eventVersion), [3, 1]);
    assert.equal(events[1].correlationId, "c-1");
    await store.append(store, noStream(), events);
    const stream = await store.readStream(store, "Order", "o-1");
    const decoded = stream.events.map(OrderEvents.fromEvent);
    assert.deepEqual(decoded.map((d) => d.type), ["OrderPlaced", "OrderShipped"]);
    const first = decoded[0];
    assert.ok(first.type === "OrderPlaced");
    assert.deepEqual(first.data, { total: 42, currency: "USD", channel: "shop" });
    assert.equal(first.event.aggregateVersion, 1);
  });

  it("upcasts stored older versions step by step", () => {
    const v1 = OrderEvents.fromEvent(stored("OrderPlaced", 1, { total: 7 }));
    assert.deepEqual(v1.data, { total: 7, currency: "EUR", channel: "web" });
    const v2 = OrderEvents.fromEvent(stored("OrderPlaced", 2, { total: 7, currency: "GBP" }));
    assert.deepEqual(v2.data, { total: 7, currency: "GBP", channel: "web" });
  });

  it("unknown types and versions are typed errors", () => {
    assert.throws(() => OrderEvents.fromEvent(stored("OrderVoided", 1, {})), UnknownEventError);
    assert.throws(() => OrderEvents.fromEvent(stored("OrderShipped", 2, {})), (error: unknown) => {
      assert.ok(error instanceof UnknownEventError);
      assert.equal(error.eventVersion, 2);
      return true;
    });
    assert.throws(
      () =>
        OrderEvents.toEvents({ aggregateType: "Order", aggregateId: "o" }, [
          { type: "Nope" as "OrderShipped", data: { carrier: "x" } },
        ]),
      ValidationError,
    );
    assert.throws(() => eventType({ version: 2 }), ValidationError);
  });

  it("uses a pluggable codec", () => {
    const registry = defineEvents({ Note: eventType<string>() }, {
      codec: {
        encode: (data) => new TextEncoder().encode(String(data)),
        decode: (bytes) => new TextDecoder().decode(bytes),
      },
    });
    const [event] = registry.toEvents({ aggregateType: "N", aggregateId: "1" }, [
      { type: "Note", data: "plain text" },
    ]);
    assert.equal(new TextDecoder().decode(event.payload), "plain text");
  });
});
