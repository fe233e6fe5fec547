import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../testing/fake_clock.ts";
import { pause, Wakeup } from "./wakeup.ts";

describe("Wakeup", () => {
  it("wakes every waiter on a signal", async () => {
    const clock = new FakeClock(0);
    const wakeup = new Wakeup();
    const seen = wakeup.generation;
    const a = wakeup.wait(seen, 10_000, clock);
    const b = wakeup.wait(seen, 10_000, clock);
    wakeup.signal();
    assert.deepEqual(await Promise.all([a, b]), ["woken", "woken"]);
    assert.equal(clock.pendingTimers, 0);
  });
  it("does not lose a signal that arrived while the consumer was busy", async () => {
    const wakeup = new Wakeup();
    const seen = wakeup.generation;
    wakeup.signal();
    assert.equal(await wakeup.wait(seen, 10_000, new FakeClock(0)), "woken");
  });
  it("times out on the clock", async () => {
    const clock = new FakeClock(0);
    const wakeup = new Wakeup();
    let result: string | null = null;
    void wakeup.wait(wakeup.generation, 500, clock).then((r) => (result = r));
    await clock.advance(499);
    assert.equal(result, null);
    await clock.advance(1);
    assert.equal(result, "timeout");
  });
  it("resolves 'aborted' on abort and clears its timer", async () => {
    const clock = new FakeClock(0);
    const controller = new AbortController();
    const waiting = new Wakeup().wait(0, 500, clock, controller.signal);
    controller.abort();
    assert.equal(await waiting, "aborted");
    assert.equal(clock.pendingTimers, 0);
  });
});

describe("pause", () => {
  it("returns false instead of throwing when aborted", async () => {
    const clock = new FakeClock(0);
    const controller = new AbortController();
    const paused = pause(clock, 1_000, controller.signal);
    controller.abort();
    assert.equal(await paused, false);
  });
  it("returns true after the delay", async () => {
    const clock = new FakeClock(0);
    const paused = pause(clock, 1_000, new AbortController().signal);
    await clock.advance(1_000);
    assert.equal(await paused, true);
  });
});
