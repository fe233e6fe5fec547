/**
 * Sticky, balanced, heterogeneous assignment of consumers to workers: a pure function of the
 * current assignment and the live workers (with the consumers each registered), run by the leader
 * inside its fenced rebalance transaction on any adapter.
 *
 * Rules, in order:
 * 1. **Eligibility.** A consumer is assigned only to a live worker that registered it; with no such
 *    worker it is unassigned (null).
 * 2. **Stickiness.** A consumer whose owner is still live and eligible stays where it is, unless
 *    balance requires it to move.
 * 3. **Placement.** Consumers that must move (owner gone, never assigned) go, most constrained
 *    first, to the least-loaded eligible worker (ties: lowest worker id).
 * 4. **Balance.** While some worker A has at least two consumers more than a worker B that could
 *    run one of them, one such consumer moves from A to B (preferring a consumer placed in this
 *    round, then the first by name). For a homogeneous fleet this ends with counts within one of
 *    each other, with the fewest moves possible; for a heterogeneous one it ends when no worker
 *    could take a consumer from a worker with two more.
 *
 * Names and ids compare by code point (the byte order of `COLLATE "C"`), never by locale, so every
 * leader computes the same result.
 *
 * @module
 */

/**
 * A live worker and the consumers it registered (the ones it can run).
 *
 * @example
 * ```ts
 * import type { WorkerMembership } from "@eventsalsa/eventsalsa/worker";
 * const member: WorkerMembership = { workerId: "w-1", consumers: ["orders", "invoices"] };
 * ```
 */
export interface WorkerMembership {
  /** The worker's id. */
  readonly workerId: string;
  /** The consumers it registered. */
  readonly consumers: readonly string[];
}

/**
 * What the leader reads before it plans: the live workers and every assignment row.
 *
 * @example
 * ```ts
 * import type { AssignmentSnapshot } from "@eventsalsa/eventsalsa/worker";
 * const snapshot: AssignmentSnapshot = {
 *   workers: [{ workerId: "w-1", consumers: ["a", "b"] }],
 *   assignments: new Map([["a", "w-1"], ["b", null]]),
 * };
 * ```
 */
export interface AssignmentSnapshot {
  /** Live workers (heartbeat within the timeout). */
  readonly workers: readonly WorkerMembership[];
  /** Every consumer's current owner (null when unassigned). */
  readonly assignments: ReadonlyMap<string, string | null>;
}

/**
 * One row the leader changes.
 *
 * @example
 * ```ts
 * import type { AssignmentChange } from "@eventsalsa/eventsalsa/worker";
 * const change: AssignmentChange = { consumer: "orders", from: "w-1", to: "w-2" };
 * ```
 */
export interface AssignmentChange {
  /** The consumer. */
  readonly consumer: string;
  /** Its owner before (null: unassigned). */
  readonly from: string | null;
  /** Its owner after (null: unassigned). */
  readonly to: string | null;
}

/**
 * Orders strings by code point (what PostgreSQL's `COLLATE "C"` does on UTF-8), unlike `<` on
 * strings, which compares UTF-16 code units.
 */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/**
 * Computes the sticky, balanced assignment (see the module doc) and returns only the rows that
 * change, sorted by consumer name. An empty list means the assignment is already right.
 */
export function planAssignments(snapshot: AssignmentSnapshot): AssignmentChange[] {
  const workerIds = [...new Set(snapshot.workers.map((w) => w.workerId))].sort(compareCodePoints);
  const rank = new Map(workerIds.map((id, index) => [id, index]));
  const eligible = new Map<string, Set<string>>();
  for (const worker of snapshot.workers) {
    for (const consumer of worker.consumers) {
      let set = eligible.get(consumer);
      if (set === undefined) eligible.set(consumer, set = new Set());
      set.add(worker.workerId);
    }
  }
  const names = [...new Set([...snapshot.assignments.keys(), ...eligible.keys()])].sort(
    compareCodePoints,
  );
  const owner = new Map<string, string | null>();
  const owned = new Map<string, Set<string>>(workerIds.map((id) => [id, new Set()]));
  const placed = new Set<string>();
  const orphans: string[] = [];
  for (const name of names) {
    const current = snapshot.assignments.get(name) ?? null;
    const candidates = eligible.get(name);
    if (current !== null && candidates?.has(current)) {
      owner.set(name, current);
      owned.get(current)!.add(name);
    } else {
      owner.set(name, null);
      if (candidates !== undefined && candidates.size > 0) orphans.push(name);
    }
  }
  const load = (id: string) => owned.get(id)!.size;
  const byLoad = (a: string, b: string) => load(a) - load(b) || rank.get(a)! - rank.get(b)!;

  // Placement: most constrained first, each to the least-loaded eligible worker.
  orphans.sort((a, b) => eligible.get(a)!.size - eligible.get(b)!.size || compareCodePoints(a, b));
  for (const name of orphans) {
    const target = [...eligible.get(name)!].sort(byLoad)[0];
    owner.set(name, target);
    owned.get(target)!.add(name);
    placed.add(name);
  }

  // Balance: move one consumer at a time from a worker to one with at least two fewer that can
  // run it. Each move lowers the sum of squared loads, so this ends.
  for (;;) {
    const ascending = [...workerIds].sort(byLoad);
    let moved = false;
    for (let i = ascending.length - 1; i > 0 && !moved; i--) {
      const from = ascending[i];
      for (let j = 0; j < i && !moved; j++) {
        const to = ascending[j];
        if (load(from) - load(to) < 2) break;
        let pick: string | null = null;
        for (const name of owned.get(from)!) {
          if (!eligible.get(name)!.has(to)) continue;
          if (
            pick === null ||
            (placed.has(name) && !placed.has(pick)) ||
            (placed.has(name) === placed.has(pick) && compareCodePoints(name, pick) < 0)
          ) {
            pick = name;
          }
        }
        if (pick !== null) {
          owned.get(from)!.delete(pick);
          owned.get(to)!.add(pick);
          owner.set(pick, to);
          moved = true;
        }
      }
    }
    if (!moved) break;
  }

  const changes: AssignmentChange[] = [];
  for (const name of names) {
    const from = snapshot.assignments.get(name) ?? null;
    const to = owner.get(name) ?? null;
    if (from !== to) changes.push({ consumer: name, from, to });
  }
  return changes;
}

/**
 * Applies changes to an assignment map (a copy): what the rows hold after the leader's write.
 */
export function applyAssignmentChanges(
  assignments: ReadonlyMap<string, string | null>,
  changes: readonly AssignmentChange[],
): Map<string, string | null> {
  const result = new Map(assignments);
  for (const change of changes) result.set(change.consumer, change.to);
  return result;
}
