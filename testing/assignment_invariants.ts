/**
 * Checks of an assignment of consumers to workers, independent of how it was computed: used by
 * the multi-worker simulation after every rebalance and after settling, and usable on the rows of
 * a real PostgreSQL fleet (`status(sql)`).
 *
 * @module
 */
import type { AssignmentSnapshot } from "../worker/core/assignment.ts";

/**
 * Problems with an assignment: consumers on workers that cannot run them, consumers left
 * unassigned while an eligible worker is live, and pairs of workers whose loads differ by two or
 * more although the busier one holds a consumer the other could run. Empty when the assignment is
 * valid and balanced.
 *
 * @example
 * ```ts
 * import { assignmentProblems } from "@eventsalsa/eventsalsa/testing";
 * const problems = assignmentProblems(
 *   [{ workerId: "w-1", consumers: ["a", "b", "c"] }, { workerId: "w-2", consumers: ["a", "b", "c"] }],
 *   new Map([["a", "w-1"], ["b", "w-1"], ["c", "w-1"]]),
 * );
 * console.log(problems); // ["w-1 has 3 consumers, w-2 has 1 ..."]
 * ```
 */
export function assignmentProblems(
  workers: AssignmentSnapshot["workers"],
  assignments: ReadonlyMap<string, string | null>,
): string[] {
  const problems: string[] = [];
  const registered = new Map(workers.map((w) => [w.workerId, new Set(w.consumers)]));
  const load = new Map(workers.map((w) => [w.workerId, 0]));
  for (const [consumer, owner] of assignments) {
    const eligible = workers.filter((w) => registered.get(w.workerId)!.has(consumer));
    if (owner === null) {
      if (eligible.length > 0) {
        problems.push(`${consumer} is unassigned although ${eligible[0].workerId} could run it`);
      }
    } else if (!registered.has(owner)) {
      problems.push(`${consumer} is assigned to ${owner}, which is not live`);
    } else if (!registered.get(owner)!.has(consumer)) {
      problems.push(`${consumer} is assigned to ${owner}, which did not register it`);
    } else {
      load.set(owner, load.get(owner)! + 1);
    }
  }
  for (const a of workers) {
    for (const b of workers) {
      const la = load.get(a.workerId)!;
      const lb = load.get(b.workerId)!;
      if (la - lb < 2) continue;
      const movable = [...assignments].find(([consumer, owner]) =>
        owner === a.workerId && registered.get(b.workerId)!.has(consumer)
      );
      if (movable !== undefined) {
        problems.push(
          `${a.workerId} has ${la} consumers, ${b.workerId} has ${lb} and could run ${movable[0]}`,
        );
      }
    }
  }
  return problems;
}

/**
 * The fewest consumers that must move from one live worker to another (a stop on one, a start on
 * the other) to balance a homogeneous fleet (every live worker registered every consumer), given
 * the current assignment. Consumers that are unassigned or on a worker that is gone do not count:
 * they must be placed anyway. Returns null when the fleet is heterogeneous.
 *
 * @example
 * ```ts
 * import { minimalMoves } from "@eventsalsa/eventsalsa/testing";
 * const moves = minimalMoves({
 *   workers: [{ workerId: "w-1", consumers: ["a", "b"] }, { workerId: "w-2", consumers: ["a", "b"] }],
 *   assignments: new Map([["a", "w-1"], ["b", "w-1"]]),
 * });
 * console.log(moves); // 1
 * ```
 */
export function minimalMoves(snapshot: AssignmentSnapshot): number | null {
  const names = [...snapshot.assignments.keys()];
  const workers = snapshot.workers;
  if (workers.length === 0) return 0;
  for (const worker of workers) {
    const set = new Set(worker.consumers);
    if (names.some((name) => !set.has(name))) return null;
  }
  const kept = new Map(workers.map((w) => [w.workerId, 0]));
  for (const owner of snapshot.assignments.values()) {
    if (owner !== null && kept.has(owner)) kept.set(owner, kept.get(owner)! + 1);
  }
  const total = names.length;
  const floor = Math.floor(total / workers.length);
  const ceilings = total % workers.length;
  // Give the larger quotas to the workers that hold the most: they keep the most.
  const held = [...kept.values()].sort((a, b) => b - a);
  let moves = 0;
  held.forEach((count, index) => {
    const quota = floor + (index < ceilings ? 1 : 0);
    moves += Math.max(0, count - quota);
  });
  return moves;
}

/**
 * How many consumers a change of assignment moved from one live worker to another (counted as in
 * {@link minimalMoves}: placements of unassigned or orphaned consumers are not moves).
 *
 * @example
 * ```ts
 * import { countMoves } from "@eventsalsa/eventsalsa/testing";
 * const live = new Set(["w-1", "w-2"]);
 * console.log(countMoves(new Map([["a", "w-1"]]), new Map([["a", "w-2"]]), live)); // 1
 * ```
 */
export function countMoves(
  before: ReadonlyMap<string, string | null>,
  after: ReadonlyMap<string, string | null>,
  live: ReadonlySet<string>,
): number {
  let moves = 0;
  for (const [consumer, from] of before) {
    const to = after.get(consumer) ?? null;
    if (from !== null && live.has(from) && to !== from) moves++;
  }
  return moves;
}
