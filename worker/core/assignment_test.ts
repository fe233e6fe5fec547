// The assignment planner: eligibility, stickiness, balance and the fewest moves, checked against
// the independent invariants of testing/assignment_invariants.ts on hand-picked and seeded cases.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  assignmentProblems,
  countMoves,
  minimalMoves,
} from "../../testing/assignment_invariants.ts";
import { SeededRandom } from "../../testing/seeded_random.ts";
import {
  applyAssignmentChanges,
  type AssignmentSnapshot,
  compareCodePoints,
  planAssignments,
  type WorkerMembership,
} from "./assignment.ts";

const names = (n: number) => Array.from({ length: n }, (_, i) => `c-${String(i).padStart(3, "0")}`);
const fleet = (ids: string[], consumers: string[]): WorkerMembership[] =>
  ids.map((workerId) => ({ workerId, consumers }));
const counts = (assignments: Map<string, string | null>) => {
  const result: Record<string, number> = {};
  for (const owner of assignments.values()) {
    const key = owner ?? "(none)";
    result[key] = (result[key] ?? 0) + 1;
  }
  return result;
};
const plan = (snapshot: AssignmentSnapshot) =>
  applyAssignmentChanges(snapshot.assignments, planAssignments(snapshot));

describe("planAssignments", () => {
  it("spreads a fresh fleet within one, the extra consumers on the lowest ids", () => {
    const consumers = names(7);
    const after = plan({
      workers: fleet(["w-b", "w-a", "w-c"], consumers),
      assignments: new Map(consumers.map((c) => [c, null])),
    });
    assert.deepEqual(counts(after), { "w-a": 3, "w-b": 2, "w-c": 2 });
    const big = names(101);
    assert.deepEqual(
      Object.values(counts(plan({
        workers: fleet(["1", "2", "3", "4"], big),
        assignments: new Map(big.map((c) => [c, null])),
      }))),
      [26, 25, 25, 25],
    );
  });

  it("is sticky: a join moves only what the new worker takes; a leave moves only the orphans", () => {
    const consumers = names(10);
    const two = plan({
      workers: fleet(["w-1", "w-2"], consumers),
      assignments: new Map(consumers.map((c) => [c, null])),
    });
    const joined = { workers: fleet(["w-1", "w-2", "w-3"], consumers), assignments: two };
    const changes = planAssignments(joined);
    assert.equal(changes.length, 3, JSON.stringify(changes));
    assert.ok(changes.every((c) => c.to === "w-3"));
    const three = applyAssignmentChanges(two, changes);
    assert.deepEqual(counts(three), { "w-1": 4, "w-2": 3, "w-3": 3 });
    const left = planAssignments({ workers: fleet(["w-1", "w-3"], consumers), assignments: three });
    assert.deepEqual(left.map((c) => c.from), ["w-2", "w-2", "w-2"]);
    assert.deepEqual(
      planAssignments({ workers: fleet(["w-1", "w-2"], consumers), assignments: two }),
      [],
    );
  });

  it("assigns a consumer only to workers that registered it (heterogeneous fleets)", () => {
    const after = plan({
      workers: [
        { workerId: "w-1", consumers: ["a", "b", "c", "d"] },
        { workerId: "w-2", consumers: ["a"] },
        { workerId: "w-3", consumers: [] },
      ],
      assignments: new Map([["a", "w-3"], ["b", null], ["c", "gone"], ["d", null], ["e", "w-1"]]),
    });
    assert.equal(after.get("a"), "w-2");
    assert.deepEqual([after.get("b"), after.get("c"), after.get("d")], ["w-1", "w-1", "w-1"]);
    assert.equal(after.get("e"), null, "nobody live registered e");
  });

  it("unassigns everything when no worker is live, and changes only rows that differ", () => {
    assert.deepEqual(
      planAssignments({ workers: [], assignments: new Map([["a", "w-1"], ["b", null]]) }),
      [{ consumer: "a", from: "w-1", to: null }],
    );
  });

  it('orders names by code point, as COLLATE "C" does', () => {
    const list = ["b", "\u{1F600}", "\uFFFD", "a", "ab"];
    assert.deepEqual([...list].sort(compareCodePoints), ["a", "ab", "b", "\uFFFD", "\u{1F600}"]);
    const changes = planAssignments({
      workers: fleet(["w"], list),
      assignments: new Map(list.map((c) => [c, null])),
    });
    assert.deepEqual(changes.map((c) => c.consumer), ["a", "ab", "b", "\uFFFD", "\u{1F600}"]);
  });

  it("seeded fleets: always valid and balanced; homogeneous moves are the fewest possible", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const random = new SeededRandom(seed);
      const consumers = names(random.int(0, 40));
      const pool = Array.from({ length: 8 }, (_, i) => `w-${i}`);
      const live = pool.filter(() => random.chance(0.6));
      const heterogeneous = random.chance(0.4);
      const workers = live.map((workerId) => ({
        workerId,
        consumers: heterogeneous ? consumers.filter(() => random.chance(0.7)) : consumers,
      }));
      const assignments = new Map(
        consumers.map((c) => [c, random.chance(0.2) ? null : random.pick(pool)]),
      );
      const snapshot = { workers, assignments };
      const changes = planAssignments(snapshot);
      const after = applyAssignmentChanges(assignments, changes);
      assert.deepEqual(assignmentProblems(workers, after), [], `seed ${seed}`);
      assert.deepEqual(
        planAssignments({ workers, assignments: after }),
        [],
        `stable, seed ${seed}`,
      );
      const minimum = minimalMoves(snapshot);
      if (minimum !== null) {
        assert.equal(countMoves(assignments, after, new Set(live)), minimum, `seed ${seed}`);
      }
      // Deterministic whatever the input order.
      const shuffled = {
        workers: [...workers].reverse(),
        assignments: new Map([...assignments].reverse()),
      };
      assert.deepEqual(planAssignments(shuffled), changes, `order, seed ${seed}`);
    }
  });
});
