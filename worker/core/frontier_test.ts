import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { stored } from "../support_test.ts";
import { computeFrontier } from "./frontier.ts";

const window = (...positions: number[]) => positions.map((p) => stored(p));
const positions = (f: { events: readonly { globalPosition: number }[] }) =>
  f.events.map((e) => e.globalPosition);

describe("computeFrontier", () => {
  it("an empty window leaves the checkpoint and blocks nothing", () => {
    const f = computeFrontier(7, [], 0);
    assert.deepEqual({
      target: f.target,
      hole: f.hole,
      highestVisible: f.highestVisible,
      windowSize: f.windowSize,
    }, {
      target: 7,
      hole: null,
      highestVisible: 7,
      windowSize: 0,
    });
  });
  it("a contiguous window moves the frontier to its end", () => {
    const f = computeFrontier(3, window(4, 5, 6), 0);
    assert.equal(f.target, 6);
    assert.equal(f.hole, null);
    assert.deepEqual(positions(f), [4, 5, 6]);
  });
  it("stops before an unexplained hole and names it", () => {
    const f = computeFrontier(0, window(1, 2, 4, 5), 0);
    assert.equal(f.target, 2);
    assert.equal(f.hole, 3);
    assert.deepEqual(positions(f), [1, 2]);
    assert.equal(f.highestVisible, 5);
  });
  it("a hole right after the checkpoint blocks everything", () => {
    const f = computeFrontier(10, window(12, 13), 0);
    assert.equal(f.target, 10);
    assert.equal(f.hole, 11);
    assert.deepEqual(positions(f), []);
  });
  it("passes holes known to be permanent and reports them", () => {
    const f = computeFrontier(0, window(1, 4, 5, 8), 6);
    assert.equal(f.target, 5);
    assert.deepEqual(f.passedHoles, [[2, 3]]);
    assert.equal(f.hole, 7);
  });
  it("a hole partly known names the first unknown position", () => {
    const f = computeFrontier(0, window(1, 6), 3);
    assert.equal(f.target, 1);
    assert.equal(f.hole, 4);
  });
  it("rejects a window that is not ascending after the checkpoint", () => {
    assert.throws(() => computeFrontier(5, window(5, 6), 0), /not ascending/);
  });
});
