import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../testing/fake_clock.ts";
import { WorkerConfigError } from "./errors.ts";
import { checkConsumers, resolveRuntimeOptions, WORKER_DEFAULTS } from "./options.ts";
import { defaultPoisonPolicy } from "./core/poison.ts";

describe("resolveRuntimeOptions", () => {
  it("applies the documented defaults (docs/worker.md)", () => {
    const o = resolveRuntimeOptions();
    assert.deepEqual(
      {
        batchSize: o.batchSize,
        pollInterval: o.pollInterval,
        maxPollInterval: o.maxPollInterval,
        batchPause: o.batchPause,
        batchTimeout: o.batchTimeout,
        maxConsecutiveFailures: o.maxConsecutiveFailures,
        heartbeatInterval: o.heartbeatInterval,
        heartbeatTimeout: o.heartbeatTimeout,
        rebalanceInterval: o.rebalanceInterval,
        assignmentPollInterval: o.assignmentPollInterval,
        dispatcher: o.dispatcher,
        dispatcherInterval: o.dispatcherInterval,
        leaderStrategy: o.leaderStrategy,
        maxGapWait: o.maxGapWait,
      },
      {
        batchSize: 100,
        pollInterval: 1_000,
        maxPollInterval: 30_000,
        batchPause: 200,
        batchTimeout: 30_000,
        maxConsecutiveFailures: 5,
        heartbeatInterval: 5_000,
        heartbeatTimeout: 30_000,
        rebalanceInterval: 5_000,
        assignmentPollInterval: 1_000,
        dispatcher: "poll",
        dispatcherInterval: 200,
        leaderStrategy: "advisory",
        maxGapWait: null,
      },
    );
    assert.equal(o.batchSize, WORKER_DEFAULTS.batchSize);
    assert.equal(o.onPoison, defaultPoisonPolicy);
    assert.match(o.workerId, /^[0-9a-f-]{36}$/);
  });

  it("lease: rebalanceInterval must be below heartbeatTimeout (the lease length)", () => {
    assert.throws(
      () =>
        resolveRuntimeOptions({
          leaderStrategy: "lease",
          heartbeatInterval: 100,
          heartbeatTimeout: 800,
          rebalanceInterval: 800,
        }),
      /rebalanceInterval \(800\) must be below heartbeatTimeout \(800\)/,
    );
    const o = resolveRuntimeOptions({
      leaderStrategy: "lease",
      heartbeatInterval: 100,
      heartbeatTimeout: 800,
      rebalanceInterval: 200,
      assignmentPollInterval: 50,
    });
    assert.equal(o.assignmentPollInterval, 50);
    assert.throws(() => resolveRuntimeOptions({ assignmentPollInterval: 0 }), WorkerConfigError);
    // Advisory leadership has no lease: any interval is fine.
    assert.equal(resolveRuntimeOptions({ rebalanceInterval: 60_000 }).rebalanceInterval, 60_000);
  });

  it("keeps valid values, including batchPause 0 and an injected id and clock", () => {
    const clock = new FakeClock(0);
    const o = resolveRuntimeOptions({
      workerId: "node-a",
      batchPause: 0,
      maxGapWait: 60_000,
      clock,
      pollInterval: 40_000,
    });
    assert.equal(o.workerId, "node-a");
    assert.equal(o.batchPause, 0);
    assert.equal(o.maxGapWait, 60_000);
    assert.equal(o.clock, clock);
    assert.equal(o.maxPollInterval, 40_000, "the default cap never undercuts pollInterval");
  });

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ["batchSize 0", { batchSize: 0 }, /batchSize must be an integer from 1/],
    ["batchSize 1.5", { batchSize: 1.5 }, /batchSize/],
    ["negative poll", { pollInterval: -1 }, /pollInterval must be a number of milliseconds > 0/],
    ["NaN timeout", { batchTimeout: Number.NaN }, /batchTimeout/],
    ["huge delay", { pollInterval: 2 ** 31 }, /<= 2147483647/],
    ["string interval", { dispatcherInterval: "200" }, /dispatcherInterval .*got "200"/],
    [
      "max < poll",
      { pollInterval: 5_000, maxPollInterval: 1_000 },
      /maxPollInterval \(1000\) must be >= pollInterval/,
    ],
    [
      "timeout <= interval",
      { heartbeatInterval: 5_000, heartbeatTimeout: 5_000 },
      /heartbeatTimeout/,
    ],
    ["negative pause", { batchPause: -1 }, /batchPause/],
    ["zero maxGapWait", { maxGapWait: 0 }, /maxGapWait/],
    ["unknown dispatcher", { dispatcher: "push" }, /dispatcher must be one of "poll", "notify"/],
    ["unknown leader", { leaderStrategy: "raft" }, /leaderStrategy/],
    ["empty worker id", { workerId: "  " }, /workerId must be a non-empty string/],
    ["failures 0", { maxConsecutiveFailures: 0 }, /maxConsecutiveFailures/],
    ["bad policy", { onPoison: "skip" }, /onPoison must be a function/],
    ["bad clock", { clock: { now: () => 0 } }, /clock must implement/],
    ["typo", { pollIntervalMs: 10 }, /unknown worker option "pollIntervalMs"/],
  ];
  for (const [label, options, message] of bad) {
    it(`rejects ${label} with WorkerConfigError`, () => {
      assert.throws(() => resolveRuntimeOptions(options as never), (error: unknown) => {
        assert.ok(error instanceof WorkerConfigError, String(error));
        assert.ok(error instanceof TypeError);
        assert.match((error as Error).message, message);
        return true;
      });
    });
  }
});

describe("checkConsumers", () => {
  it("accepts handle or handleBatch and returns a copy", () => {
    const list = [{ name: "a", handle() {} }, { name: "b", handleBatch() {} }];
    const checked = checkConsumers(list);
    assert.deepEqual(checked, list);
    assert.notEqual(checked, list);
  });
  const bad: Array<[string, unknown, RegExp]> = [
    ["not an array", { name: "a" }, /consumers must be an array/],
    ["null entry", [null], /consumer at index 0 is not an object/],
    ["empty name", [{ name: "", handle() {} }], /name of consumer at index 0/],
    [
      "duplicate",
      [{ name: "a", handle() {} }, { name: "a", handle() {} }],
      /duplicate consumer name "a"/,
    ],
    ["no handler", [{ name: "a" }], /needs a handle or handleBatch/],
    [
      "bad filter",
      [{ name: "a", handle() {}, aggregateTypes: "Order" }],
      /aggregateTypes of consumer "a"/,
    ],
    ["empty type", [{ name: "a", handle() {}, eventTypes: [""] }], /eventTypes/],
    ["bad policy", [{ name: "a", handle() {}, onPoison: 1 }], /onPoison of consumer "a"/],
  ];
  for (const [label, consumers, message] of bad) {
    it(`rejects ${label}`, () => {
      assert.throws(() => checkConsumers(consumers), { name: "WorkerConfigError", message });
    });
  }
});
