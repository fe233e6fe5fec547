// The in-memory storage port behaves like a PostgreSQL connection where the protocol could go
// wrong: the multi-worker simulation can only catch a protocol defect the storage lets happen.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { StorageTransaction } from "../worker/core/storage.ts";
import { BatchClosedError } from "../worker/errors.ts";
import { FakeClock } from "./fake_clock.ts";
import { InMemoryStorage } from "./in_memory_storage.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "./in_memory_store.ts";

type Tx = StorageTransaction<InMemoryTransaction>;

const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

async function setup() {
  const clock = new FakeClock(1_000);
  const storage = new InMemoryStorage(new InMemoryEventStore(), { clock });
  await storage.transaction({}, async (tx) => {
    await tx.registerWorker("w-1", ["p"], 30_000);
    await tx.ensureConsumers([{ name: "p", startFrom: 0 }]);
  });
  storage.setAssignment("p", "w-1");
  /** A transaction holding the consumer's rows until `release()`. */
  const hold = () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const done = storage.transaction({}, async (tx) => {
      await tx.lockConsumer("p");
      await gate;
    });
    return { release, done };
  };
  return { clock, storage, hold };
}

describe("InMemoryStorage", () => {
  it("a handle refuses statements once closed; after the transaction ended, one still open runs on its own", async () => {
    const { storage } = await setup();
    const effects: string[] = [];
    let open = true;
    let handle!: InMemoryTransaction;
    await storage.transaction({}, (tx) => {
      handle = tx.handle("p", () => open);
      handle.onCommit(() => effects.push("with the batch"));
      return Promise.resolve();
    });
    assert.deepEqual(effects, ["with the batch"]);
    // A protocol that forgot to close the handle: the statement commits at once, outside any batch.
    handle.onCommit(() => effects.push("on its own"));
    assert.deepEqual(effects, ["with the batch", "on its own"]);
    open = false;
    assert.throws(() => handle.onCommit(() => effects.push("refused")), BatchClosedError);
    await storage.transaction({}, (tx) => {
      const rolledBack = tx.handle("p", () => true);
      rolledBack.onCommit(() => effects.push("rolled back"));
      return Promise.reject(new Error("rolled back"));
    }).catch(() => {});
    assert.deepEqual(effects, ["with the batch", "on its own"]);
  });

  it("row operations on an ended transaction run in auto-commit", async () => {
    const { storage } = await setup();
    let kept!: Tx;
    await storage.transaction({}, async (tx) => {
      kept = tx;
      await tx.lockConsumer("p");
      throw new Error("given up");
    }).catch(() => {});
    // The checkpoint lands without the batch it belonged to.
    await kept.saveCheckpoint("p", 5, 0);
    assert.equal(storage.checkpoint("p"), 5);
  });

  it("writes apply at commit; a failed statement turns the commit into a rollback", async () => {
    const { storage } = await setup();
    await assert.rejects(
      storage.transaction({}, async (tx) => {
        await tx.saveCheckpoint("p", 3, 0);
        assert.equal(storage.checkpoint("p"), 0, "not before commit");
        await tx.saveCheckpoint("p", 9, 7).catch(() => {}); // matched no row; error swallowed
      }),
      /aborted/,
    );
    assert.equal(storage.checkpoint("p"), 0);
    await storage.transaction({}, (tx) => tx.saveCheckpoint("p", 3, 0));
    assert.equal(storage.checkpoint("p"), 3);
  });

  it("a consumer's rows stay locked until the transaction ends; lock waits time out; cancel fails the waiting statement", async () => {
    const { clock, storage, hold } = await setup();
    const batch = hold();
    await turn();
    const timedOut = assert.rejects(
      storage.transaction({ lockTimeout: 1_000 }, (tx) => tx.lockAssignments(["p"])),
      /lock timeout/,
    );
    await clock.advance(1_000);
    await timedOut;
    await assert.rejects(
      storage.transaction({}, async (tx) => {
        const waiting = tx.lockAssignments(["p"]);
        await tx.cancel();
        await assert.rejects(waiting, /canceling statement/);
        assert.equal(tx.lost, false, "cancel does not end the transaction");
      }),
      /aborted/,
    );
    let granted = false;
    const next = storage.transaction(
      {},
      (tx) => tx.lockAssignments(["p"]).then(() => granted = true),
    );
    await turn();
    assert.equal(granted, false);
    batch.release();
    await batch.done;
    await next;
    assert.equal(granted, true);
  });

  it("deleting a registration waits for the batches holding its consumers, as the cascade does", async () => {
    const { storage, hold } = await setup();
    const batch = hold();
    await turn();
    let deleted: boolean | null = null;
    const deleting = storage.rows.deleteWorker("w-1").then((d) => (deleted = d));
    await turn();
    assert.equal(deleted, null);
    assert.equal(storage.registrations().has("w-1"), true);
    batch.release();
    await batch.done;
    await deleting;
    assert.equal(deleted, true);
    assert.equal(storage.assignment("p"), null);
  });

  it("assigning to a worker being deleted waits for the deletion, then fails (the foreign key)", async () => {
    const { storage, hold } = await setup();
    const batch = hold();
    await turn();
    const deleting = storage.rows.deleteWorker("w-1");
    let failed: unknown = null;
    const assigning = storage.transaction(
      {},
      (tx) => tx.writeAssignments([{ consumer: "q", from: null, to: "w-1" }]),
    ).catch((error) => (failed = error));
    await turn();
    assert.equal(failed, null, "the assignment waits for the deletion");
    batch.release();
    await Promise.all([batch.done, deleting, assigning]);
    assert.match(String(failed), /not registered/);
  });

  it("idleTimeout ends a silent transaction: lost, rolled back, its rows freed, later statements failing", async () => {
    const { clock, storage } = await setup();
    let kept!: Tx;
    const frozen = storage.transaction({}, async (tx) => {
      kept = tx;
      await tx.lockConsumer("p", { idleTimeout: 1_000 });
      await tx.saveCheckpoint("p", 4, 0);
      await new Promise(() => {}); // a frozen process
    });
    const rejected = assert.rejects(frozen, /ended by the server/);
    await clock.advance(1_000);
    await rejected;
    assert.equal(kept.lost, true);
    await assert.rejects(kept.readCheckpoint("p"), /ended by the server/);
    assert.equal(storage.checkpoint("p"), 0);
    await storage.transaction({}, (tx) => tx.lockConsumer("p"));
  });

  it("terminate ends a connection: the transaction rejects, lost", async () => {
    const { storage } = await setup();
    const done = storage.transaction({}, async (tx) => {
      await tx.saveCheckpoint("p", 2, 0);
      storage.terminate(tx, new Error("dropped"));
      assert.equal(tx.lost, true);
      await assert.rejects(tx.readCheckpoint("p"), /dropped/);
    });
    await assert.rejects(done, /dropped/);
    assert.equal(storage.checkpoint("p"), 0);
  });

  it("two transactions waiting for each other: one fails with a deadlock", async () => {
    const { storage } = await setup();
    await storage.transaction({}, (tx) => tx.ensureConsumers([{ name: "q", startFrom: 0 }]));
    let first!: () => void;
    const firstLocked = new Promise<void>((resolve) => (first = resolve));
    const a = storage.transaction({}, async (tx) => {
      await tx.lockAssignments(["p"]);
      first();
      await turn();
      await tx.lockAssignments(["q"]);
    });
    const b = storage.transaction({}, async (tx) => {
      await firstLocked;
      await tx.lockAssignments(["q"]);
      await tx.lockAssignments(["p"]);
    });
    const outcomes = await Promise.allSettled([a, b]);
    assert.deepEqual(outcomes.map((o) => o.status).sort(), ["fulfilled", "rejected"]);
    assert.match(
      String((outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult).reason),
      /deadlock/,
    );
  });

  it("notifications are delivered after commit, never on rollback", async () => {
    const { storage } = await setup();
    const heard: unknown[] = [];
    await storage.listen("coordination", (change) => heard.push(change), () => {});
    await storage.transaction({}, (tx) =>
      tx.notify("membership").then(() => {
        throw new Error("rolled back");
      })).catch(() => {});
    await storage.transaction({}, async (tx) => {
      await tx.notify("assignments");
      await turn();
      assert.deepEqual(heard, [], "not before commit");
    });
    await turn();
    assert.deepEqual(heard, ["assignments"]);
  });

  it("a lease rebalance locks the lease row: a competing acquire waits for it", async () => {
    const { storage } = await setup();
    await storage.transaction(
      {},
      (tx) => tx.registerWorker("w-2", ["p"], 30_000),
    );
    const l1 = storage.leadership("w-1", { strategy: "lease", leaseMs: 10_000 });
    const l2 = storage.leadership("w-2", { strategy: "lease", leaseMs: 10_000 });
    assert.equal(await l1.acquire(), true);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const rebalance = l1.transaction({}, () => gate.then(() => "done"));
    await turn();
    storage.expireLease();
    let answered: boolean | null = null;
    const competing = l2.acquire().then((held) => (answered = held));
    await turn();
    assert.equal(answered, null, "the acquire waits for the rebalance's lock");
    release();
    assert.equal(await rebalance, "done");
    await competing;
    assert.equal(answered, true);
    assert.equal(await l1.transaction({}, () => Promise.resolve("not run")), null);
  });

  it("an advisory leader's session ended by the server takes its running transaction along", async () => {
    const { storage } = await setup();
    const leadership = storage.leadership("w-1", { strategy: "advisory", leaseMs: 0 });
    assert.equal(await leadership.acquire(), true);
    const running = leadership.transaction({}, () => new Promise(() => {}));
    await turn();
    assert.equal(storage.terminateLeaderSession("w-1"), true);
    await assert.rejects(running, /leader's session/);
    assert.equal(await leadership.acquire(), false);
  });
});
