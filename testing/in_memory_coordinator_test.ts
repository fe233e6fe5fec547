// The in-memory coordinator as an adapter of the worker's coordination port: the same fence,
// gap-token and dead-letter semantics as the PostgreSQL adapter, so the multi-worker simulation
// exercises the real core. (The consumer loop itself is tested in worker/core/consumer_loop_test.ts.)
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { any } from "../store/expected_version.ts";
import { FakeClock } from "./fake_clock.ts";
import { InMemoryCoordinator } from "./in_memory_coordinator.ts";
import { InMemoryEventStore } from "./in_memory_store.ts";

const signal = new AbortController().signal;
const event = (aggregateId: string) => ({
  aggregateType: "Order",
  aggregateId,
  eventType: "OrderPlaced",
  payload: new Uint8Array([1]),
});

function setup() {
  const clock = new FakeClock(1_000);
  const store = new InMemoryEventStore({ notifyChannel: "events" });
  const coordinator = new InMemoryCoordinator(store, { clock });
  return { clock, store, coordinator };
}

describe("InMemoryCoordinator", () => {
  it("registers workers and consumers; a live id is refused, a silent one taken over", async () => {
    const { clock, coordinator } = setup();
    await coordinator.registerWorker("w-1", ["a", "b"], 30_000);
    await assert.rejects(coordinator.registerWorker("w-1", ["a"], 30_000), {
      name: "WorkerIdInUseError",
    });
    await clock.advance(30_000);
    await coordinator.registerWorker("w-1", ["a"], 30_000);
    coordinator.setAssignment("a", "w-1");
    coordinator.setAssignment("b", "w-1");
    assert.equal(coordinator.assignment("a"), "w-1");
    assert.equal(await coordinator.heartbeat("w-1"), true);
    await coordinator.unregisterWorker("w-1");
    assert.equal(await coordinator.heartbeat("w-1"), false);
    assert.equal(coordinator.assignment("a"), null, "assignments are freed");
    assert.equal(await coordinator.readCheckpoint("b"), 0);
  });

  it("fences batches: not the owner, a moved checkpoint, and one batch at a time per consumer", async () => {
    const { coordinator } = setup();
    await coordinator.registerWorker("w-1", ["p"], 30_000);
    coordinator.setAssignment("p", "w-1");
    const request = { consumer: "p", workerId: "w-1", expectedCheckpoint: 0, signal, read: null };
    assert.deepEqual(
      await coordinator.runBatch({ ...request, workerId: "w-2" }, () => Promise.resolve(1)),
      {
        kind: "notOwner",
        owner: "w-1",
      },
    );
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = coordinator.runBatch(request, async (session) => {
      await gate;
      await session.saveCheckpoint(5);
    });
    let secondRan = false;
    const second = coordinator.runBatch(request, () => Promise.resolve(void (secondRan = true)));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(secondRan, false, "the second batch waits for the first");
    release();
    assert.equal((await first).kind, "committed");
    assert.deepEqual(await second, { kind: "checkpointMoved", checkpoint: 5 });
    assert.equal(coordinator.checkpoint("p"), 5);
  });

  it("commits session writes only with the transaction", async () => {
    const { coordinator, store } = setup();
    await store.append(store, any(), [event("o-1")]);
    const [persisted] = await store.readEvents(store, 0, 1);
    await coordinator.registerWorker("w-1", ["p"], 30_000);
    coordinator.setAssignment("p", "w-1");
    const request = { consumer: "p", workerId: "w-1", expectedCheckpoint: 0, signal, read: null };
    await assert.rejects(
      coordinator.runBatch(request, async (session) => {
        await session.recordDeadLetter({
          consumer: "p",
          workerId: "w-1",
          event: persisted,
          error: "x",
          attempts: 1,
          skipped: true,
        });
        await session.saveCheckpoint(1);
        throw new Error("handler failed");
      }),
      /handler failed/,
    );
    assert.equal(coordinator.checkpoint("p"), 0);
    assert.deepEqual(coordinator.deadLetters(), []);
  });

  it("the gap token resolves when the transactions open at the read have ended", async () => {
    const { coordinator, store } = setup();
    let finish!: () => void;
    const open = new Promise<void>((resolve) => (finish = resolve));
    let appended!: () => void;
    const ready = new Promise<void>((resolve) => (appended = resolve));
    const held = store.transaction(async (tx) => {
      await store.append(tx, any(), [event("held")]);
      appended();
      await open;
    });
    await ready;
    await store.append(store, any(), [event("after")]);
    const read = await coordinator.readWindow(0, 10, null, signal);
    assert.deepEqual(read.events.map((e) => e.globalPosition), [2]);
    const token = await read.token();
    assert.equal((await coordinator.readWindow(0, 10, token, signal)).pendingResolved, false);
    assert.match((await coordinator.gapBlockers(token))[0].query!, /holds positions 1/);
    finish();
    await held;
    const after = await coordinator.readWindow(0, 10, token, signal);
    assert.equal(after.pendingResolved, true);
    assert.deepEqual(after.events.map((e) => e.globalPosition), [1, 2]);
    assert.deepEqual(await coordinator.gapBlockers(token), []);
  });

  it("listeners get notifications on commit and can be dropped", async () => {
    const { coordinator, store } = setup();
    let notified = 0;
    const closed: unknown[] = [];
    const handle = await coordinator.openListener(() => notified++, (error) => closed.push(error));
    await store.append(store, any(), [event("o-1")]);
    assert.equal(notified, 1);
    coordinator.dropListeners();
    assert.equal(closed.length, 1);
    await store.append(store, any(), [event("o-2")]);
    assert.equal(notified, 1, "a dropped listener hears nothing");
    await handle.close();
    await assert.rejects(
      new InMemoryCoordinator(new InMemoryEventStore()).openListener(() => {}, () => {}),
      /no notifyChannel/,
    );
  });
});
