// Detached consumers on the in-memory coordinator and the fake clock: handlers run with no
// transaction open (no batch in flight, the consumer's rows free), the checkpoint is saved after
// they return, failures retry without redelivering what was handled, a timeout only delays the
// checkpoint, and a refused fence means redelivery (at least once).
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
import { BatchTimeoutError } from "../errors.ts";
import type { WorkerRuntimeOptions } from "../options.ts";
import { draft, holdAppend, tick, until } from "../support_test.ts";
import type { Consumer, DetachedConsumer, HandlerContext } from "../types.ts";
import { skipPoisonEvents } from "./poison.ts";
import { partitionIndex } from "./partitions.ts";

type Tx = InMemoryTransaction;

function harness() {
  const clock = new FakeClock(1_700_000_000_000);
  const store = new InMemoryEventStore();
  const coordinator = new InMemoryCoordinator(store, { clock });
  const protocol = protocolOf(coordinator);
  // Every transaction of a consumer loop is a `runBatch`: count the ones open, per consumer.
  const open = new Map<string, number>();
  const runBatch = protocol.runBatch.bind(protocol);
  protocol.runBatch = async (request, work) => {
    open.set(request.consumer, (open.get(request.consumer) ?? 0) + 1);
    try {
      return await runBatch(request, work);
    } finally {
      open.set(request.consumer, open.get(request.consumer)! - 1);
    }
  };
  const append = async (n = 1) => {
    for (let i = 0; i < n; i++) {
      await store.transaction((tx) => store.append(tx, any(), [draft("User")]));
    }
  };
  const worker = (
    consumers: (Consumer<Tx> | DetachedConsumer<Tx>)[],
    extra: WorkerRuntimeOptions = {},
  ) =>
    new InMemoryWorker(coordinator, consumers, {
      clock,
      workerId: "w-1",
      pollInterval: 1_000,
      ...extra,
    });
  /**
   * Whether a fenced transaction on `consumer` (owner `workerId`, checkpoint `expected`) gets
   * through within `ms` of fake time: it waits while a batch holds the consumer's rows.
   */
  const rowsFree = async (consumer: string, workerId: string, expected: number, ms = 2_000) => {
    let through = false;
    const probe = runBatch({
      consumer,
      workerId,
      expectedCheckpoint: expected,
      signal: new AbortController().signal,
      read: null,
    }, () => Promise.resolve()).then((outcome) => {
      through = true;
      return outcome.kind;
    });
    await clock.advance(ms);
    return { through, outcome: probe };
  };
  return {
    clock,
    store,
    coordinator,
    append,
    worker,
    rowsFree,
    /** How many batch transactions of `consumer` are open. */
    openBatches: (consumer: string) => open.get(consumer) ?? 0,
  };
}

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

describe("detached consumers (in memory)", () => {
  it("handlers run with no transaction open and the consumer's rows free; the checkpoint is saved after they return", async () => {
    const h = harness();
    await h.append(3);
    const calls: {
      position: number;
      consumer: string;
      openBatches: number;
      checkpoint: number;
    }[] = [];
    const release = gate();
    const blocked = gate();
    const mailer: DetachedConsumer<Tx> = {
      name: "mailer",
      mode: "detached",
      async handle(event: PersistedEvent, context: HandlerContext) {
        // Recorded, not asserted here: a throw in a handler is a failure the worker retries.
        calls.push({
          position: event.globalPosition,
          consumer: context.consumer,
          openBatches: h.openBatches("mailer"),
          checkpoint: h.coordinator.checkpoint("mailer"),
        });
        if (event.globalPosition === 2) {
          blocked.open();
          await release.opened;
        }
      },
    };
    // A transactional consumer, for contrast: its handler runs inside its batch.
    const inside: number[] = [];
    const projection: Consumer<Tx> = {
      name: "projection",
      handle() {
        inside.push(h.openBatches("projection"));
      },
    };
    const committed: { consumer: string; from: number; to: number; handled: number }[] = [];
    const worker = h.worker([mailer, projection], {
      observer: { batchCommitted: ({ durationMs: _, ...b }) => committed.push(b) },
    });
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("projection") === 3, { clock: h.clock });
    assert.deepEqual(inside, [1, 1, 1], "a transactional handler runs inside its batch");
    await blocked.opened;
    // Blocked in the handler: no batch of the mailer is open, and its rows are not locked.
    assert.equal(h.openBatches("mailer"), 0);
    const probe = await h.rowsFree("mailer", "w-1", 0);
    assert.equal(probe.through, true, "a fenced transaction on the consumer is not kept waiting");
    assert.equal(await probe.outcome, "committed");
    assert.equal(h.coordinator.checkpoint("mailer"), 0, "nothing saved before the handlers return");
    release.open();
    await until(() => h.coordinator.checkpoint("mailer") === 3, { clock: h.clock });
    assert.deepEqual(calls, [
      { position: 1, consumer: "mailer", openBatches: 0, checkpoint: 0 },
      { position: 2, consumer: "mailer", openBatches: 0, checkpoint: 0 },
      { position: 3, consumer: "mailer", openBatches: 0, checkpoint: 0 },
    ]);
    assert.deepEqual(committed.filter((c) => c.consumer === "mailer"), [
      { consumer: "mailer", from: 0, to: 3, handled: 3 },
    ]);
    await worker.stop();
    await running;
  });

  it("for contrast: a blocked transactional handler keeps its consumer's rows locked", async () => {
    const h = harness();
    await h.append();
    const blocked = gate();
    const release = gate();
    const worker = h.worker([{
      name: "projection",
      async handle() {
        blocked.open();
        await release.opened;
      },
    }]);
    const running = worker.start();
    await until(() => h.openBatches("projection") === 1, { clock: h.clock });
    await blocked.opened;
    const probe = await h.rowsFree("projection", "w-1", 0);
    assert.equal(probe.through, false, "the fenced probe waits for the batch's row locks");
    release.open();
    await until(() => h.coordinator.checkpoint("projection") === 1, { clock: h.clock });
    // The probe's fence then sees the checkpoint moved.
    assert.equal(await probe.outcome, "checkpointMoved");
    await worker.stop();
    await running;
  });

  it("a failing handler: the events handled before it are checkpointed (not delivered again), it retries with back-off", async () => {
    const h = harness();
    await h.append(5);
    const delivered: number[] = [];
    let failures = 2;
    const failed: number[] = [];
    const worker = h.worker([{
      name: "mailer",
      mode: "detached",
      handle(event) {
        delivered.push(event.globalPosition);
        if (event.globalPosition === 3 && failures-- > 0) throw new Error("mail server down");
      },
    }], { observer: { batchFailed: (f) => failed.push(f.consecutiveFailures) } });
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("mailer") === 2, { clock: h.clock });
    await until(() => h.coordinator.checkpoint("mailer") === 5, { clock: h.clock, step: 250 });
    // 1 and 2 once; 3 three times (it fails twice); 4 and 5 once, after 3 went through.
    assert.deepEqual(delivered, [1, 2, 3, 3, 3, 4, 5]);
    // The first failure was not the batch's first event: uncounted (0); then 3 goes first.
    assert.deepEqual(failed, [0, 1]);
    await worker.stop();
    await running;
  });

  it("handleBatch: a failure redelivers the whole batch; the poison policy can skip the culprit", async () => {
    const h = harness();
    await h.append(4);
    const batches: number[][] = [];
    let poisoned = true;
    const worker = h.worker([{
      name: "relay",
      mode: "detached",
      onPoison: skipPoisonEvents({ afterAttempts: 2 }),
      handleBatch(events) {
        batches.push(events.map((e) => e.globalPosition));
        if (poisoned && events.some((e) => e.globalPosition === 2)) throw new Error("rejected");
      },
    }]);
    const running = worker.start();
    await until(() => h.coordinator.checkpoint("relay") === 4, { clock: h.clock, step: 250 });
    // The batch fails unattributed; one event at a time then handles 1 and fails on 2, and 1 is
    // checkpointed (never delivered again). 2 fails again in a batch, then alone twice, and is
    // skipped to the dead-letter table with the checkpoint. As a transactional consumer would,
    // except that 1 is not handled again.
    assert.deepEqual(batches, [[1, 2, 3, 4], [1], [2], [2, 3, 4], [2], [2], [3, 4]]);
    const [letter] = h.coordinator.deadLetters("relay");
    assert.deepEqual([letter.globalPosition, letter.skipped], [2, true]);
    // A redrive calls the detached handler too, with no transaction open.
    poisoned = false;
    const during: number[] = [];
    const redriven = await h.coordinator.retryDeadLetter({
      name: "relay",
      mode: "detached",
      handle(event) {
        during.push(h.openBatches("relay"), event.globalPosition);
      },
    }, 2);
    assert.equal(redriven.globalPosition, 2);
    assert.deepEqual(during, [0, 2]);
    assert.notEqual(h.coordinator.deadLetters("relay")[0].redrivenAt, null);
    // Redriven already, or never dead-lettered: refused before the handler runs.
    for (const position of [2, 3]) {
      await assert.rejects(
        h.coordinator.retryDeadLetter({
          name: "relay",
          mode: "detached",
          handle(event) {
            during.push(event.globalPosition);
          },
        }, position),
        { name: "DeadLetterNotFoundError" },
      );
    }
    assert.deepEqual(during, [0, 2]);
    await worker.stop();
    await running;
  });

  it("batchTimeout aborts the handler's signal; a handler ignoring it only delays the checkpoint", async () => {
    const h = harness();
    await h.append(2);
    const logged: string[] = [];
    const failed: unknown[] = [];
    const calls: number[] = [];
    const moves: string[] = [];
    let abortedAtReturn: unknown = null;
    const worker = h.worker([{
      name: "slow",
      mode: "detached",
      async handle(event, context) {
        calls.push(event.globalPosition);
        if (event.globalPosition !== 1) return;
        await h.clock.sleep(12_000); // past batchTimeout, ignoring the signal
        abortedAtReturn = context.signal.reason;
      },
    }], {
      batchTimeout: 5_000,
      logger: { error: (message) => logged.push(message) },
      observer: {
        batchFailed: (f) => failed.push(f.error),
        batchCommitted: (b) => moves.push(`${b.from}->${b.to}`),
      },
    });
    const running = worker.start();
    await until(() => calls.length === 1, { clock: h.clock });
    await h.clock.advance(6_000);
    assert.equal(h.coordinator.checkpoint("slow"), 0);
    assert.ok(logged.some((m) => m.includes("still running past batchTimeout")), logged.join());
    await until(() => h.coordinator.checkpoint("slow") === 2, { clock: h.clock, step: 1_000 });
    assert.ok(abortedAtReturn instanceof BatchTimeoutError, "the signal fired at batchTimeout");
    assert.deepEqual(calls, [1, 2], "not retried: handled once");
    // Past its signal the batch hands out no more events: 1 is saved, 2 goes in the next batch.
    assert.deepEqual(moves, ["0->1", "1->2"]);
    assert.deepEqual(failed, []);
    await worker.stop();
    await running;
  });

  it("a graceful stop aborts the handlers' signal and saves what they finished", async () => {
    const h = harness();
    await h.append(3);
    const delivered: number[] = [];
    const worker = h.worker([{
      name: "mailer",
      mode: "detached",
      async handle(event, context) {
        delivered.push(event.globalPosition);
        if (event.globalPosition !== 2) return;
        await new Promise((_, reject) =>
          context.signal.addEventListener("abort", () => reject(context.signal.reason))
        );
      },
    }]);
    const running = worker.start();
    await until(() => delivered.length === 2, { clock: h.clock });
    await worker.stop();
    await running;
    assert.deepEqual(delivered, [1, 2], "nothing handed out after the stop");
    assert.equal(h.coordinator.checkpoint("mailer"), 1, "1 was handled: checkpointed on stop");
  });

  it("at least once: the consumer moves while the handler runs — its signal aborts, the fence refuses, the new owner delivers again", async () => {
    const h = harness();
    const delivered: { worker: string; position: number }[] = [];
    const release = gate();
    const blocked = gate();
    let abortedAtReturn = false;
    const mailer = (): DetachedConsumer<Tx> => ({
      name: "mailer",
      mode: "detached",
      async handle(event, context) {
        delivered.push({ worker: context.workerId, position: event.globalPosition });
        if (context.workerId === "w-1") {
          blocked.open();
          await release.opened; // ignores its signal: returns after the consumer moved
          abortedAtReturn = context.signal.aborted;
        }
      },
    });
    const stopped: string[] = [];
    // Assignments re-read every second; the move is made by hand (no notification).
    const options = { rebalanceInterval: 600_000, assignmentPollInterval: 1_000 };
    const w1 = h.worker([mailer()], {
      ...options,
      observer: { consumerStopped: (s) => stopped.push(s.reason) },
    });
    const r1 = w1.start();
    await until(() => h.coordinator.assignment("mailer") === "w-1", { clock: h.clock });
    const id = crypto.randomUUID();
    await h.store.transaction((tx) =>
      h.store.append(tx, any(), [draft("User", id), draft("User", id)])
    );
    await until(() => delivered.length === 1, { clock: h.clock });
    await blocked.opened;
    const w2 = h.worker([mailer()], { ...options, workerId: "w-2" });
    const r2 = w2.start();
    await tick();
    h.coordinator.setAssignment("mailer", "w-2");
    await until(() => h.coordinator.checkpoint("mailer") === 2, { clock: h.clock });
    release.open();
    await until(() => stopped.length === 1, { clock: h.clock });
    assert.equal(abortedAtReturn, true, "w-1's handler was told the consumer moved");
    assert.equal(h.coordinator.checkpoint("mailer"), 2);
    // w-1 handed out nothing after its signal aborted; its checkpoint of 1 was refused.
    assert.deepEqual(delivered, [
      { worker: "w-1", position: 1 },
      { worker: "w-2", position: 1 },
      { worker: "w-2", position: 2 },
    ]);
    assert.ok(["ownershipLost", "released"].includes(stopped[0]), stopped[0]);
    await w1.stop();
    await w2.stop();
    await Promise.all([r1, r2]);
  });

  /** Positions 1 and 3 committed, 2 held open; a detached mailer noting what it is handed. */
  const behindAHole = async (options: WorkerRuntimeOptions) => {
    const h = harness();
    await h.append();
    const held = await holdAppend(h.store, draft("User"));
    await h.append();
    const delivered: number[] = [];
    const worker = h.worker([{
      name: "mailer",
      mode: "detached",
      handle: (event) => void delivered.push(event.globalPosition),
    }], options);
    return { h, held, delivered, worker, running: worker.start() };
  };

  it("the gap rule applies unchanged: a held append keeps the consumer waiting, then it goes in order", async () => {
    const { h, held, delivered, worker, running } = await behindAHole({
      batchPause: 100,
      gapCheckInterval: 100,
    });
    await until(() => h.coordinator.checkpoint("mailer") === 1, { clock: h.clock });
    await h.clock.advance(5_000);
    assert.deepEqual(delivered, [1], "3 is visible, but 2 is held: the consumer waits at 2");
    await held.commit();
    await until(() => h.coordinator.checkpoint("mailer") === 3, { clock: h.clock });
    assert.deepEqual(delivered, [1, 2, 3]);
    await worker.stop();
    await running;
  });

  it("maxGapWait: the skip is audited in the checkpoint's transaction", async () => {
    const { h, held, delivered, worker, running } = await behindAHole({
      maxGapWait: 10_000,
      batchPause: 500,
      gapCheckInterval: 500,
    });
    await until(() => h.coordinator.checkpoint("mailer") === 3, { clock: h.clock, step: 500 });
    assert.deepEqual(delivered, [1, 3]);
    assert.deepEqual(h.coordinator.gapSkips("mailer").map((s) => s.skippedPositions), [[2]]);
    await worker.stop();
    await running;
    await held.commit();
  });

  it("partitions: each partition runs detached, with no transaction open", async () => {
    const h = harness();
    await h.append(6);
    const seen: { partition: number; open: number; position: number; aggregate: string }[] = [];
    const worker = h.worker([{
      name: "mailer",
      mode: "detached",
      partitions: 2,
      handle(event, context) {
        seen.push({
          partition: context.partition!.index,
          open: h.openBatches(context.consumer),
          position: event.globalPosition,
          aggregate: event.aggregateId,
        });
      },
    }]);
    const running = worker.start();
    await until(
      () =>
        h.coordinator.checkpoint("mailer#0of2") === 6 &&
        h.coordinator.checkpoint("mailer#1of2") === 6,
      { clock: h.clock },
    );
    assert.deepEqual(seen.map((s) => s.position).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6]);
    assert.ok(seen.every((s) => s.open === 0));
    for (const s of seen) {
      assert.equal(s.partition, partitionIndex("User", s.aggregate, 2), "its own partition's");
    }
    await worker.stop();
    await running;
  });

  it('a detached consumer needs mode: "detached" in its type; the worker validates the mode', () => {
    const h = harness();
    assert.throws(
      () =>
        h.worker([{
          name: "x",
          mode: "eventual",
          handle() {},
        } as unknown as Consumer<Tx>]),
      { name: "WorkerConfigError", message: /mode of consumer "x"/ },
    );
  });
});
