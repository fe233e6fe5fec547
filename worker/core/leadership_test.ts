// The leader loop on a scripted election and a fake clock: promotion, rebalance only while
// leading, demotion on each rule (another leader, an unconfirmed rebalance, a failed advisory
// session, a lease that ran out locally), and release at shutdown. Then the whole runtime in
// memory: several workers, leadership handover, and the heartbeat rule.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../testing/fake_clock.ts";
import { InMemoryCoordinator, InMemoryWorker } from "../../testing/in_memory_coordinator.ts";
import { InMemoryEventStore } from "../../testing/in_memory_store.ts";
import { WorkerRegistrationLostError } from "../errors.ts";
import { resolveRuntimeOptions, type WorkerRuntimeOptions } from "../options.ts";
import { until } from "../support_test.ts";
import type { AssignmentChange } from "./assignment.ts";
import type { LeaderElection } from "./coordination.ts";
import { LeaderLoop } from "./leadership.ts";
import { Wakeup } from "./wakeup.ts";

type Step = boolean | Error;

/** An election that answers `acquire` from a script and records what the loop did. */
function scripted(script: Step[], rebalances: Array<AssignmentChange[] | null> = []) {
  const calls: string[] = [];
  const election: LeaderElection = {
    acquire() {
      const next = script.length > 0 ? script.shift()! : true;
      calls.push(`acquire:${next instanceof Error ? "error" : next}`);
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    },
    rebalance() {
      calls.push("rebalance");
      return Promise.resolve(rebalances.length > 0 ? rebalances.shift()! : []);
    },
    release() {
      calls.push("release");
      return Promise.resolve();
    },
  };
  return { election, calls };
}

function loop(election: LeaderElection, extra: WorkerRuntimeOptions = {}) {
  const clock = new FakeClock(0);
  const changes: string[] = [];
  const controller = new AbortController();
  const options = resolveRuntimeOptions({
    clock,
    workerId: "w-1",
    rebalanceInterval: 1_000,
    heartbeatTimeout: 3_000,
    heartbeatInterval: 1_000,
    observer: {
      leadershipChanged: (c) => changes.push(`${c.leader ? "leader" : "demoted"}: ${c.reason}`),
    },
    ...extra,
  });
  const wakeup = new Wakeup();
  const leader = new LeaderLoop({ election, options, wakeup, signal: controller.signal });
  return { clock, changes, controller, leader, wakeup };
}

describe("LeaderLoop", () => {
  it("cycles every rebalanceInterval, rebalances only while leading, and wakes early on a signal", async () => {
    const { election, calls } = scripted([false, true, true]);
    const l = loop(election);
    const running = l.leader.run();
    await l.clock.advance(0);
    assert.deepEqual(calls, ["acquire:false"]);
    await l.clock.advance(1_000);
    assert.deepEqual(calls.slice(1), ["acquire:true", "rebalance"]);
    assert.equal(l.leader.isLeader, true);
    l.wakeup.signal(); // a membership change: a cycle now, not in a second
    await l.clock.advance(0);
    assert.deepEqual(calls.slice(3), ["acquire:true", "rebalance"]);
    l.controller.abort();
    await running;
    assert.equal(calls.at(-1), "release");
    assert.deepEqual(l.changes, ["leader: acquired (advisory)", "demoted: worker stopped"]);
  });

  it("demotes when another worker holds it, and when a rebalance cannot confirm leadership", async () => {
    const { election } = scripted([true, false, true], [[], null]);
    const l = loop(election);
    const running = l.leader.run();
    await l.clock.advance(0);
    await l.clock.advance(1_000);
    await l.clock.advance(1_000);
    assert.deepEqual(l.changes, [
      "leader: acquired (advisory)",
      "demoted: leadership taken by another worker or lost",
      "leader: acquired (advisory)",
      "demoted: leadership could not be confirmed in the rebalance transaction",
    ]);
    l.controller.abort();
    await running;
  });

  it("advisory: a failing session demotes at once", async () => {
    const { election } = scripted([true, new Error("connection lost")]);
    const l = loop(election);
    const running = l.leader.run();
    await l.clock.advance(1_000);
    assert.equal(l.leader.isLeader, false);
    assert.deepEqual(l.changes.at(-1), "demoted: the leader session failed");
    l.controller.abort();
    await running;
  });

  it("lease: errors keep the lease until it runs out by the local clock, counted from the renewal's send", async () => {
    const failure = () => new Error("database unreachable");
    const { election } = scripted([true, failure(), failure(), failure(), failure()]);
    const l = loop(election, { leaderStrategy: "lease" });
    const running = l.leader.run();
    await l.clock.advance(0); // renewed at 0; the lease lasts heartbeatTimeout (3 s)
    await l.clock.advance(2_000); // two failed renewals: still leader
    assert.equal(l.leader.isLeader, true);
    await l.clock.advance(1_000); // 3 s after the last successful send: demoted
    assert.equal(l.leader.isLeader, false);
    assert.deepEqual(l.changes.at(-1), "demoted: the lease ran out before it could be renewed");
    l.controller.abort();
    await running;
  });

  it("a rebalance that fails is retried next cycle without demotion", async () => {
    let attempts = 0;
    const election: LeaderElection = {
      acquire: () => Promise.resolve(true),
      rebalance: () =>
        ++attempts === 1
          ? Promise.reject(new Error("lock timeout"))
          : Promise.resolve([{ consumer: "a", from: null, to: "w-1" }]),
      release: () => Promise.resolve(),
    };
    const rebalanced: number[] = [];
    const l = loop(election, {
      observer: { rebalanced: (r) => rebalanced.push(r.changes.length) },
    });
    const running = l.leader.run();
    await l.clock.advance(1_000);
    assert.equal(attempts, 2);
    assert.equal(l.leader.isLeader, true);
    assert.deepEqual(rebalanced, [1]);
    l.controller.abort();
    await running;
  });
});

describe("several in-memory workers", () => {
  function fleet(strategy: "advisory" | "lease") {
    const clock = new FakeClock(0);
    const coordinator = new InMemoryCoordinator(new InMemoryEventStore(), { clock });
    const make = (id: string, names: string[], extra: WorkerRuntimeOptions = {}) =>
      new InMemoryWorker(coordinator, names.map((name) => ({ name, handle() {} })), {
        clock,
        workerId: id,
        leaderStrategy: strategy,
        rebalanceInterval: 1_000,
        heartbeatInterval: 500,
        heartbeatTimeout: 2_000,
        ...extra,
      });
    return { clock, coordinator, make };
  }

  for (const strategy of ["advisory", "lease"] as const) {
    it(`${strategy}: the first worker leads; a leader that stops hands over at once`, async () => {
      const f = fleet(strategy);
      const w1 = f.make("w-1", ["a", "b", "c", "d"]);
      const w2 = f.make("w-2", ["a", "b", "c", "d"]);
      const r1 = w1.start();
      await until(() => f.coordinator.leader()?.workerId === "w-1", { clock: f.clock });
      const r2 = w2.start();
      await until(() => w2.runningConsumers.length === 2, { clock: f.clock });
      assert.deepEqual([...w1.runningConsumers].sort().length, 2);
      const before = f.clock.now();
      await w1.stop();
      await r1;
      await until(() => w2.runningConsumers.length === 4, { clock: f.clock });
      assert.equal(f.coordinator.leader()?.workerId, "w-2");
      // Notifications, not the heartbeat timeout, moved them.
      assert.ok(f.clock.now() - before < 2_000, `${f.clock.now() - before} ms`);
      await w2.stop();
      await r2;
    });
  }

  it("a worker whose registration is gone at two heartbeats stops with WorkerRegistrationLostError", async () => {
    const f = fleet("advisory");
    const w1 = f.make("w-1", ["a"]);
    const outcome = w1.start().then(() => null, (error) => error);
    await until(() => w1.runningConsumers.length === 1, { clock: f.clock });
    f.coordinator.deleteWorker("w-1");
    await until(() => !w1.running, { clock: f.clock, step: 100 });
    const error = await outcome;
    assert.ok(error instanceof WorkerRegistrationLostError, String(error));
    assert.equal(error.workerId, "w-1");
  });

  it("heterogeneous: a consumer only one worker registered runs there", async () => {
    const f = fleet("lease");
    const w1 = f.make("w-1", ["shared", "only-1"]);
    const w2 = f.make("w-2", ["shared", "only-2"]);
    const r1 = w1.start();
    const r2 = w2.start();
    await until(
      () => w1.runningConsumers.includes("only-1") && w2.runningConsumers.includes("only-2"),
      { clock: f.clock },
    );
    assert.equal(f.coordinator.assignment("only-1"), "w-1");
    assert.equal(f.coordinator.assignment("only-2"), "w-2");
    await Promise.all([w1.stop(), w2.stop()]);
    await Promise.all([r1, r2]);
    assert.equal(f.coordinator.assignment("only-1"), null, "a graceful stop frees its consumers");
  });
});
