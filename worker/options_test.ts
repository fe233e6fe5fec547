import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { FakeClock } from "../testing/fake_clock.ts";
import { storedTextProblem } from "../internal/stored_text.ts";
import { WorkerConfigError } from "./errors.ts";
import {
  checkConsumers,
  type ResolvedRuntimeOptions,
  resolveRuntimeOptions,
  RUNTIME_OPTION_KEYS,
  WORKER_DEFAULTS,
} from "./options.ts";
import { defaultPoisonPolicy } from "./core/poison.ts";

function rejects(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof WorkerConfigError, String(error));
    assert.match((error as Error).message, message);
    return true;
  });
}

describe("resolveRuntimeOptions", () => {
  it("applies the documented defaults (docs/worker.md)", () => {
    const o = resolveRuntimeOptions();
    assert.deepEqual(
      {
        batchSize: o.batchSize,
        pollInterval: o.pollInterval,
        maxPollInterval: o.maxPollInterval,
        batchPause: o.batchPause,
        gapCheckInterval: o.gapCheckInterval,
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
        batchPause: 0,
        gapCheckInterval: 200,
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
    [
      "a type the store cannot hold (NUL)",
      [{ name: "a", handle() {}, eventTypes: ["Placed", "Bad\u0000"] }],
      /eventTypes of consumer "a"\[1\] must not contain NUL/,
    ],
    [
      "a type past 1,024 bytes",
      [{ name: "a", handle() {}, aggregateTypes: ["x".repeat(1_025)] }],
      /aggregateTypes of consumer "a"\[0\]/,
    ],
    ["bad policy", [{ name: "a", handle() {}, onPoison: 1 }], /onPoison of consumer "a"/],
  ];
  for (const [label, consumers, message] of bad) {
    it(`rejects ${label}`, () => {
      assert.throws(() => checkConsumers(consumers), { name: "WorkerConfigError", message });
    });
  }
});

describe("the option table (one definition per option)", () => {
  const defaults: ResolvedRuntimeOptions = resolveRuntimeOptions();
  const resolved = defaults as unknown as Record<string, unknown>;

  it("RUNTIME_OPTION_KEYS are exactly the options resolveRuntimeOptions resolves", () => {
    assert.deepEqual(Object.keys(defaults), [...RUNTIME_OPTION_KEYS]);
    assert.equal(new Set(RUNTIME_OPTION_KEYS).size, RUNTIME_OPTION_KEYS.length);
    assert.ok(Object.isFrozen(RUNTIME_OPTION_KEYS));
  });

  it("WORKER_DEFAULTS lists the fixed defaults of the table, as resolved", () => {
    assert.ok(Object.isFrozen(WORKER_DEFAULTS));
    for (const [name, value] of Object.entries(WORKER_DEFAULTS)) {
      assert.ok(RUNTIME_OPTION_KEYS.includes(name), name);
      assert.deepEqual(resolved[name], value, name);
    }
    // The others are an id and services: made per worker or not plain values.
    assert.deepEqual(
      RUNTIME_OPTION_KEYS.filter((name) => !(name in WORKER_DEFAULTS)),
      ["workerId", "onPoison", "clock", "logger", "observer", "telemetry"],
    );
  });

  for (const name of RUNTIME_OPTION_KEYS) {
    it(`${name}: accepts its own default and rejects a wrong type, naming the option`, () => {
      const value = resolved[name];
      const again = resolveRuntimeOptions({ [name]: value } as never) as unknown as Record<
        string,
        unknown
      >;
      assert.deepEqual(again[name], value);
      const wrongType = typeof value === "string" ? 42 : "42";
      for (const wrong of [Symbol("wrong"), wrongType, true]) {
        rejects(
          () => resolveRuntimeOptions({ [name]: wrong } as never),
          new RegExp(`^${name}\\b`),
        );
      }
    });
  }

  it("omitted, defaults that depend on another option adapt to it", () => {
    const o = resolveRuntimeOptions({ pollInterval: 45_000, heartbeatInterval: 20_000 });
    assert.equal(o.maxPollInterval, 45_000);
    assert.equal(o.heartbeatTimeout, 40_000);
    // Given, they are taken as they are and the rule between the two applies.
    rejects(
      () => resolveRuntimeOptions({ heartbeatInterval: 20_000, heartbeatTimeout: 20_000 }),
      /^heartbeatTimeout \(20000\) must be greater than heartbeatInterval \(20000\)$/,
    );
    assert.equal(
      resolveRuntimeOptions({ heartbeatInterval: 20_000, heartbeatTimeout: 30_001 })
        .heartbeatTimeout,
      30_001,
    );
  });

  it("each worker gets a fresh id, logger and observer", () => {
    const other = resolveRuntimeOptions();
    assert.notEqual(other.workerId, defaults.workerId);
    assert.notEqual(other.logger, defaults.logger);
    assert.notEqual(other.observer, defaults.observer);
  });

  it("docs/worker.md lists every option, and every listed default as WORKER_DEFAULTS has it", () => {
    const doc = readFileSync(fileURLToPath(new URL("../docs/worker.md", import.meta.url)), "utf8");
    const section = doc.slice(doc.indexOf("## Options"), doc.indexOf("## Wakeups"));
    const rows = section.split("\n").filter((line) => line.startsWith("| `"))
      .map((line) => line.split("|").map((cell) => cell.trim()));
    const rowOf = (name: string) => rows.find((cells) => cells[1].includes(`\`${name}\``));
    for (const name of RUNTIME_OPTION_KEYS) assert.ok(rowOf(name), `${name} is not documented`);
    for (const [name, value] of Object.entries(WORKER_DEFAULTS)) {
      const shown = typeof value === "number"
        ? value.toLocaleString("en-US")
        : `\`${JSON.stringify(value)}\``;
      assert.ok(rowOf(name)![2].startsWith(shown), `${name}: docs say ${rowOf(name)![2]}`);
    }
  });
});

describe("unknown options", () => {
  it("are reported by name, even beside valid ones", () => {
    rejects(
      () => resolveRuntimeOptions({ batchSize: 10, colour: "red" } as never),
      /^unknown worker option "colour"$/,
    );
    // Reported before any value is looked at.
    rejects(
      () => resolveRuntimeOptions({ batchSize: -1, heartbeatIntervalMs: 1 } as never),
      /unknown worker option "heartbeatIntervalMs"/,
    );
  });

  it("an adapter's own options are known only when it passes them", () => {
    rejects(
      () => resolveRuntimeOptions({ notifyChannel: "events" } as never),
      /unknown worker option "notifyChannel"/,
    );
    assert.equal(
      resolveRuntimeOptions({ notifyChannel: "events", batchSize: 7 } as never, ["notifyChannel"])
        .batchSize,
      7,
    );
  });

  it("options must be an object", () => {
    rejects(() => resolveRuntimeOptions(42 as never), /worker options must be an object, got 42/);
    rejects(() => resolveRuntimeOptions(null as never), /worker options must be an object/);
  });
});

describe("stored names (consumer names, worker ids)", () => {
  const consumer = (name: unknown, partitions?: number) => [{ name, partitions, handle() {} }];

  it("follow the stored-text rule of the store and encryption (internal/stored_text.ts)", () => {
    const samples = [
      "",
      "a",
      "orders-projection",
      "a\u0000b",
      "\ud800",
      "x\udc00",
      "\ud83d\ude00", // a surrogate pair: fine
      "a".repeat(300), // longer than the former 200-character limit
      "a".repeat(1_024),
      "a".repeat(1_025),
      "é".repeat(512),
      "é".repeat(513),
      "€".repeat(341),
      "€".repeat(342),
      "\ud83d\ude00".repeat(256),
      "\ud83d\ude00".repeat(257),
    ];
    // Pinned, so a change of the rule itself shows here too: which samples it accepts.
    assert.deepEqual(
      samples.map((name) => storedTextProblem(name) === null),
      [
        false,
        true,
        true,
        false,
        false,
        false,
        true,
        true,
        true,
        false,
        true,
        false,
        true,
        false,
        true,
        false,
      ],
    );
    for (const name of samples) {
      const problem = storedTextProblem(name);
      if (problem === null) {
        assert.equal(checkConsumers(consumer(name))[0].name, name);
        assert.equal(resolveRuntimeOptions({ workerId: name }).workerId, name);
      } else {
        const label = JSON.stringify(name.slice(0, 20));
        assert.throws(() => checkConsumers(consumer(name)), WorkerConfigError, label);
        assert.throws(() => resolveRuntimeOptions({ workerId: name }), WorkerConfigError, label);
      }
    }
  });

  it("refuses a lone surrogate, which PostgreSQL would store as U+FFFD", () => {
    rejects(
      () => checkConsumers(consumer("orders\ud800")),
      /^name of consumer at index 0 contains a lone UTF-16 surrogate$/,
    );
    rejects(
      () => resolveRuntimeOptions({ workerId: "\udfffnode" }),
      /^workerId contains a lone UTF-16 surrogate$/,
    );
  });

  it("refuses NUL, blank and overlong names, naming the field", () => {
    rejects(() => checkConsumers(consumer("a\u0000")), /^name of consumer at index 0 must not/);
    rejects(() => checkConsumers(consumer(" \t")), /^name of consumer at index 0 must be a non-/);
    rejects(
      () => checkConsumers(consumer("é".repeat(513))),
      /^name of consumer at index 0 must be at most 1024 UTF-8 bytes, got 1026$/,
    );
    rejects(() => resolveRuntimeOptions({ workerId: "" }), /^workerId must be a non-empty/);
  });

  it("partition names (name#<index>of<count>) must fit the same limit", () => {
    // The last partition's name is the longest: "#3of4" adds 5 bytes.
    assert.equal(checkConsumers(consumer("a".repeat(1_019), 4)).length, 1);
    rejects(
      () => checkConsumers(consumer("a".repeat(1_020), 4)),
      /^partition names of consumer at index 0 \(name#<index>of4\) must be at most 1024 UTF-8 bytes, got 1025 characters$/,
    );
    // Unpartitioned, the same name is fine.
    assert.equal(checkConsumers(consumer("a".repeat(1_020))).length, 1);
  });
});
