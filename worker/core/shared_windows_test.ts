import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { stored } from "../support_test.ts";
import type { WindowQuery, WindowRead } from "./gap_rule.ts";
import { SharedWindows } from "./shared_windows.ts";
import { windowOf } from "./window.ts";

const query = (after: number, pendingToken: unknown = null): WindowQuery => ({
  after,
  limit: 2,
  scan: 200,
  filter: null,
  pendingToken,
});

/** A loader counting its calls; events at 1–5, so windows after 0 and 2 are full. */
function loader() {
  const calls: number[] = [];
  const load = (q: WindowQuery) => () => {
    calls.push(q.after);
    const events = [1, 2, 3, 4, 5].filter((p) => p > q.after).map((p) => stored(p));
    const read: WindowRead = {
      ...windowOf(q, events),
      pendingResolved: false,
      token: () => Promise.resolve("t"),
    };
    return Promise.resolve(read);
  };
  return { calls, load };
}

describe("SharedWindows", () => {
  it("one read for the loops asking at once, and a full window kept for later ones", async () => {
    const windows = new SharedWindows(4, 100);
    const { calls, load } = loader();
    const [a, b] = await Promise.all([
      windows.read(query(0), load(query(0))),
      windows.read(query(0), load(query(0))),
    ]);
    assert.equal(a, b);
    assert.equal(a.full, true);
    const later = await windows.read(query(0), load(query(0)));
    assert.equal(later, a);
    assert.deepEqual(calls, [0]);
  });
  it("a window that is not full is read again (the log's end moves)", async () => {
    const windows = new SharedWindows(4, 100);
    const { calls, load } = loader();
    const tail = await windows.read(query(4), load(query(4)));
    assert.equal(tail.full, false);
    await windows.read(query(4), load(query(4)));
    assert.deepEqual(calls, [4, 4]);
  });
  it("a loop with a pending gap token always reads for itself", async () => {
    const windows = new SharedWindows(4, 100);
    const { calls, load } = loader();
    await windows.read(query(0), load(query(0)));
    await windows.read(query(0, "token"), load(query(0, "token")));
    assert.deepEqual(calls, [0, 0]);
  });
  it("keeps the most recently used windows only", async () => {
    const windows = new SharedWindows(1, 100);
    const { calls, load } = loader();
    await windows.read(query(0), load(query(0)));
    await windows.read(query(2), load(query(2)));
    await windows.read(query(0), load(query(0)));
    assert.deepEqual(calls, [0, 2, 0]);
  });
  it("keeps no more events than its budget: a window past it is shared in flight only", async () => {
    const windows = new SharedWindows(4, 3);
    const { calls, load } = loader();
    await windows.read(query(0), load(query(0))); // 2 events, kept
    await windows.read(query(2), load(query(2))); // 2 more: 4 > 3, the oldest goes
    await windows.read(query(2), load(query(2)));
    await windows.read(query(0), load(query(0)));
    assert.deepEqual(calls, [0, 2, 0]);
    const tiny = new SharedWindows(4, 1);
    await tiny.read(query(0), load(query(0)));
    await tiny.read(query(0), load(query(0)));
    assert.deepEqual(calls, [0, 2, 0, 0, 0], "a 2-event window is never kept under a budget of 1");
  });
  it("a failed read is not kept: the next ask reads again", async () => {
    const windows = new SharedWindows(4, 100);
    await assert.rejects(windows.read(query(0), () => Promise.reject(new Error("lost"))), /lost/);
    const { calls, load } = loader();
    await windows.read(query(0), load(query(0)));
    assert.deepEqual(calls, [0]);
  });
});
