import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { stored } from "../support_test.ts";
import { GapTracker, type WindowRead } from "./gap_rule.ts";
import { windowOf } from "./window.ts";

/** A read after `after` of events at `positions`. */
function read(
  after: number,
  positions: number[],
  pendingResolved = false,
  token: unknown = "t",
): WindowRead & { tokens: number } {
  const window = { after, limit: 100, scan: 100, filter: null };
  const result = {
    ...windowOf(window, positions.map((p) => stored(p))),
    pendingResolved,
    tokens: 0,
    token: () => {
      result.tokens++;
      return Promise.resolve(token);
    },
  };
  return result;
}

describe("GapTracker (the gap rule)", () => {
  it("takes a token only when a hole blocks, and waits without a timeout", async () => {
    const tracker = new GapTracker(null);
    const first = read(0, [1, 3]);
    const plan = await tracker.plan(0, first, 0);
    assert.equal(plan.target, 1);
    assert.equal(plan.hole, 2);
    assert.equal(first.tokens, 1);
    assert.equal(tracker.pendingToken, "t");
    // An hour later, still unresolved: still waiting, nothing skipped.
    const later = await tracker.plan(1, read(1, [3]), 3_600_000);
    assert.equal(later.target, 1);
    assert.equal(later.hole, 2);
    assert.equal(later.skip, null);
    assert.equal(later.waitingSince, 0);
  });

  it("a late commit is handled as soon as it is visible, before resolution", async () => {
    const tracker = new GapTracker(null);
    await tracker.plan(0, read(0, [1, 3]), 0);
    const plan = await tracker.plan(1, read(1, [2, 3]), 10);
    assert.equal(plan.target, 3);
    assert.equal(plan.hole, null);
    assert.equal(tracker.pendingToken, null);
  });

  it("passes the hole once the token resolved and the fresh read still lacks it", async () => {
    const tracker = new GapTracker(null);
    await tracker.plan(0, read(0, [1, 3, 4]), 0);
    const plan = await tracker.plan(1, read(1, [3, 4, 6], true, "t2"), 50);
    assert.equal(plan.target, 4);
    assert.deepEqual(plan.passedHoles, [[2, 2]]);
    assert.equal(plan.skip, null, "a permanent hole is not a skip");
    // Position 5 was not covered by the first token (highest visible was 4): a new token.
    assert.equal(plan.hole, 5);
    assert.equal(tracker.pendingToken, "t2");
  });

  it("keeps the older token for a hole it already covers", async () => {
    const tracker = new GapTracker(null);
    await tracker.plan(0, read(0, [1, 3, 5], false, "old"), 0);
    // 3 is handled after 2 commits; 4 is missing but was missing when "old" was taken.
    const next = read(1, [2, 3, 5], false, "new");
    const plan = await tracker.plan(1, next, 20);
    assert.equal(plan.hole, 4);
    assert.equal(next.tokens, 0);
    assert.equal(tracker.pendingToken, "old");
    assert.equal(plan.waitingSince, 0);
  });

  it("maxGapWait skips the holes seen at least that long ago and says which", async () => {
    const tracker = new GapTracker(1_000);
    await tracker.plan(0, read(0, [1, 4, 5]), 0);
    assert.equal(tracker.skipDue(999), false);
    assert.equal(tracker.skipDue(1_000), true);
    const plan = await tracker.plan(1, read(1, [4, 5, 7]), 1_000);
    assert.equal(plan.target, 5);
    assert.deepEqual(plan.skip, { gapPosition: 2, skippedPositions: [2, 3], firstSeenAt: 0 });
    // 6 was not missing at the first observation's coverage (≤ 5): it is waited for afresh.
    assert.equal(plan.hole, 6);
  });
});
