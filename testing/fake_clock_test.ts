import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "./fake_clock.ts";

describe("FakeClock", () => {
  it("fires timers in due order, ties in creation order, only when advanced", async () => {
    const clock = new FakeClock(1000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push("b@20"), 20);
    clock.setTimeout(() => fired.push("a@10"), 10);
    clock.setTimeout(() => fired.push("c@20"), 20);
    await clock.advance(9);
    assert.deepEqual(fired, []);
    assert.equal(clock.now(), 1009);
    await clock.advance(11);
    assert.deepEqual(fired, ["a@10", "b@20", "c@20"]);
    assert.equal(clock.now(), 1020);
    assert.equal(clock.pendingTimers, 0);
  });

  it("sleep resolves at its due time and async chains schedule within one advance", async () => {
    const clock = new FakeClock(0);
    const wakes: number[] = [];
    const loop = (async () => {
      for (let i = 0; i < 3; i++) {
        await clock.sleep(100);
        wakes.push(clock.now());
      }
    })();
    await clock.advance(1000);
    await loop;
    assert.deepEqual(wakes, [100, 200, 300]);
    assert.equal(clock.now(), 1000);
  });

  it("sleep rejects with the abort reason and cancels its timer", async () => {
    const clock = new FakeClock(0);
    const controller = new AbortController();
    const sleeping = clock.sleep(1000, controller.signal);
    assert.equal(clock.pendingTimers, 1);
    controller.abort(new Error("stop"));
    await assert.rejects(sleeping, /stop/);
    assert.equal(clock.pendingTimers, 0);
    await assert.rejects(clock.sleep(1, controller.signal), /stop/);
  });

  it("clearTimeout cancels; runNext jumps to the next timer", async () => {
    const clock = new FakeClock(0);
    let fired = 0;
    const handle = clock.setTimeout(() => fired++, 50);
    clock.setTimeout(() => fired += 10, 70);
    clock.clearTimeout(handle);
    assert.equal(clock.nextTimerAt(), 70);
    assert.equal(await clock.runNext(), true);
    assert.equal(fired, 10);
    assert.equal(clock.now(), 70);
    assert.equal(await clock.runNext(), false);
    await assert.rejects(clock.advance(-1), RangeError);
  });
});
