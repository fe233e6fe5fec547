// The consumer loop, gap rule, back-off and failure handling, driven through the in-memory
// coordinator and the fake clock: no real waiting anywhere.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { any } from "../../store/expected_version.ts";
import type { PersistedEvent } from "../../store/types.ts";
import { FakeClock } from "../../testing/fake_clock.ts";
import {
  InMemoryCoordinator,
  InMemoryWorker,
  protocolOf,
} from "../../testing/in_memory_coordinator.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "../../testing/in_memory_store.ts";
import { BatchTimeoutError, ConsecutiveFailuresError, PoisonEventError } from "../errors.ts";
import type { WorkerRuntimeOptions } from "../options.ts";
import { draft, holdAppend, tick, until } from "../support_test.ts";
import type { Consumer, GapWait } from "../types.ts";
import type { WindowQuery } from "./gap_rule.ts";
import { skipPoisonEvents } from "./poison.ts";
import { SeededRandom } from "../../testing/seeded_random.ts";

type Tx = InMemoryTransaction;

function harness(options: { notifyChannel?: string } = {}) {
  const clock = new FakeClock(1_700_000_000_000);
  const store = new InMemoryEventStore({ notifyChannel: options.notifyChannel ?? null });
  const coordinator = new InMemoryCoordinator(store, { clock });
  const append = (aggregateType = "Order", eventType = "OrderPlaced") =>
    store.transaction((tx) =>
      store.append(tx, any(), [draft(aggregateType, undefined, eventType)])
    );
  /** Opens an append transaction and keeps it open until `commit()` or `rollback()`. */
  const hold = (aggregateType = "Order") => holdAppend(store, draft(aggregateType));
  const worker = (consumers: Consumer<Tx>[], extra: WorkerRuntimeOptions = {}) =>
    new InMemoryWorker(coordinator, consumers, {
      clock,
      workerId: "w-1",
      pollInterval: 1_000,
      ...extra,
    });
  return { clock, store, coordinator, append, hold, worker };
}

/** Calls `seen` with each window query the worker's probes send, before the read. */
function onRead(h: ReturnType<typeof harness>, seen: (query: WindowQuery) => void): void {
  const protocol = protocolOf(h.coordinator);
  const readWindow = protocol.readWindow.bind(protocol);
  protocol.readWindow = (query, signal) => {
    seen(query);
    return readWindow(query, signal);
  };
}

/** A consumer recording what it handled, committed atomically through `tx.onCommit`. */
function recorder(name: string, extra: Partial<Consumer<Tx>> = {}) {
  const committed: number[] = [];
  const attempts = new Map<number, number>();
  const consumer: Consumer<Tx> = {
    name,
    handle(tx, event) {
      attempts.set(event.globalPosition, (attempts.get(event.globalPosition) ?? 0) + 1);
      tx.onCommit(() => committed.push(event.globalPosition));
    },
    ...extra,
  };
  return { consumer, committed, attempts };
}

describe("consumer loop on the in-memory coordinator", () => {
  it("scenario 1: one worker, a global and two scoped consumers; checkpoints reach the latest position", async () => {
    const h = harness();
    const all = recorder("all");
    const accounts = recorder("accounts", { aggregateTypes: ["Account"] });
    const orders = recorder("orders", { aggregateTypes: ["Order"] });
    const worker = h.worker([all.consumer, accounts.consumer, orders.consumer]);
    const running = worker.start();
    for (let i = 0; i < 3; i++) await h.append("Account");
    for (let i = 0; i < 2; i++) await h.append("Order");
    await until(() => all.committed.length === 5 && h.coordinator.checkpoint("orders") === 5, {
      clock: h.clock,
      step: 250,
    });
    await until(() => h.coordinator.checkpoint("accounts") === 5, { clock: h.clock, step: 250 });
    assert.deepEqual(all.committed, [1, 2, 3, 4, 5]);
    assert.deepEqual(accounts.committed, [1, 2, 3]);
    assert.deepEqual(orders.committed, [4, 5]);
    for (const name of ["all", "accounts", "orders"]) {
      assert.equal(h.coordinator.checkpoint(name), 5, name);
      assert.equal(h.coordinator.assignment(name), "w-1");
    }
    await worker.stop();
    await running;
    assert.equal(h.coordinator.assignment("all"), null, "stopping frees the assignments");
  });

  it("eventTypes narrows what reaches the handler, the checkpoint passes the rest", async () => {
    const h = harness();
    const placed = recorder("placed", { eventTypes: ["OrderPlaced"] });
    await h.append("Order", "OrderPlaced");
    await h.append("Order", "OrderShipped");
    await h.append("Order", "OrderPlaced");
    const worker = h.worker([placed.consumer]);
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("placed") === 3, { clock: h.clock });
    assert.deepEqual(placed.committed, [1, 3]);
    await worker.stop();
    await running;
  });

  it("handleBatch receives up to batchSize matching events at once, in order", async () => {
    const h = harness();
    const batches: number[][] = [];
    for (let i = 0; i < 7; i++) await h.append(i % 2 === 0 ? "Order" : "Account");
    const worker = h.worker([{
      name: "batched",
      aggregateTypes: ["Order"],
      handleBatch: (tx, events) =>
        tx.onCommit(() => batches.push(events.map((e) => e.globalPosition))),
    }], { batchSize: 3 });
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("batched") === 7, { clock: h.clock });
    // batchSize counts the consumer's events: the positions it passes over do not fill a batch.
    assert.deepEqual(batches, [[1, 3, 5], [7]]);
    await worker.stop();
    await running;
  });

  it("idle consumers back off from pollInterval to maxPollInterval; the dispatcher wakes them early", async () => {
    const h = harness();
    const probes: number[] = [];
    onRead(h, () => probes.push(h.clock.now()));
    const seen = recorder("idle");
    const worker = h.worker([seen.consumer], {
      pollInterval: 1_000,
      maxPollInterval: 8_000,
      dispatcherInterval: 200,
    });
    const running = worker.start();
    await until(() => probes.length >= 1, { clock: h.clock, step: 1 });
    const start = probes[0];
    await h.clock.advance(40_000);
    const gaps = probes.slice(1).map((t, i) => t - (i === 0 ? start : probes[i]));
    assert.deepEqual(gaps.slice(0, 6), [2_000, 4_000, 8_000, 8_000, 8_000, 8_000]);
    // Idle at 8 s now; an append is noticed by the poll dispatcher within its 200 ms interval.
    await h.append();
    const before = h.clock.now();
    await until(() => seen.committed.length === 1, { clock: h.clock, step: 50 });
    assert.ok(h.clock.now() - before <= 300, `woke after ${h.clock.now() - before} ms`);
    await worker.stop();
    await running;
  });

  it("scenario 7: a failing batch commits nothing; the events before the failing one commit without it; the failing one retries alone with back-off", async () => {
    const h = harness();
    let failing = true;
    const flaky = recorder("flaky", {
      handle(tx, event) {
        flaky.attempts.set(
          event.globalPosition,
          (flaky.attempts.get(event.globalPosition) ?? 0) + 1,
        );
        if (event.globalPosition === 2 && failing) throw new Error("not yet");
        tx.onCommit(() => flaky.committed.push(event.globalPosition));
      },
    });
    for (let i = 0; i < 3; i++) await h.append();
    const failures: number[] = [];
    const worker = h.worker([flaky.consumer], {
      maxConsecutiveFailures: 100,
      observer: { batchFailed: (f) => failures.push(f.retryInMs) },
    });
    const running = worker.start();
    await until(() => failures.length >= 4, { clock: h.clock, step: 500 });
    assert.deepEqual(flaky.committed, [1], "the failing batch committed nothing; its prefix did");
    assert.equal(h.coordinator.checkpoint("flaky"), 1);
    assert.deepEqual(
      failures.slice(0, 4),
      [0, 1_000, 2_000, 4_000],
      "narrowed at once, then the event alone backs off",
    );
    assert.equal(flaky.attempts.get(3), undefined, "nothing after the failing event ran");
    failing = false;
    await until(() => h.coordinator.checkpoint("flaky") === 3, { clock: h.clock, step: 500 });
    assert.deepEqual(flaky.committed, [1, 2, 3]);
    assert.equal(flaky.attempts.get(1), 2, "handled in the failed batch, then in its prefix");
    await worker.stop();
    await running;
  });

  it("transient failures cost throughput, not progress: 5 % random failures, default options, 500 events", async () => {
    for (const form of ["handle", "handleBatch"] as const) {
      const h = harness();
      const random = new SeededRandom(11);
      const committed: number[] = [];
      const fails = () => random.next() < 0.05;
      const consumer: Consumer<Tx> = form === "handle"
        ? {
          name: "flaky",
          handle(tx, event) {
            if (fails()) throw new Error("transient");
            tx.onCommit(() => committed.push(event.globalPosition));
          },
        }
        : {
          name: "flaky",
          handleBatch(tx, events) {
            for (const event of events) {
              if (fails()) throw new Error("transient");
              tx.onCommit(() => committed.push(event.globalPosition));
            }
          },
        };
      for (let i = 0; i < 500; i++) await h.append();
      let failures = 0;
      const worker = h.worker([consumer], { observer: { batchFailed: () => failures++ } });
      const running = worker.start();
      const outcome = running.then(() => null, (error) => error);
      await until(
        () => h.coordinator.checkpoint("flaky") === 500 || !worker.running,
        { clock: h.clock, step: 1_000, timeoutMs: 60_000, what: `${form}: checkpoint 500` },
      );
      assert.equal(worker.running, true, `${form}: the worker is still running`);
      assert.deepEqual(committed, Array.from({ length: 500 }, (_, i) => i + 1), form);
      assert.ok(failures > 10, `${form}: failures happened (${failures})`);
      await worker.stop();
      assert.equal(await outcome, null);
    }
  });

  it("at 30 % random failures with batches of 20, every event is handled exactly once", async () => {
    const h = harness();
    const random = new SeededRandom(5);
    const committed: number[] = [];
    const consumer: Consumer<Tx> = {
      name: "flaky",
      handle(tx, event) {
        if (random.next() < 0.3) throw new Error("transient");
        tx.onCommit(() => committed.push(event.globalPosition));
      },
    };
    for (let i = 0; i < 1_000; i++) await h.append();
    // Five failures in a row of one event alone (0.3^5 per event) is a real stop by the default;
    // here the policy allows more so the run shows progress, not the odds.
    const worker = h.worker([consumer], { batchSize: 20, maxConsecutiveFailures: 12 });
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("flaky") === 1_000 || !worker.running, {
      clock: h.clock,
      step: 1_000,
      timeoutMs: 120_000,
      what: "checkpoint 1000",
    });
    assert.equal(worker.running, true);
    assert.deepEqual(committed, Array.from({ length: 1_000 }, (_, i) => i + 1));
    await worker.stop();
    await running;
  });

  it("a batch that times out is retried smaller: a handler too slow for a full batch still progresses", async () => {
    const h = harness();
    const committed: number[] = [];
    const consumer: Consumer<Tx> = {
      name: "slow",
      async handle(tx, event) {
        await h.clock.sleep(100); // 100 events take 10 s, past batchTimeout
        tx.onCommit(() => committed.push(event.globalPosition));
      },
    };
    for (let i = 0; i < 100; i++) await h.append();
    const worker = h.worker([consumer], { batchTimeout: 3_000, maxConsecutiveFailures: 10 });
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("slow") === 100 || !worker.running, {
      clock: h.clock,
      step: 50,
      timeoutMs: 60_000,
      what: "checkpoint 100",
    });
    assert.equal(worker.running, true);
    assert.deepEqual(committed, Array.from({ length: 100 }, (_, i) => i + 1));
    await worker.stop();
    await running;
  });

  it("a connection lost while starting is retried: start-up and the dispatcher's first read", async () => {
    const h = harness();
    const lost = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    let prepares = 0;
    let reads = 0;
    const flaky = new InMemoryCoordinator(h.store, { clock: h.clock });
    const protocol = protocolOf(flaky);
    const prepare = protocol.prepare.bind(protocol);
    const latestPosition = protocol.latestPosition.bind(protocol);
    protocol.prepare = () => ++prepares <= 2 ? Promise.reject(lost()) : prepare();
    protocol.latestPosition = () => ++reads <= 2 ? Promise.reject(lost()) : latestPosition();
    const all = recorder("all");
    const worker = new InMemoryWorker(flaky, [all.consumer], {
      clock: h.clock,
      workerId: "w-1",
      pollInterval: 1_000,
    });
    const running = worker.start();
    await h.append();
    await until(() => flaky.checkpoint("all") === 1 && reads >= 3, {
      clock: h.clock,
      step: 500,
    });
    assert.equal(prepares, 3);
    assert.equal(worker.running, true);
    await worker.stop();
    await running;
  });

  it("maxConsecutiveFailures makes start reject with a typed error", async () => {
    const h = harness();
    await h.append();
    const worker = h.worker([{ name: "broken", handle: () => Promise.reject(new Error("boom")) }], {
      maxConsecutiveFailures: 3,
    });
    const running = worker.start();
    const outcome = running.then(() => "resolved", (error) => error);
    await until(() => !worker.running, { clock: h.clock, step: 1_000 });
    const error = await outcome;
    assert.ok(error instanceof ConsecutiveFailuresError, String(error));
    assert.equal(error.consumer, "broken");
    assert.equal(error.failures, 3);
    assert.match(String(error.message), /boom/);
    assert.equal(h.coordinator.checkpoint("broken"), 0);
  });

  it("a batch running past batchTimeout is aborted, rolled back, and retried", async () => {
    const h = harness();
    await h.append();
    let hang = true;
    const timeouts: unknown[] = [];
    const slow = recorder("slow", {
      async handle(tx, event, context) {
        tx.onCommit(() => slow.committed.push(event.globalPosition));
        if (hang) {
          hang = false;
          // Hangs until the batch is aborted, as a cancellable operation would.
          await new Promise((_, reject) =>
            context.signal.addEventListener("abort", () => reject(context.signal.reason))
          );
        }
      },
    });
    const worker = h.worker([slow.consumer], {
      batchTimeout: 5_000,
      observer: { batchFailed: (f) => timeouts.push(f.error) },
    });
    const running = worker.start();
    await until(() => timeouts.length === 1, { clock: h.clock, step: 1_000 });
    assert.ok(timeouts[0] instanceof BatchTimeoutError);
    assert.deepEqual(slow.committed, [], "the timed-out batch's writes were rolled back");
    await until(() => slow.committed.length === 1, { clock: h.clock, step: 500 });
    assert.equal(h.coordinator.checkpoint("slow"), 1);
    await worker.stop();
    await running;
  });

  it("scenario 8: a held append: the consumer waits at the hole however long, then handles the late event in order", async () => {
    const h = harness();
    const seen = recorder("ordered");
    await h.append(); // 1
    const held = await h.hold(); // 2, uncommitted
    await h.append(); // 3
    await h.append(); // 4
    const waits: GapWait[] = [];
    // Slow timers keep the simulated hour cheap (each fake timer costs one real macrotask).
    const worker = h.worker([seen.consumer], {
      batchPause: 10_000,
      gapCheckInterval: 10_000,
      dispatcherInterval: 60_000,
      heartbeatInterval: 600_000,
      heartbeatTimeout: 3_600_000,
      rebalanceInterval: 600_000,
      assignmentPollInterval: 600_000,
      gapReportInterval: 10_000,
      observer: { gapWaiting: (g) => waits.push(g) },
    });
    const running = worker.start();
    await until(() => seen.committed.length === 1, { clock: h.clock });
    await h.clock.advance(3_600_000); // an hour: longer than any threshold
    assert.deepEqual(seen.committed, [1]);
    assert.equal(h.coordinator.checkpoint("ordered"), 1);
    assert.ok(waits.length > 0, "the gap wait is reported");
    assert.equal(waits[0].position, 2);
    assert.match(waits[0].blockers[0].query!, /holds positions 2/);
    const status = await h.coordinator.status();
    assert.equal(status.consumers[0].gap?.position, 2);
    // A stopped worker leaves no stale gap wait behind; a new one goes on from the checkpoint.
    await worker.stop();
    await running;
    assert.equal((await h.coordinator.status()).consumers[0].gap, null);
    const again = h.worker([seen.consumer], {
      batchPause: 10_000,
      gapCheckInterval: 10_000,
      dispatcherInterval: 60_000,
      heartbeatInterval: 600_000,
    });
    const rerunning = again.start();
    await held.commit();
    await until(() => seen.committed.length === 4, { clock: h.clock, step: 1_000 });
    assert.deepEqual(seen.committed, [1, 2, 3, 4]);
    await again.stop();
    await rerunning;
  });

  it("a consumer windows behind goes on at once after each full batch; batchPause throttles it", async () => {
    for (const batchPause of [0, 200]) {
      const h = harness();
      const seen = recorder("behind");
      for (let i = 0; i < 1_000; i++) await h.append();
      const worker = h.worker([seen.consumer], { batchSize: 100, batchPause });
      const started = h.clock.now();
      const running = worker.start();
      await until(() => h.coordinator.checkpoint("behind") === 1_000, { clock: h.clock, step: 5 });
      const elapsed = h.clock.now() - started;
      if (batchPause === 0) assert.ok(elapsed < 200, `10 windows in ${elapsed} ms without pauses`);
      else assert.ok(elapsed >= 9 * batchPause, `10 windows in ${elapsed} ms, 9 pauses`);
      assert.equal(seen.committed.length, 1_000);
      await worker.stop();
      await running;
    }
  });

  it("ten consumers in one worker read each window of their catch-up once between them", async () => {
    const h = harness();
    for (let i = 0; i < 1_000; i++) await h.append();
    const reads: number[] = [];
    onRead(h, (query) => reads.push(query.after));
    const seen = Array.from({ length: 10 }, (_, i) => recorder(`c${i}`));
    const worker = h.worker(seen.map((r) => r.consumer), { batchSize: 100 });
    const running = worker.start();
    await until(() => seen.every((r) => r.committed.length === 1_000), { clock: h.clock, step: 5 });
    for (const r of seen) {
      assert.deepEqual(
        r.committed,
        Array.from({ length: 1_000 }, (_, i) => i + 1),
        "in order, once",
      );
    }
    const full = reads.filter((after) => after < 1_000);
    assert.equal(new Set(full).size, full.length, `each full window read once: ${full}`);
    assert.equal(full.length, 10);
    await worker.stop();
    await running;
  });

  it("a rolled-back append: the hole is passed as soon as the rollback happens", async () => {
    const h = harness();
    const seen = recorder("holes");
    await h.append(); // 1
    const held = await h.hold(); // 2, will roll back
    await h.append(); // 3
    const worker = h.worker([seen.consumer], { batchPause: 200, gapCheckInterval: 200 });
    const running = worker.start();
    await until(() => seen.committed.length === 1, { clock: h.clock });
    await h.clock.advance(10_000);
    assert.deepEqual(seen.committed, [1]);
    await held.rollback();
    const before = h.clock.now();
    await until(() => seen.committed.length === 2, { clock: h.clock, step: 50 });
    assert.ok(h.clock.now() - before <= 250, "passed within one batch pause");
    assert.deepEqual(seen.committed, [1, 3]);
    assert.equal(h.coordinator.checkpoint("holes"), 3);
    assert.deepEqual(h.coordinator.gapSkips(), [], "a rolled-back hole is not a skip");
    await worker.stop();
    await running;
  });

  it("scenarios 9/10: maxGapWait skips a hole that outlived it and audits the skip", async () => {
    const h = harness();
    const seen = recorder("impatient");
    const held = await h.hold(); // 1
    await h.append(); // 2
    await h.append(); // 3
    const skips: unknown[] = [];
    const worker = h.worker([seen.consumer], {
      maxGapWait: 5_000,
      observer: { gapSkipped: (s) => skips.push(s) },
    });
    const running = worker.start();
    await h.clock.advance(4_000);
    assert.deepEqual(seen.committed, []);
    await until(() => seen.committed.length === 2, { clock: h.clock, step: 200 });
    assert.deepEqual(seen.committed, [2, 3]);
    const [audit] = h.coordinator.gapSkips("impatient");
    assert.deepEqual(
      {
        gap: audit.gapPosition,
        to: audit.skipTo,
        skipped: audit.skippedPositions,
        visible: audit.highestVisible,
      },
      { gap: 1, to: 3, skipped: [1], visible: 3 },
    );
    assert.equal(skips.length, 1);
    await held.commit(); // too late: documented loss, recorded in the audit table
    await h.clock.advance(5_000);
    assert.deepEqual(seen.committed, [2, 3]);
    await worker.stop();
    await running;
  });

  it("scenario 11: a restarted worker resumes from the checkpoint", async () => {
    const h = harness();
    const first = recorder("resume");
    for (let i = 0; i < 3; i++) await h.append();
    const w1 = h.worker([first.consumer], { workerId: "w-1" });
    const r1 = w1.start();
    await until(() => h.coordinator.checkpoint("resume") === 3, { clock: h.clock });
    await w1.stop();
    await r1;
    for (let i = 0; i < 2; i++) await h.append();
    const second = recorder("resume");
    const w2 = h.worker([second.consumer], { workerId: "w-2" });
    const r2 = w2.start();
    await until(() => h.coordinator.checkpoint("resume") === 5, { clock: h.clock });
    assert.deepEqual(first.committed, [1, 2, 3]);
    assert.deepEqual(second.committed, [4, 5]);
    assert.equal(h.coordinator.assignment("resume"), "w-2");
    await w2.stop();
    await r2;
  });

  it("a worker that lost the consumer cannot commit and stops that consumer", async () => {
    const h = harness();
    const seen = recorder("fenced");
    const stopped: string[] = [];
    const started: string[] = [];
    // No periodic sync or rebalance: only the fence can notice the change.
    const worker = h.worker([seen.consumer], {
      rebalanceInterval: 600_000,
      assignmentPollInterval: 600_000,
      dispatcherInterval: 60_000,
      heartbeatInterval: 60_000,
      observer: {
        consumerStopped: (s) => stopped.push(s.reason),
        consumerStarted: (s) => started.push(s.consumer),
      },
    });
    const running = worker.start();
    await h.append();
    await until(() => seen.committed.length === 1, { clock: h.clock });
    h.coordinator.setAssignment("fenced", "someone-else");
    await h.append();
    await until(() => stopped.length === 1, { clock: h.clock, step: 100 });
    assert.deepEqual(stopped, ["ownershipLost"]);
    assert.deepEqual(seen.committed, [1]);
    assert.equal(h.coordinator.checkpoint("fenced"), 1);
    // The leader's next cycle gives it back (someone-else is not live); the sync restarts it.
    await h.clock.advance(600_000);
    await until(() => seen.committed.length === 2, { clock: h.clock, step: 100 });
    assert.deepEqual(started, ["fenced", "fenced"]);
    assert.equal(h.coordinator.assignment("fenced"), worker.id);
    await worker.stop();
    await running;
  });

  it("effectively once: crashes between handle and commit never duplicate a committed write", async () => {
    const h = harness();
    for (let i = 0; i < 20; i++) await h.append();
    const readModel = new Map<number, string>();
    let crashes = 0;
    let worker!: InMemoryWorker;
    const consumer: Consumer<Tx> = {
      name: "once",
      handle(tx, event) {
        tx.onCommit(() => {
          assert.ok(!readModel.has(event.globalPosition), `duplicate at ${event.globalPosition}`);
          readModel.set(event.globalPosition, worker.id);
        });
        if (
          event.globalPosition % 7 === 0 && crashes < 3 && readModel.size < event.globalPosition
        ) {
          crashes++;
          void worker.stop(); // kill between handle and commit: the batch is aborted
        }
      },
    };
    for (let round = 0; round < 5 && readModel.size < 20; round++) {
      worker = h.worker([consumer], { workerId: `w-${round}`, batchSize: 6 });
      const running = worker.start();
      await until(() => !worker.running || readModel.size === 20, { clock: h.clock, step: 100 });
      await worker.stop();
      await running;
    }
    assert.equal(crashes, 3);
    assert.deepEqual(
      [...readModel.keys()].sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    assert.equal(h.coordinator.checkpoint("once"), 20);
  });
});

describe("poison events", () => {
  it("by default a PoisonEventError is dead-lettered, not skipped, and the worker eventually stops", async () => {
    const h = harness();
    await h.append();
    await h.append();
    const seen = recorder("strict", {
      handle(tx, event) {
        if (event.globalPosition === 1) throw new PoisonEventError("cannot parse");
        tx.onCommit(() => seen.committed.push(event.globalPosition));
      },
    });
    const worker = h.worker([seen.consumer], { maxConsecutiveFailures: 3 });
    const outcome = worker.start().then(() => null, (error) => error);
    await until(() => !worker.running, { clock: h.clock, step: 1_000 });
    assert.ok((await outcome) instanceof ConsecutiveFailuresError);
    assert.deepEqual(seen.committed, []);
    const [letter] = h.coordinator.deadLetters("strict");
    assert.deepEqual(
      { position: letter.globalPosition, skipped: letter.skipped, attempts: letter.attempts },
      { position: 1, skipped: false, attempts: 3 },
    );
    assert.match(letter.error, /PoisonEventError: cannot parse/);
    assert.equal((await h.coordinator.status()).consumers[0].deadLetters.blocking, 1);
  });

  it("a blocking dead letter is resolved once the event is handled after all", async () => {
    const h = harness();
    await h.append();
    let broken = true;
    const seen = recorder("recovering", {
      handle(tx, event) {
        if (broken) throw new PoisonEventError("not yet");
        tx.onCommit(() => seen.committed.push(event.globalPosition));
      },
    });
    const worker = h.worker([seen.consumer], { maxConsecutiveFailures: 50 });
    const running = worker.start();
    await until(() => h.coordinator.deadLetters().length === 1, { clock: h.clock, step: 500 });
    broken = false;
    await until(() => seen.committed.length === 1, { clock: h.clock, step: 500 });
    assert.notEqual(h.coordinator.deadLetters()[0].resolvedAt, null);
    assert.equal((await h.coordinator.status()).consumers[0].deadLetters.blocking, 0);
    await worker.stop();
    await running;
  });

  it("a skip policy dead-letters the event, moves past it atomically, and it can be redriven", async () => {
    const h = harness();
    for (let i = 0; i < 4; i++) await h.append();
    let poisoned = true;
    const lettered: unknown[] = [];
    const seen = recorder("lenient", {
      onPoison: skipPoisonEvents({ afterAttempts: 2 }),
      handle(tx, event) {
        if (event.globalPosition === 2 && poisoned) throw new Error("transient?");
        tx.onCommit(() => seen.committed.push(event.globalPosition));
      },
    });
    const worker = h.worker([seen.consumer], {
      observer: { deadLettered: (d) => lettered.push(d) },
    });
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("lenient") === 4, { clock: h.clock, step: 500 });
    assert.deepEqual(seen.committed, [1, 3, 4]);
    const [letter] = h.coordinator.deadLetters("lenient");
    assert.deepEqual({
      position: letter.globalPosition,
      skipped: letter.skipped,
      attempts: letter.attempts,
    }, {
      position: 2,
      skipped: true,
      attempts: 2,
    });
    assert.equal(lettered.length, 1);
    poisoned = false;
    const redriven = await h.coordinator.retryDeadLetter(seen.consumer, 2);
    assert.equal(redriven.globalPosition, 2);
    assert.deepEqual(seen.committed, [1, 3, 4, 2]);
    assert.notEqual(h.coordinator.deadLetters("lenient")[0].redrivenAt, null);
    await assert.rejects(h.coordinator.retryDeadLetter(seen.consumer, 2), {
      name: "DeadLetterNotFoundError",
    });
    await worker.stop();
    await running;
  });

  it("handleBatch: a PoisonEventError naming its event is attributed; other events in the batch commit", async () => {
    const h = harness();
    for (let i = 0; i < 3; i++) await h.append();
    const committed: number[] = [];
    const worker = h.worker([{
      name: "batchy",
      onPoison: skipPoisonEvents(),
      handleBatch(tx, events: readonly PersistedEvent[]) {
        const bad = events.find((e) => e.globalPosition === 2);
        if (bad) throw new PoisonEventError("bad payload", { event: bad });
        tx.onCommit(() => committed.push(...events.map((e) => e.globalPosition)));
      },
    }]);
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("batchy") === 3, { clock: h.clock, step: 100 });
    assert.deepEqual(committed, [1, 3]);
    assert.equal(h.coordinator.deadLetters("batchy")[0].globalPosition, 2);
    await worker.stop();
    await running;
  });

  it("handleBatch: an unattributed failure is retried one event at a time to find the culprit", async () => {
    const h = harness();
    for (let i = 0; i < 3; i++) await h.append();
    const calls: number[][] = [];
    const committed: number[] = [];
    const worker = h.worker([{
      name: "isolating",
      onPoison: skipPoisonEvents({ afterAttempts: 1 }),
      handleBatch(tx, events: readonly PersistedEvent[]) {
        calls.push(events.map((e) => e.globalPosition));
        if (events.some((e) => e.globalPosition === 3)) throw new Error("opaque failure");
        tx.onCommit(() => committed.push(...events.map((e) => e.globalPosition)));
      },
    }]);
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("isolating") === 3, { clock: h.clock, step: 200 });
    assert.deepEqual(committed, [1, 2]);
    assert.deepEqual(calls[0], [1, 2, 3]);
    assert.deepEqual(calls.slice(1, 4), [[1], [2], [3]]);
    assert.equal(h.coordinator.deadLetters("isolating")[0].globalPosition, 3);
    await worker.stop();
    await running;
  });
});

describe("notify dispatcher (in memory)", () => {
  it("a notification wakes the consumer with a frozen clock, also after the listener is lost", async () => {
    const h = harness({ notifyChannel: "events" });
    const seen = recorder("notified");
    const worker = h.worker([seen.consumer], {
      dispatcher: "notify",
      pollInterval: 60_000,
      maxPollInterval: 60_000,
    });
    const running = worker.start();
    await until(() => h.coordinator.listenerCount === 1, { what: "listening" });
    await h.append();
    await until(() => seen.committed.length === 1, { what: "first wakeup" });
    h.coordinator.dropListeners();
    await until(() => h.coordinator.listenerCount === 1, { what: "reconnected" });
    await h.append();
    await until(() => seen.committed.length === 2, { what: "wakeup after reconnecting" });
    assert.deepEqual(seen.committed, [1, 2]);
    await worker.stop();
    await running;
    assert.equal(h.coordinator.listenerCount, 0);
  });
});

describe("WorkerRuntime lifecycle", () => {
  it("rejects a second start, resolves on stop or on the caller's signal, and can start again", async () => {
    const h = harness();
    const worker = h.worker([recorder("life").consumer]);
    const running = worker.start();
    await assert.rejects(worker.start(), { name: "WorkerAlreadyStartedError" });
    await worker.stop();
    await running;
    const controller = new AbortController();
    const again = worker.start(controller.signal);
    await tick();
    assert.equal(worker.running, true);
    controller.abort();
    await again;
    assert.equal(worker.running, false);
    assert.equal((await h.coordinator.status()).workers.length, 0, "the registration is removed");
  });

  it("a stop is bounded: a hanging batch and a hanging unregistration do not keep it alive", async () => {
    const h = harness();
    await h.append();
    // A handler that ignores its signal and never returns, and a storage that never answers the
    // unregistration: stop still resolves, after batchTimeout + heartbeatTimeout and then
    // heartbeatTimeout of the worker's clock.
    const hanging = {
      name: "hang",
      handle: () => new Promise<void>(() => {}),
    };
    const protocol = protocolOf(h.coordinator);
    protocol.unregisterWorker = () => new Promise<void>(() => {});
    const worker = h.worker([hanging], {
      batchTimeout: 1_000,
      heartbeatInterval: 500,
      heartbeatTimeout: 3_000,
    });
    const running = worker.start();
    await until(() => worker.runningConsumers.includes("hang"), { clock: h.clock, step: 100 });
    let stopped = false;
    const stopping = worker.stop().then(() => (stopped = true));
    await until(() => stopped, { clock: h.clock, step: 500 });
    await stopping;
    await running;
    assert.equal(worker.running, false);
  });

  it("a second worker with the same live id is refused", async () => {
    const h = harness();
    const a = h.worker([recorder("a").consumer], { workerId: "same" });
    const running = a.start();
    await until(() => h.coordinator.assignment("a") === "same", { clock: h.clock });
    const b = h.worker([recorder("b").consumer], { workerId: "same" });
    await assert.rejects(b.start(), { name: "WorkerIdInUseError" });
    await a.stop();
    await running;
  });
});
