// OpenTelemetry of the worker on PostgreSQL with the real SDK: a consumer span per batch (handler
// spans are its children), the error status of a failing batch, the notOwner outcome, and the
// metrics after known work: handled events, batch durations, consumer lag, dead letters and gap
// waits. The worker runs on the harness's fake clock.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { type Otel, otel } from "../../internal/otel_support_test.ts";
import { PoisonEventError } from "../errors.ts";
import { skipPoisonEvents } from "../core/poison.ts";
import { until } from "../support_test.ts";
import type { Consumer, GapWait, WorkerTransaction } from "../types.ts";
import { type PgHarness, pgHarness, skipWithoutConcurrency } from "./harness_test.ts";

const T = { timeout: 60_000 };
const BATCH = "eventsalsa.worker.batch";
const CONSUMER = "eventsalsa.consumer";

async function withOtel(
  t: { name?: string; skip(message?: string): void },
  needsConcurrency: boolean,
  body: (h: PgHarness, o: Otel) => Promise<void>,
): Promise<void> {
  const h = await pgHarness();
  const o = otel();
  try {
    if (needsConcurrency && skipWithoutConcurrency(t, h.db)) return;
    await body(h, o);
  } finally {
    await h.close();
    await o.close();
  }
}

/** A consumer writing the read model, calling `before` first for each event. */
function consumer(
  name: string,
  before: (event: { globalPosition: number }) => void,
  extra: Partial<Consumer> = {},
): Consumer {
  return {
    name,
    async handle(tx: WorkerTransaction, event) {
      before(event);
      await tx`INSERT INTO read_model (consumer, position, handled_by)
        VALUES (${name}, ${event.globalPosition}, 'w')`;
    },
    ...extra,
  };
}

const outcome = (span: ReadableSpan) => span.attributes["eventsalsa.batch.outcome"];

describe("Worker telemetry on PostgreSQL", () => {
  it(
    "a consumer span per batch, handler spans as children, handled events and durations counted",
    T,
    async (t) => {
      await withOtel(t, false, async (h, o) => {
        for (let i = 0; i < 3; i++) {
          await h.append("Order");
          await h.append("Customer");
        }
        const worker = h.worker([
          consumer("orders", (event) => {
            o.tracer.startSpan("handler", { attributes: { position: event.globalPosition } })
              .end();
          }, { aggregateTypes: ["Order"] }),
        ], { telemetry: o.telemetry, batchSize: 2 });
        const running = worker.start();
        await until(async () => await h.checkpoint("orders") === 6, {
          clock: h.clock,
          step: 100,
          what: "orders at 6",
        });
        // While it runs, the lag gauge reports it caught up.
        assert.equal(await o.value("eventsalsa.worker.consumer.lag", { [CONSUMER]: "orders" }), 0);
        await worker.stop();
        await running;

        const batches = o.spans(BATCH).filter((s) => outcome(s) === "committed");
        const moved = batches.filter((s) =>
          s.attributes["eventsalsa.batch.to_position"] !==
            s.attributes["eventsalsa.batch.from_position"]
        );
        // batchSize counts the consumer's events: 3 orders in batches of 2.
        assert.ok(moved.length >= 2, `batchSize 2 over 3 orders: ${moved.length} batches`);
        // Batches in order: each starts where the one before ended, from 0 to 6.
        let at = 0;
        for (const span of moved) {
          assert.equal(span.attributes["eventsalsa.batch.from_position"], at);
          at = Number(span.attributes["eventsalsa.batch.to_position"]);
        }
        assert.equal(at, 6);
        for (const span of batches) {
          assert.equal(span.kind, 4, "SpanKind.CONSUMER");
          assert.equal(span.attributes[CONSUMER], "orders");
          assert.equal(span.status.code, 0);
        }
        const handled = batches.reduce(
          (sum, s) => sum + Number(s.attributes["eventsalsa.batch.events_handled"]),
          0,
        );
        assert.equal(handled, 3, "the Customer events passed without reaching the handler");
        const handlers = o.spans("handler");
        assert.equal(handlers.length, 3);
        const byId = new Map(batches.map((s) => [s.spanContext().spanId, s]));
        for (const span of handlers) {
          const parent = byId.get(span.parentSpanContext?.spanId ?? "");
          assert.ok(parent, "a handler's span is a child of its batch span");
          assert.equal(span.spanContext().traceId, parent.spanContext().traceId);
          const position = Number(span.attributes.position);
          assert.ok(
            position > Number(parent.attributes["eventsalsa.batch.from_position"]) &&
              position <= Number(parent.attributes["eventsalsa.batch.to_position"]),
          );
        }

        assert.equal(
          await o.value("eventsalsa.worker.events.handled", { [CONSUMER]: "orders" }),
          3,
        );
        const duration = await o.value("eventsalsa.worker.batch.duration", {
          [CONSUMER]: "orders",
          "eventsalsa.batch.outcome": "committed",
        });
        assert.equal((duration as { count: number }).count, batches.length);
        assert.equal(
          await o.value("eventsalsa.worker.dead_letters", { [CONSUMER]: "orders" }),
          undefined,
        );
      });
    },
  );

  it("a failing batch ends its span with an error status and the exception", T, async (t) => {
    await withOtel(t, false, async (h, o) => {
      await h.append();
      let calls = 0;
      const worker = h.worker([
        consumer("flaky", () => {
          if (++calls === 1) throw new Error("flaky handler");
        }),
      ], { telemetry: o.telemetry });
      const running = worker.start();
      await until(async () => await h.checkpoint("flaky") === 1, {
        clock: h.clock,
        step: 100,
        what: "flaky at 1 after a retry",
      });
      await worker.stop();
      await running;
      const spans = o.spans(BATCH);
      const failed = spans.filter((s) => outcome(s) === "failed");
      assert.equal(failed.length, 1);
      const [span] = failed;
      assert.equal(span.status.code, 2, "ERROR");
      assert.match(span.status.message ?? "", /flaky handler/);
      assert.equal(span.attributes["error.type"], "HandlerError");
      assert.equal(span.attributes["eventsalsa.batch.from_position"], 0);
      assert.equal(span.attributes["eventsalsa.batch.to_position"], undefined);
      assert.equal(span.events[0]?.name, "exception");
      const committed = spans.filter((s) => outcome(s) === "committed");
      assert.equal(committed.at(-1)?.attributes["eventsalsa.batch.to_position"], 1);
      const duration = await o.value("eventsalsa.worker.batch.duration", {
        [CONSUMER]: "flaky",
        "eventsalsa.batch.outcome": "failed",
      });
      assert.equal((duration as { count: number }).count, 1);
      assert.equal(await o.value("eventsalsa.worker.events.handled", { [CONSUMER]: "flaky" }), 1);
    });
  });

  it("a batch past batchTimeout records BatchTimeoutError", T, async (t) => {
    await withOtel(t, true, async (h, o) => {
      await h.append();
      let calls = 0;
      const worker = h.worker([{
        name: "slow",
        async handle(_tx, _event, context) {
          if (++calls > 1) return;
          // Hangs until the batch gives up on it.
          await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
        },
      }], { telemetry: o.telemetry, batchTimeout: 2_000 });
      const running = worker.start();
      await until(async () => await h.checkpoint("slow") === 1, {
        clock: h.clock,
        step: 250,
        what: "slow at 1 after a timeout",
      });
      await worker.stop();
      await running;
      const [failed] = o.spans(BATCH).filter((s) => outcome(s) === "failed");
      assert.equal(failed.attributes["error.type"], "BatchTimeoutError");
      assert.equal(failed.status.code, 2);
    });
  });

  it(
    "dead letters are counted once per event, and the lag of a stuck consumer shows",
    T,
    async (t) => {
      await withOtel(t, false, async (h, o) => {
        for (let i = 0; i < 3; i++) await h.append();
        let attemptsAt2 = 0;
        const poison = (event: { globalPosition: number }) => {
          if (event.globalPosition === 2) {
            attemptsAt2++;
            throw new PoisonEventError("bad payload");
          }
        };
        const worker = h.worker([
          consumer("stuck", poison),
          consumer("skipping", poison, { onPoison: skipPoisonEvents() }),
        ], { telemetry: o.telemetry, maxConsecutiveFailures: 1_000 });
        const running = worker.start();
        const deadLetters = "eventsalsa.worker.dead_letters";
        // Counted (at least once) and retried since: then it must still be counted once.
        const counted = async () =>
          typeof await o.value(deadLetters, {
            [CONSUMER]: "stuck",
            "eventsalsa.dead_letter.skipped": false,
          }) === "number";
        await until(async () => await h.checkpoint("skipping") === 3 && await counted(), {
          clock: h.clock,
          step: 250,
          what: "skipping at 3, stuck's dead letter counted",
        });
        const seen = attemptsAt2;
        await until(() => attemptsAt2 >= seen + 2, {
          clock: h.clock,
          step: 250,
          what: "stuck retried at 2 after its dead letter",
        });
        assert.equal(await h.checkpoint("stuck"), 1);
        assert.equal(
          await o.value(deadLetters, {
            [CONSUMER]: "stuck",
            "eventsalsa.dead_letter.skipped": false,
          }),
          1,
          "a blocking dead letter retried several times is one dead letter",
        );
        assert.equal(
          await o.value(deadLetters, {
            [CONSUMER]: "skipping",
            "eventsalsa.dead_letter.skipped": true,
          }),
          1,
        );
        const lag = "eventsalsa.worker.consumer.lag";
        assert.equal(await o.value(lag, { [CONSUMER]: "stuck" }), 2);
        assert.equal(await o.value(lag, { [CONSUMER]: "skipping" }), 0);
        await worker.stop();
        await running;
      });
    },
  );

  it("a gap waited at is one gap wait however often it is reported", T, async (t) => {
    await withOtel(t, true, async (h, o) => {
      await h.append(); // 1
      const held = await h.hold(); // 2
      await h.append(); // 3
      const waits: GapWait[] = [];
      const worker = h.worker([h.projection("ordered")], {
        telemetry: o.telemetry,
        dispatcherInterval: 600_000,
        heartbeatInterval: 600_000,
        batchPause: 1_000,
        gapCheckInterval: 1_000,
        gapReportInterval: 5_000,
        observer: { gapWaiting: (g) => waits.push(g) },
      });
      const running = worker.start();
      await until(() => waits.length >= 3, { clock: h.clock, step: 1_000, what: "3 gap reports" });
      assert.equal(await o.value("eventsalsa.worker.gap.waits", { [CONSUMER]: "ordered" }), 1);
      await held.commit();
      await until(async () => await h.checkpoint("ordered") === 3, {
        clock: h.clock,
        step: 1_000,
        what: "ordered at 3",
      });
      await worker.stop();
      await running;
      assert.equal(await o.value("eventsalsa.worker.gap.waits", { [CONSUMER]: "ordered" }), 1);
    });
  });

  it("a batch refused by the fence ends with outcome notOwner", T, async (t) => {
    await withOtel(t, true, async (h, o) => {
      const stopped: string[] = [];
      // No periodic cycles and no notifications: only the batch fence notices the move.
      const worker = h.worker([h.projection("moved")], {
        telemetry: o.telemetry,
        coordinationChannel: null,
        rebalanceInterval: 600_000,
        assignmentPollInterval: 600_000,
        observer: { consumerStopped: (s) => stopped.push(s.reason) },
      });
      const running = worker.start();
      await h.append();
      await until(async () => await h.checkpoint("moved") === 1, {
        clock: h.clock,
        step: 100,
        what: "moved at 1",
      });
      await h.sql`INSERT INTO worker_nodes (worker_id) VALUES ('w-other')`;
      await h.sql`UPDATE consumer_assignments SET worker_id = 'w-other'
        WHERE consumer_name = 'moved'`;
      await h.append();
      await until(() => stopped.includes("ownershipLost"), {
        clock: h.clock,
        step: 100,
        what: "the fence refuses the batch",
      });
      await worker.stop();
      await running;
      const refused = o.spans(BATCH).filter((s) => outcome(s) === "notOwner");
      assert.equal(refused.length, 1);
      assert.equal(refused[0].attributes["eventsalsa.batch.owner"], "w-other");
      assert.equal(refused[0].attributes["eventsalsa.batch.from_position"], 1);
      assert.equal(refused[0].status.code, 0, "not an error: the consumer moved");
      const duration = await o.value("eventsalsa.worker.batch.duration", {
        [CONSUMER]: "moved",
        "eventsalsa.batch.outcome": "notOwner",
      });
      assert.equal((duration as { count: number }).count, 1);
    });
  });
});
