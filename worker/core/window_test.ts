import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { stored } from "../support_test.ts";
import {
  matchesFilter,
  nextReach,
  readCount,
  scanSize,
  typeFilter,
  windowOf,
  type WindowSpec,
} from "./window.ts";

/** Events at these positions; every third one is of the aggregate type "Rare". */
const at = (...positions: number[]) =>
  positions.map((p) => stored(p, p % 3 === 0 ? "Rare" : "Order"));
const rare = typeFilter(["Rare"], undefined);
const positions = (w: { events: readonly { globalPosition: number }[] }) =>
  w.events.map((e) => e.globalPosition);

describe("windowOf", () => {
  it("unfiltered: every event up to the limit, holes as ranges, full when more follow", () => {
    const w = windowOf({ after: 0, limit: 4, scan: 400, filter: null }, at(1, 2, 5, 9, 10));
    assert.deepEqual(positions(w), [1, 2, 5, 9]);
    assert.deepEqual(w.missing, [[3, 4], [6, 8]]);
    assert.equal(w.end, 9);
    assert.equal(w.full, true);
  });
  it("filtered: matching events only, every position still described", () => {
    const w = windowOf({ after: 0, limit: 10, scan: 100, filter: rare }, at(1, 2, 3, 5, 6, 7));
    assert.deepEqual(positions(w), [3, 6]);
    assert.deepEqual(w.missing, [[4, 4]]);
    assert.equal(w.end, 7);
    assert.equal(w.full, false);
  });
  it("ends before the matching event past the limit", () => {
    const w = windowOf({ after: 0, limit: 2, scan: 100, filter: rare }, at(1, 3, 4, 6, 7, 9, 10));
    assert.deepEqual(positions(w), [3, 6]);
    assert.equal(w.end, 7);
    assert.deepEqual(w.missing, [[2, 2], [5, 5]]);
    assert.equal(w.full, true);
  });
  it("covers `scan` positions, or up to the first visible one past a long hole", () => {
    const short = windowOf({ after: 10, limit: 5, scan: 5, filter: rare }, at(11, 14, 16, 17));
    assert.equal(short.end, 14);
    assert.deepEqual(positions(short), []);
    assert.equal(short.full, true);
    const jump = windowOf({ after: 10, limit: 5, scan: 5, filter: rare }, at(1_000, 1_001));
    assert.equal(jump.end, 1_000);
    assert.deepEqual(jump.missing, [[11, 999]]);
    assert.equal(jump.full, true);
  });
  it("an empty read ends at the checkpoint", () => {
    assert.deepEqual(windowOf({ after: 7, limit: 5, scan: 50, filter: rare }, []), {
      events: [],
      end: 7,
      missing: [],
      full: false,
    });
  });
  it("rejects a read that is not ascending after the checkpoint", () => {
    assert.throws(
      () => windowOf({ after: 5, limit: 5, scan: 5, filter: null }, at(5, 6)),
      /not ascending/,
    );
  });
  it("reading `readCount` events by count gives the same window as reading all of them", () => {
    let seed = 7;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 300; round++) {
      const log: number[] = [];
      for (let p = 1; p <= 200; p++) if (random() > 0.2) log.push(p);
      const spec: WindowSpec = {
        after: Math.floor(random() * 50),
        limit: 1 + Math.floor(random() * 8),
        scan: 1 + Math.floor(random() * 40),
        filter: random() < 0.3 ? null : rare,
      };
      const after = at(...log.filter((p) => p > spec.after));
      assert.deepEqual(windowOf(spec, after.slice(0, readCount(spec))), windowOf(spec, after));
    }
  });
});

describe("typeFilter and scanSize", () => {
  it("empty lists narrow nothing", () => {
    assert.equal(typeFilter(undefined, []), null);
    assert.equal(matchesFilter(null, stored(1)), true);
    const both = typeFilter(["Order"], ["OrderPlaced"])!;
    assert.equal(matchesFilter(both, stored(1, "Order", "OrderPlaced")), true);
    assert.equal(matchesFilter(both, stored(1, "Order", "OrderShipped")), false);
    assert.equal(matchesFilter(both, stored(1, "Rare", "OrderPlaced")), false);
  });
  it("a window covers more positions than it returns events, within a bound", () => {
    assert.equal(scanSize(100), 10_000);
    assert.equal(scanSize(5_000), 100_000);
    assert.equal(scanSize(200_000), 200_000);
    assert.equal(scanSize(1_000, 1.25), 1_250);
    assert.equal(scanSize(1_000, 0.5), 1_000);
  });
  it("the reach follows the density a window showed, 5 % more, between 1 and 100", () => {
    const events = (n: number) => at(...Array.from({ length: n }, (_, i) => i + 1));
    const window = (n: number, end: number, full: boolean) => ({
      events: events(n),
      end,
      missing: [],
      full,
    });
    assert.equal(nextReach(100, 0, window(1_000, 1_010, true)), 1.0605);
    assert.equal(nextReach(100, 0, window(1_000, 100_000, true)), 100);
    assert.equal(nextReach(100, 0, window(10, 100_000, true)), 100, "at most 100");
    assert.equal(nextReach(1.25, 0, window(0, 1_250, true)), 100, "nothing matched: reach far");
    assert.equal(nextReach(1.25, 0, window(0, 3, false)), 1.25, "caught up: nothing learnt");
  });
});
