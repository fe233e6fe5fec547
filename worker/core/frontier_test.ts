import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { stored } from "../support_test.ts";
import { computeFrontier } from "./frontier.ts";
import { typeFilter, windowOf } from "./window.ts";

/** The unfiltered window after `after` over events at these positions. */
const window = (after: number, ...positions: number[]) =>
  windowOf({ after, limit: 100, scan: 100, filter: null }, positions.map((p) => stored(p)));
const positions = (f: { events: readonly { globalPosition: number }[] }) =>
  f.events.map((e) => e.globalPosition);

describe("computeFrontier", () => {
  it("an empty window leaves the checkpoint and blocks nothing", () => {
    const f = computeFrontier(7, window(7), 0);
    assert.deepEqual(
      { target: f.target, hole: f.hole, highestVisible: f.highestVisible, full: f.full },
      { target: 7, hole: null, highestVisible: 7, full: false },
    );
  });
  it("a contiguous window moves the frontier to its end", () => {
    const f = computeFrontier(3, window(3, 4, 5, 6), 0);
    assert.equal(f.target, 6);
    assert.equal(f.hole, null);
    assert.deepEqual(positions(f), [4, 5, 6]);
  });
  it("stops before an unexplained hole and names it", () => {
    const f = computeFrontier(0, window(0, 1, 2, 4, 5), 0);
    assert.equal(f.target, 2);
    assert.equal(f.hole, 3);
    assert.deepEqual(positions(f), [1, 2]);
    assert.equal(f.highestVisible, 5);
  });
  it("a hole right after the checkpoint blocks everything", () => {
    const f = computeFrontier(10, window(10, 12, 13), 0);
    assert.equal(f.target, 10);
    assert.equal(f.hole, 11);
    assert.deepEqual(positions(f), []);
  });
  it("passes holes known to be permanent and reports them", () => {
    const f = computeFrontier(0, window(0, 1, 4, 5, 8), 6);
    assert.equal(f.target, 5);
    assert.deepEqual(f.passedHoles, [[2, 3]]);
    assert.equal(f.hole, 7);
  });
  it("a hole partly known names the first unknown position", () => {
    const f = computeFrontier(0, window(0, 1, 6), 3);
    assert.equal(f.target, 1);
    assert.equal(f.hole, 4);
  });
  it("a filtered window moves past the events it does not return, and stops at its holes", () => {
    const events = [stored(1), stored(2, "Rare"), stored(3), stored(5, "Rare"), stored(6)];
    const w = windowOf({ after: 0, limit: 10, scan: 10, filter: typeFilter(["Rare"], []) }, events);
    assert.deepEqual(positions(w), [2, 5]);
    const waiting = computeFrontier(0, w, 0);
    assert.equal(waiting.target, 3);
    assert.equal(waiting.hole, 4);
    assert.deepEqual(positions(waiting), [2]);
    const settled = computeFrontier(0, w, 4);
    assert.equal(settled.target, 6);
    assert.deepEqual(positions(settled), [2, 5]);
    assert.deepEqual(settled.passedHoles, [[4, 4]]);
  });
  it("rejects a missing range outside the window", () => {
    const bad = { events: [], end: 9, missing: [[5, 6]] as const, full: false };
    assert.throws(() => computeFrontier(5, bad, 0), /outside/);
  });
});
