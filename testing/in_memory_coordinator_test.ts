// The in-memory coordinator as an adapter of the worker's coordination port: the same fence,
// gap-token and dead-letter semantics as the PostgreSQL adapter, so the multi-worker simulation
// exercises the real core. (The consumer loop itself is tested in worker/core/consumer_loop_test.ts.)
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { any } from "../store/expected_version.ts";
import { FakeClock } from "./fake_clock.ts";
import { InMemoryCoordinator, protocolOf } from "./in_memory_coordinator.ts";
import { InMemoryEventStore } from "./in_memory_store.ts";
import { firstWindow, holdAppend } from "../worker/support_test.ts";

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

/** Registrations of consumers that start at the beginning. */
const named = (...names: string[]) => names.map((name) => ({ name, startFrom: 0 }));

describe("InMemoryCoordinator", () => {
  it("registers workers and consumers; a live id is refused, a silent one taken over", async () => {
    const { clock, coordinator } = setup();
    await protocolOf(coordinator).registerWorker("w-1", named("a", "b"), 30_000);
    await assert.rejects(protocolOf(coordinator).registerWorker("w-1", named("a"), 30_000), {
      name: "WorkerIdInUseError",
    });
    await clock.advance(30_000);
    await protocolOf(coordinator).registerWorker("w-1", named("a"), 30_000);
    coordinator.setAssignment("a", "w-1");
    coordinator.setAssignment("b", "w-1");
    assert.equal(coordinator.assignment("a"), "w-1");
    assert.equal(await protocolOf(coordinator).heartbeat("w-1"), true);
    await protocolOf(coordinator).unregisterWorker("w-1");
    assert.equal(await protocolOf(coordinator).heartbeat("w-1"), false);
    assert.equal(coordinator.assignment("a"), null, "assignments are freed");
    assert.equal(await protocolOf(coordinator).readCheckpoint("b"), 0);
  });

  it("fences batches: not the owner, a moved checkpoint, and one batch at a time per consumer", async () => {
    const { coordinator } = setup();
    await protocolOf(coordinator).registerWorker("w-1", named("p"), 30_000);
    coordinator.setAssignment("p", "w-1");
    const request = { consumer: "p", workerId: "w-1", expectedCheckpoint: 0, signal, read: null };
    assert.deepEqual(
      await protocolOf(coordinator).runBatch(
        { ...request, workerId: "w-2" },
        () => Promise.resolve(1),
      ),
      {
        kind: "notOwner",
        owner: "w-1",
      },
    );
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = protocolOf(coordinator).runBatch(request, async (session) => {
      await gate;
      await session.saveCheckpoint(5);
    });
    let secondRan = false;
    const second = protocolOf(coordinator).runBatch(
      request,
      () => Promise.resolve(void (secondRan = true)),
    );
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
    await protocolOf(coordinator).registerWorker("w-1", named("p"), 30_000);
    coordinator.setAssignment("p", "w-1");
    const request = { consumer: "p", workerId: "w-1", expectedCheckpoint: 0, signal, read: null };
    await assert.rejects(
      protocolOf(coordinator).runBatch(request, async (session) => {
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
    const held = await holdAppend(store, event("held"));
    await store.append(store, any(), [event("after")]);
    const read = await protocolOf(coordinator).readWindow(firstWindow(), signal);
    assert.deepEqual(read.events.map((e) => e.globalPosition), [2]);
    const token = await read.token();
    assert.equal(
      (await protocolOf(coordinator).readWindow(firstWindow(token), signal)).pendingResolved,
      false,
    );
    assert.match((await protocolOf(coordinator).gapBlockers(token))[0].query!, /holds positions 1/);
    await held.commit();
    const after = await protocolOf(coordinator).readWindow(firstWindow(token), signal);
    assert.equal(after.pendingResolved, true);
    assert.deepEqual(after.events.map((e) => e.globalPosition), [1, 2]);
    assert.deepEqual(await protocolOf(coordinator).gapBlockers(token), []);
  });

  it("listeners get notifications on commit and can be dropped", async () => {
    const { coordinator, store } = setup();
    let notified = 0;
    const closed: unknown[] = [];
    const handle = await protocolOf(coordinator).openListener(
      () => notified++,
      (error) => closed.push(error),
    );
    await store.append(store, any(), [event("o-1")]);
    assert.equal(notified, 1);
    coordinator.dropListeners();
    assert.equal(closed.length, 1);
    await store.append(store, any(), [event("o-2")]);
    assert.equal(notified, 1, "a dropped listener hears nothing");
    await handle.close();
    await assert.rejects(
      protocolOf(new InMemoryCoordinator(new InMemoryEventStore())).openListener(
        () => {},
        () => {},
      ),
      /no notifyChannel/,
    );
  });

  it("elections: an advisory lock dies with its session; a lease holds until it expires", async () => {
    const { clock, coordinator } = setup();
    const settings = {
      leaseMs: 1_000,
      heartbeatTimeoutMs: 5_000,
      rebalanceLockTimeoutMs: 1_000,
    };
    await protocolOf(coordinator).registerWorker("w-1", named("a"), 5_000);
    await protocolOf(coordinator).registerWorker("w-2", named("a"), 5_000);
    const a1 = protocolOf(coordinator).leaderElection("w-1", { ...settings, strategy: "advisory" });
    const a2 = protocolOf(coordinator).leaderElection("w-2", { ...settings, strategy: "advisory" });
    assert.equal(await a1.acquire(), true);
    assert.equal(await a2.acquire(), false);
    assert.equal(coordinator.leader()?.workerId, "w-1");
    assert.equal(coordinator.terminateLeaderSession("w-2"), false, "w-2 holds nothing");
    assert.equal(coordinator.terminateLeaderSession("w-1"), true);
    assert.equal(await a1.acquire(), false, "the old session is gone: demoted");
    assert.equal(await a2.acquire(), true);
    await a2.release();
    assert.equal(coordinator.leader(), null);

    const l1 = protocolOf(coordinator).leaderElection("w-1", { ...settings, strategy: "lease" });
    const l2 = protocolOf(coordinator).leaderElection("w-2", { ...settings, strategy: "lease" });
    assert.equal(await l1.acquire(), true);
    await clock.advance(999);
    assert.equal(await l2.acquire(), false);
    assert.equal(await l1.acquire(), true, "renewed");
    await clock.advance(1_000);
    assert.equal(await l2.acquire(), true, "expired: taken over");
    assert.equal(await l1.rebalance(() => [], signal), null, "the old holder cannot rebalance");
    coordinator.deleteWorker("w-2");
    assert.equal(coordinator.leader(), null, "the lease goes with the registration");
    assert.equal(await l2.acquire(), false, "no renewal without a registration");
  });

  it("a rebalance waits for the running batch of a consumer it moves, and records what it did", async () => {
    const { coordinator } = setup();
    await protocolOf(coordinator).registerWorker("w-1", named("p"), 30_000);
    await protocolOf(coordinator).registerWorker("w-2", named("p"), 30_000);
    coordinator.setAssignment("p", "w-1");
    const election = protocolOf(coordinator).leaderElection("w-2", {
      strategy: "lease",
      leaseMs: 30_000,
      heartbeatTimeoutMs: 30_000,
      rebalanceLockTimeoutMs: 60_000,
    });
    assert.equal(await election.acquire(), true);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const request = { consumer: "p", workerId: "w-1", expectedCheckpoint: 0, signal, read: null };
    const batch = protocolOf(coordinator).runBatch(request, async (session) => {
      await gate;
      await session.saveCheckpoint(3);
    });
    let done = false;
    const rebalance = election.rebalance(
      () => [{ consumer: "p", from: "w-1", to: "w-2" }],
      signal,
    ).then((changes) => (done = true, changes));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(done, false, "the move waits for the batch");
    release();
    assert.equal((await batch).kind, "committed", "the owner at the fence commits");
    assert.deepEqual(await rebalance, [{ consumer: "p", from: "w-1", to: "w-2" }]);
    assert.equal(coordinator.assignment("p"), "w-2");
    assert.equal(coordinator.checkpoint("p"), 3);
    assert.deepEqual(coordinator.rebalances().map((r) => r.leader), ["w-2"]);
  });

  it("a silent batch transaction is ended by the server after idleTimeout", async () => {
    const { clock, coordinator } = setup();
    await protocolOf(coordinator).registerWorker("w-1", named("p"), 30_000);
    coordinator.setAssignment("p", "w-1");
    const request = {
      consumer: "p",
      workerId: "w-1",
      expectedCheckpoint: 0,
      signal,
      read: null,
      idleTimeout: 1_000,
    };
    const frozen = protocolOf(coordinator).runBatch(request, async (session) => {
      await new Promise(() => {}); // a frozen process
      await session.saveCheckpoint(1);
    });
    const rejected = assert.rejects(frozen, /ended by the server/);
    await clock.advance(1_000);
    await rejected;
    const next = await protocolOf(coordinator).runBatch(
      { ...request, idleTimeout: undefined },
      (session) => session.saveCheckpoint(2),
    );
    assert.equal(next.kind, "committed", "the consumer's rows are free again");
    assert.equal(coordinator.checkpoint("p"), 2);
  });

  it("deleting a registration waits for the batch holding its consumer; the next batch is fenced", async () => {
    const { coordinator } = setup();
    await protocolOf(coordinator).registerWorker("w-1", named("p"), 30_000);
    coordinator.setAssignment("p", "w-1");
    const request = { consumer: "p", workerId: "w-1", expectedCheckpoint: 0, signal, read: null };
    let deleted = false;
    const outcome = await protocolOf(coordinator).runBatch(request, async (session) => {
      coordinator.deleteWorker("w-1");
      await new Promise((resolve) => setTimeout(resolve, 0));
      deleted = !coordinator.registrations().has("w-1");
      await session.saveCheckpoint(5);
    });
    // As on PostgreSQL: the cascade waits for the row the batch locked, so the batch its owner
    // started commits, and only then is the consumer free.
    assert.equal(deleted, false, "the deletion waited for the batch");
    assert.equal(outcome.kind, "committed");
    assert.equal(coordinator.checkpoint("p"), 5);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(coordinator.registrations().has("w-1"), false);
    assert.equal(coordinator.assignment("p"), null);
    assert.deepEqual(
      await protocolOf(coordinator).runBatch(
        { ...request, expectedCheckpoint: 5 },
        () => Promise.resolve(),
      ),
      { kind: "notOwner", owner: null },
    );
  });

  it("announces membership and assignment changes to change listeners, and cleans up stale rows", async () => {
    const { clock, coordinator } = setup();
    const heard: string[] = [];
    const handle = await protocolOf(coordinator).openChangeListener((c) => heard.push(c), () => {});
    await protocolOf(coordinator).registerWorker("w-1", named("a"), 1_000);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(heard, ["membership"]);
    await clock.advance(2_500);
    assert.equal(await protocolOf(coordinator).cleanupStaleWorkers(2_000), 1);
    assert.deepEqual([...coordinator.registrations().keys()], []);
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(heard, ["membership", "membership"]);
    assert.equal(coordinator.changeListenerCount, 1);
    await handle!.close();
    assert.equal(coordinator.changeListenerCount, 0);
  });
});
