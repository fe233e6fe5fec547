// Partitioned consumers: the hash (known answers), the names, the expansion, the shape check, the
// checkpoints of a partitioned name; then whole in-memory workers: every event handled exactly
// once by the partition its aggregate hashes to, per-aggregate order, partitions spread over
// workers, the gap rule intact, a changed partition count refused, redrive, waitForPosition.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { any } from "../../store/expected_version.ts";
import type { PersistedEvent } from "../../store/types.ts";
import { FakeClock } from "../../testing/fake_clock.ts";
import { InMemoryCoordinator, InMemoryWorker } from "../../testing/in_memory_coordinator.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "../../testing/in_memory_store.ts";
import { PoisonEventError, WorkerConfigError, WorkerSetupError } from "../errors.ts";
import type { WorkerRuntimeOptions } from "../options.ts";
import { holdAppend, until } from "../support_test.ts";
import type { Consumer, HandlerContext } from "../types.ts";
import {
  checkPartitionShapes,
  checkpointsByName,
  expandPartitions,
  fnv1a32,
  parsePartitionName,
  partitionIndex,
  partitionName,
  partitionOf,
  windowSize,
} from "./partitions.ts";

type Tx = InMemoryTransaction;

const event = (aggregateType: string, aggregateId: string) => ({
  aggregateType,
  aggregateId,
  eventType: "Happened",
  payload: new Uint8Array([1]),
});

describe("partition hash", () => {
  it("is FNV-1a 32-bit: the reference vectors", () => {
    assert.equal(fnv1a32(""), 0x811c9dc5);
    assert.equal(fnv1a32("a"), 0xe40c292c);
    assert.equal(fnv1a32("foobar"), 0xbf9cf968);
  });

  it("hashes the UTF-8 bytes of type, NUL, id: known answers (computed independently)", () => {
    // [type, id, hash, % 2, % 3, % 4, % 7, % 1024], from Python's bytes.encode("utf-8").
    const vectors: Array<[string, string, number, number, number, number, number, number]> = [
      ["Order", "o-1", 0x30180d78, 0, 1, 0, 2, 376],
      ["Order", "o-2", 0x33181231, 1, 1, 1, 3, 561],
      ["Order", "order-42", 0xae966284, 0, 2, 0, 4, 644],
      ["User", "u-1", 0xaab5d917, 1, 0, 3, 2, 279],
      ["Zählung", "ü-€-😀", 0x1d8fcafe, 0, 1, 2, 5, 766],
    ];
    for (const [type, id, hash, ...mods] of vectors) {
      assert.equal(fnv1a32(`${type}\u0000${id}`), hash, `${type}/${id}`);
      [2, 3, 4, 7, 1024].forEach((count, i) => {
        assert.equal(partitionIndex(type, id, count), mods[i], `${type}/${id} % ${count}`);
      });
    }
  });

  it("encodes as TextEncoder does (a lone surrogate as U+FFFD)", () => {
    const encoder = new TextEncoder();
    const reference = (text: string) => {
      let hash = 0x811c9dc5;
      for (const b of encoder.encode(text)) hash = Math.imul(hash ^ b, 0x01000193);
      return hash >>> 0;
    };
    for (
      const text of ["", "abc", "ä", "€", "😀", "a\ud800b", "\udc00", "x\ud83d", "日本語-🇪🇺"]
    ) {
      assert.equal(fnv1a32(text), reference(text), JSON.stringify(text));
    }
    assert.equal(fnv1a32("\ufffd"), 0x03479c4a);
  });
});

describe("partition names", () => {
  it("name#<index>of<count>, parsed back; other names are not partitions", () => {
    assert.equal(partitionName("orders", 2, 4), "orders#2of4");
    assert.deepEqual(parsePartitionName("orders#2of4"), { consumer: "orders", index: 2, count: 4 });
    assert.deepEqual(parsePartitionName("a#b#0of2"), { consumer: "a#b", index: 0, count: 2 });
    for (const name of ["orders", "orders#4of4", "orders#02of4", "orders#1of1", "#0of2", "o#1of"]) {
      assert.equal(parsePartitionName(name), null, name);
    }
  });

  it("expansion: N proxies named by partition, filters and methods read from the declared consumer", async () => {
    class Counter implements Consumer<Tx> {
      readonly name = "counted";
      readonly partitions = 3;
      aggregateTypes: string[] = ["Order"];
      #seen = 0;
      handle(): void {
        this.#seen++;
      }
      get seen(): number {
        return this.#seen;
      }
    }
    const declared = new Counter();
    const plain: Consumer<Tx> = Object.freeze({ name: "plain", handle() {} });
    const expanded = expandPartitions<Tx>([plain, declared]);
    assert.deepEqual(expanded.map((c) => c.name), [
      "plain",
      "counted#0of3",
      "counted#1of3",
      "counted#2of3",
    ]);
    assert.equal(expanded[0], plain, "an unpartitioned consumer runs as itself");
    assert.equal(partitionOf(plain), null);
    assert.deepEqual(partitionOf(expanded[2]), { consumer: "counted", index: 1, count: 3 });
    assert.equal(expanded[1].partitions, undefined);
    declared.aggregateTypes = ["Account"];
    assert.deepEqual(expanded[1].aggregateTypes, ["Account"], "read at each use");
    for (const partition of expanded.slice(1)) {
      await partition.handle!(
        undefined as unknown as Tx,
        undefined as unknown as PersistedEvent,
        undefined as unknown as HandlerContext,
      );
    }
    assert.equal(declared.seen, 3, "methods run on the declared object (private fields too)");
    // A frozen declared consumer partitions too (the proxy answers its own name).
    const frozen = expandPartitions<Tx>([Object.freeze({ name: "f", partitions: 2, handle() {} })]);
    assert.deepEqual(frozen.map((c) => c.name), ["f#0of2", "f#1of2"]);
  });

  it("a declared name ending like a partition's is refused", () => {
    const store = new InMemoryEventStore();
    const coordinator = new InMemoryCoordinator(store);
    for (const name of ["orders#0of4", "x#12of3"]) {
      assert.throws(
        () => new InMemoryWorker(coordinator, [{ name, handle() {} }]),
        (error: unknown) =>
          error instanceof WorkerConfigError && /reserves for partitioned/.test(error.message),
      );
    }
    new InMemoryWorker(coordinator, [{ name: "orders#4", handle() {} }]);
    assert.throws(
      () => new InMemoryWorker(coordinator, [{ name: "o", partitions: 0, handle() {} }]),
      WorkerConfigError,
    );
  });

  it("the shape check refuses another partition count, and partitioning an unpartitioned consumer", () => {
    checkPartitionShapes([{ name: "a", partitions: 2 }], ["a#0of2", "a#1of2", "b", "a#b"]);
    checkPartitionShapes([{ name: "a" }, { name: "a#b" }], ["a", "a#b", "x#0of2"]);
    checkPartitionShapes([{ name: "new", partitions: 4 }], []);
    const refused = (
      consumers: Array<{ name: string; partitions?: number }>,
      existing: string[],
      message: RegExp,
    ) =>
      assert.throws(
        () => checkPartitionShapes(consumers, existing),
        (error: unknown) => error instanceof WorkerSetupError && message.test(error.message),
      );
    refused(
      [{ name: "a", partitions: 3 }],
      ["a#0of2", "a#1of2"],
      /declared with 3 partitions.*as 2 partitions/,
    );
    refused([{ name: "a", partitions: 2 }], ["a"], /as unpartitioned/);
    refused([{ name: "a" }], ["a#0of2", "a#1of2"], /declared unpartitioned.*as 2 partitions/);
    refused([{ name: "a", partitions: 2 }], ["a", "a#0of2", "a#1of2", "a#0of3"], /both as/);
  });

  it("a partition's window is batchSize × count, at most 10,000 and never below batchSize", () => {
    const of = (count: number) => ({ consumer: "c", index: 0, count });
    assert.equal(windowSize(100, null), 100);
    assert.equal(windowSize(100, of(4)), 400);
    assert.equal(windowSize(100, of(1_024)), 10_000);
    assert.equal(windowSize(50_000, of(4)), 50_000);
  });

  it("checkpointsByName: its own row, else the lowest of its partitions", () => {
    const rows = new Map([
      ["plain", 7],
      ["orders#0of3", 12],
      ["orders#1of3", 9],
      ["orders#2of3", 15],
      ["odd#0of2", 1],
      ["odd#1of3", 1],
      ["gap#0of3", 1],
      ["gap#2of3", 1],
    ]);
    assert.deepEqual(
      checkpointsByName(["plain", "orders", "orders#2of3", "missing"], rows),
      new Map([["plain", 7], ["orders", 9], ["orders#2of3", 15]]),
    );
    assert.throws(() => checkpointsByName(["odd"], rows), /several partition counts \(2, 3\)/);
    assert.throws(() => checkpointsByName(["gap"], rows), /no checkpoint for gap#1of3/);
  });
});

describe("partitioned consumers in memory", () => {
  function fleet() {
    const clock = new FakeClock(1_700_000_000_000);
    const store = new InMemoryEventStore();
    const coordinator = new InMemoryCoordinator(store, { clock });
    const make = (id: string, consumers: Consumer<Tx>[], extra: WorkerRuntimeOptions = {}) =>
      new InMemoryWorker(coordinator, consumers, {
        clock,
        workerId: id,
        pollInterval: 100,
        maxPollInterval: 400,
        dispatcherInterval: 50,
        batchSize: 7,
        batchPause: 0,
        gapCheckInterval: 0,
        rebalanceInterval: 200,
        heartbeatInterval: 200,
        heartbeatTimeout: 1_000,
        assignmentPollInterval: 100,
        ...extra,
      });
    /** Appends one event to each of `ids`, in order, `rounds` times. */
    const appendRounds = async (ids: string[], rounds: number, type = "Order") => {
      for (let r = 0; r < rounds; r++) {
        for (const id of ids) await store.append(store, any(), [event(type, id)]);
      }
    };
    /** Every consumer registered has its checkpoint at `position` (and there is one at least). */
    const allAt = async (position: number) => {
      const { consumers } = await coordinator.status();
      return consumers.length > 0 && consumers.every((c) => c.checkpoint === position);
    };
    return { clock, store, coordinator, make, appendRounds, allAt };
  }

  /** A consumer recording (partition, position, aggregate, version) on commit. */
  function recorder(name: string, extra: Partial<Consumer<Tx>> = {}) {
    const handled: Array<{
      consumer: string;
      index: number | undefined;
      count: number | undefined;
      position: number;
      aggregate: string;
      version: number;
      worker: string;
    }> = [];
    const consumer: Consumer<Tx> = {
      name,
      handle(tx, event, context) {
        tx.onCommit(() =>
          handled.push({
            consumer: context.consumer,
            index: context.partition?.index,
            count: context.partition?.count,
            position: event.globalPosition,
            aggregate: `${event.aggregateType}/${event.aggregateId}`,
            version: event.aggregateVersion,
            worker: context.workerId,
          })
        );
      },
      ...extra,
    };
    return { consumer, handled };
  }

  it("two workers share 4 partitions: each event once, by its aggregate's partition, in per-aggregate order", async () => {
    const f = fleet();
    const ids = Array.from({ length: 25 }, (_, i) => `o-${i}`);
    const r = recorder("orders", { partitions: 4 });
    const w1 = f.make("w-1", [r.consumer]);
    const w2 = f.make("w-2", [r.consumer]);
    const running = [w1.start(), w2.start()];
    await f.appendRounds(ids, 4);
    await until(() => w1.runningConsumers.length === 2 && w2.runningConsumers.length === 2, {
      clock: f.clock,
      step: 50,
      what: "2 partitions per worker",
    });
    await f.appendRounds(ids, 4);
    await until(
      () => f.allAt(200),
      {
        clock: f.clock,
        step: 50,
        what: "every partition at 200",
      },
    );
    const status = await f.coordinator.status();
    assert.deepEqual(status.consumers.map((c) => c.name), [
      "orders#0of4",
      "orders#1of4",
      "orders#2of4",
      "orders#3of4",
    ]);
    assert.deepEqual(
      status.workers.map((w) => w.consumers),
      [status.consumers.map((c) => c.name), status.consumers.map((c) => c.name)],
    );
    // Every position exactly once, by the partition its aggregate hashes to.
    assert.deepEqual(
      r.handled.map((h) => h.position).sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    for (const h of r.handled) {
      const [type, id] = h.aggregate.split("/");
      assert.equal(h.count, 4);
      assert.equal(h.index, partitionIndex(type, id, 4), h.aggregate);
      assert.equal(h.consumer, `orders#${h.index}of4`);
    }
    // Per aggregate: versions 1..8 in order.
    const versions = new Map<string, number[]>();
    for (const h of r.handled) {
      versions.set(h.aggregate, [...versions.get(h.aggregate) ?? [], h.version]);
    }
    for (const [aggregate, list] of versions) {
      assert.deepEqual(list, [1, 2, 3, 4, 5, 6, 7, 8], aggregate);
    }
    // Both workers handled some (the partitions are spread).
    assert.deepEqual(new Set(r.handled.map((h) => h.worker)), new Set(["w-1", "w-2"]));
    assert.equal(new Set(r.handled.map((h) => h.index)).size, 4, "every partition got aggregates");
    // The partition names do not leak into waitForPosition: the declared name waits for all.
    await w2.waitForPosition(200, { consumers: ["orders"], timeout: 0 });
    await w2.waitForPosition(200, { consumers: ["orders#3of4"], timeout: 0 });
    await Promise.all([w1.stop(), w2.stop()]);
    await Promise.all(running);
  });

  it("a partition's batches hold about batchSize of its own events (its window is scaled)", async () => {
    const f = fleet();
    // Order/o-1 is in partition 0 of 2, Order/o-2 in partition 1 (see the known answers).
    await f.appendRounds(["o-1", "o-2"], 20);
    const batches = new Map<number, number[]>();
    const w = f.make("w-1", [{
      name: "batched",
      partitions: 2,
      handleBatch(tx, events, context) {
        tx.onCommit(() => {
          const index = context.partition!.index;
          batches.set(index, [...batches.get(index) ?? [], events.length]);
        });
      },
    }], { batchSize: 5 });
    const running = w.start();
    await until(() => f.allAt(40), { clock: f.clock, step: 50 });
    await w.stop();
    await running;
    assert.deepEqual(batches, new Map([[0, [5, 5, 5, 5]], [1, [5, 5, 5, 5]]]));
  });

  it("filters and partitions combine; the gap rule still holds every partition at a hole", async () => {
    const f = fleet();
    const r = recorder("orders", { partitions: 3, aggregateTypes: ["Order"] });
    // At a hole a consumer re-checks every batchPause.
    const w = f.make("w-1", [r.consumer], { batchPause: 50, gapCheckInterval: 50 });
    const running = w.start();
    await f.appendRounds(["a", "b", "c", "d"], 1, "Order");
    await f.appendRounds(["x", "y"], 1, "Account");
    // A held append leaves a hole at 7, with 8 committed after it.
    const held = await holdAppend(f.store, event("Order", "late"));
    await f.appendRounds(["e"], 1, "Order");
    await until(
      () => f.allAt(6),
      { clock: f.clock, step: 50, what: "every partition up to the hole" },
    );
    await f.clock.advance(2_000);
    for (const c of (await f.coordinator.status()).consumers) {
      assert.equal(c.checkpoint, 6, `${c.name} waits at the hole, whoever the event is for`);
    }
    await held.commit();
    await until(
      () => f.allAt(8),
      { clock: f.clock, step: 50, what: "past the hole" },
    );
    assert.deepEqual(r.handled.map((h) => h.aggregate).sort(), [
      "Order/a",
      "Order/b",
      "Order/c",
      "Order/d",
      "Order/e",
      "Order/late",
    ]);
    const late = r.handled.find((h) => h.aggregate === "Order/late")!;
    assert.equal(late.position, 7);
    assert.equal(late.index, partitionIndex("Order", "late", 3));
    await w.stop();
    await running;
  });

  it("a changed partition count is refused at start; the old count still runs", async () => {
    const f = fleet();
    await f.appendRounds(["a", "b"], 2);
    const two = recorder("orders", { partitions: 2 });
    const w1 = f.make("w-1", [two.consumer]);
    const r1 = w1.start();
    await until(() => f.coordinator.checkpoint("orders#1of2") === 4, { clock: f.clock, step: 50 });
    await w1.stop();
    await r1;
    for (const partitions of [3, undefined, 1]) {
      const w = f.make("w-2", [recorder("orders", { partitions }).consumer]);
      await assert.rejects(
        w.start(),
        (error: unknown) =>
          error instanceof WorkerSetupError &&
          /"orders" is declared .* as 2 partitions/.test(error.message),
        `partitions ${partitions}`,
      );
    }
    assert.deepEqual([...f.coordinator.registrations().keys()], [], "nothing registered");
    const again = f.make("w-3", [two.consumer]);
    const r3 = again.start();
    await f.appendRounds(["c"], 1);
    await until(() => f.coordinator.checkpoint("orders#0of2") === 5, { clock: f.clock, step: 50 });
    await again.stop();
    await r3;
    assert.deepEqual(two.handled.map((h) => h.position).sort((a, b) => a - b), [1, 2, 3, 4, 5]);
  });

  it("a poison event dead-letters under its partition; the declared consumer redrives it", async () => {
    const f = fleet();
    await f.appendRounds(["a", "b", "c"], 1);
    let poisoned = true;
    const redriven: Array<{ position: number; consumer: string; index?: number }> = [];
    const consumer: Consumer<Tx> = {
      name: "orders",
      partitions: 2,
      onPoison: () => "skip",
      handle(_tx, event, context) {
        if (event.globalPosition === 2 && poisoned) throw new PoisonEventError("bad");
        if (!poisoned) {
          redriven.push({
            position: event.globalPosition,
            consumer: context.consumer,
            index: context.partition?.index,
          });
        }
      },
    };
    const w = f.make("w-1", [consumer]);
    const running = w.start();
    await until(
      () => f.allAt(3),
      { clock: f.clock, step: 50 },
    );
    await w.stop();
    await running;
    const index = partitionIndex("Order", "b", 2);
    const letters = f.coordinator.deadLetters();
    assert.deepEqual(letters.map((l) => [l.consumer, l.globalPosition]), [[
      `orders#${index}of2`,
      2,
    ]]);
    poisoned = false;
    await f.coordinator.retryDeadLetter(consumer, 2);
    assert.deepEqual(redriven, [{ position: 2, consumer: `orders#${index}of2`, index }]);
  });
});
