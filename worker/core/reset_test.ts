// Start positions and resets through the production protocol on the in-memory adapter, with a
// fake clock: where a new consumer begins, and a reset while the consumer runs.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { any } from "../../store/expected_version.ts";
import { FakeClock } from "../../testing/fake_clock.ts";
import { InMemoryCoordinator, InMemoryWorker } from "../../testing/in_memory_coordinator.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "../../testing/in_memory_store.ts";
import { WorkerConfigError } from "../errors.ts";
import { draft, until } from "../support_test.ts";
import type { Consumer } from "../types.ts";
import { PoisonEventError } from "../errors.ts";

type Tx = InMemoryTransaction;

function harness() {
  const clock = new FakeClock(1_700_000_000_000);
  const store = new InMemoryEventStore();
  const coordinator = new InMemoryCoordinator(store, { clock });
  const append = async (n = 1) => {
    for (let i = 0; i < n; i++) await store.append(store, any(), [draft("Order")]);
  };
  /** A read model of positions, written with the batch; `reset` keeps only those ≤ the position. */
  const view = (name: string, extra: Partial<Consumer<Tx>> = {}) => {
    const rows: number[] = [];
    const consumer: Consumer<Tx> = {
      name,
      handle(tx, event) {
        tx.onCommit(() => rows.push(event.globalPosition));
      },
      reset(tx, { toPosition }) {
        tx.onCommit(() => rows.splice(0, rows.length, ...rows.filter((p) => p <= toPosition)));
      },
      ...extra,
    };
    return { rows, consumer };
  };
  const worker = (consumers: Consumer<Tx>[]) =>
    new InMemoryWorker(coordinator, consumers, { clock, workerId: "w-1", pollInterval: 100 });
  return { clock, store, coordinator, append, view, worker };
}

describe("start positions", () => {
  it('"beginning" (the default), "end" and a position decide where a new consumer starts', async () => {
    const h = harness();
    await h.append(5);
    const all = h.view("all");
    const end = h.view("end", { startFrom: "end" });
    const after3 = h.view("after3", { startFrom: 3 });
    const worker = h.worker([all.consumer, end.consumer, after3.consumer]);
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("all") === 5, { clock: h.clock, step: 100 });
    await h.append(2);
    await until(() => [all, end, after3].every((v) => v.rows.at(-1) === 7), {
      clock: h.clock,
      step: 100,
    });
    assert.deepEqual(all.rows, [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(end.rows, [6, 7]);
    assert.deepEqual(after3.rows, [4, 5, 6, 7]);
    await worker.stop();
    await running;
    // Once it has a checkpoint, startFrom is ignored: a restart with "end" carries on.
    await h.append(1);
    const again = h.worker([{ ...after3.consumer, startFrom: "end" }]);
    const rerun = again.start();
    await until(() => after3.rows.at(-1) === 8, { clock: h.clock, step: 100 });
    assert.deepEqual(after3.rows, [4, 5, 6, 7, 8]);
    await again.stop();
    await rerun;
  });
});

describe("resetConsumer", () => {
  it("while the consumer runs: the hook and the checkpoint move together, and it rebuilds exactly once", async () => {
    const h = harness();
    await h.append(10);
    const v = h.view("v");
    const worker = h.worker([v.consumer]);
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("v") === 10, { clock: h.clock, step: 100 });
    assert.equal(await worker.resetConsumer("v", { toPosition: 4 }), 10);
    assert.equal(h.coordinator.checkpoint("v"), 4);
    await h.append(2);
    await until(() => h.coordinator.checkpoint("v") === 12, { clock: h.clock, step: 100 });
    assert.deepEqual(v.rows, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // Reset while the consumer is idle (nothing new to read): it notices and rebuilds anyway.
    assert.equal(await worker.resetConsumer("v"), 12);
    assert.equal(h.coordinator.checkpoint("v"), 0);
    assert.deepEqual(v.rows, [], "the hook cleared the read model with the checkpoint");
    await until(() => h.coordinator.checkpoint("v") === 12, { clock: h.clock, step: 100 });
    assert.deepEqual(v.rows, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    await worker.stop();
    await running;
  });

  it("forgets dead letters after the position, so a fixed handler gets the event again", async () => {
    const h = harness();
    await h.append(3);
    let broken = true;
    const v = h.view("v", {
      onPoison: () => "deadLetter",
    });
    const handle = v.consumer.handle!;
    const consumer: Consumer<Tx> = {
      ...v.consumer,
      handle(tx, event, context) {
        if (broken && event.globalPosition === 2) throw new PoisonEventError("bad");
        return handle.call(v.consumer, tx, event, context);
      },
    };
    const worker = h.worker([consumer]);
    const running = worker.start();
    await until(() => h.coordinator.deadLetters("v").length === 1, { clock: h.clock, step: 100 });
    assert.equal(h.coordinator.checkpoint("v"), 1);
    broken = false;
    await worker.resetConsumer("v", { toPosition: 1 });
    assert.equal(h.coordinator.deadLetters("v").length, 0);
    await until(() => h.coordinator.checkpoint("v") === 3, { clock: h.clock, step: 100 });
    assert.deepEqual(v.rows, [1, 2, 3]);
    await worker.stop();
    await running;
  });

  it("a partitioned consumer's partitions move back together, the hook running once", async () => {
    const h = harness();
    for (let i = 0; i < 12; i++) {
      await h.store.append(h.store, any(), [{ ...draft(), aggregateId: `o-${i % 5}` }]);
    }
    let resets = 0;
    const v = h.view("split", {
      partitions: 3,
      reset(tx) {
        resets++;
        tx.onCommit(() => v.rows.splice(0));
      },
    });
    const worker = h.worker([v.consumer]);
    const running = worker.start();
    await until(() => v.rows.length === 12, { clock: h.clock, step: 100 });
    assert.equal(await worker.resetConsumer("split"), 12);
    assert.equal(resets, 1);
    for (let i = 0; i < 3; i++) assert.equal(h.coordinator.checkpoint(`split#${i}of3`), 0);
    await until(() => v.rows.length === 12, { clock: h.clock, step: 100 });
    assert.deepEqual(
      [...v.rows].sort((a, b) => a - b),
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
    await worker.stop();
    await running;
  });

  it("refuses names it does not run, bad positions, and consumers that never registered", async () => {
    const h = harness();
    const worker = h.worker([h.view("v").consumer]);
    await assert.rejects(worker.resetConsumer("other"), WorkerConfigError);
    await assert.rejects(worker.resetConsumer("v", { toPosition: -1 }), WorkerConfigError);
    // Never started: no checkpoint row yet.
    await assert.rejects(worker.resetConsumer("v"), /never registered/);
  });
});
