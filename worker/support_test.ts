// Shared helpers for the worker's tests. Named `*_test.ts` so it is never published; it defines no
// tests itself.
import type { ChildProcess } from "node:child_process";
import { spawnScript } from "../internal/child_process.ts";
import type { Clock } from "../internal/clock.ts";
import type { Event, PersistedEvent } from "../store/types.ts";
import type { WindowQuery } from "./core/gap_rule.ts";
import { any } from "../store/expected_version.ts";
import type { InMemoryEventStore } from "../testing/in_memory_store.ts";

const realSetTimeout = globalThis.setTimeout;

/** One real macrotask turn (lets I/O callbacks run). */
export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, ms));
}

/**
 * Polls `check` until it returns true, with a bounded real-time deadline. With a fake clock, each
 * round first advances it by `step` ms, so timers in the code under test fire.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  options: {
    clock?: { advance(ms: number): Promise<void> };
    step?: number;
    timeoutMs?: number;
    what?: string;
  } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${options.what ?? "a condition"}`);
    }
    if (options.clock) await options.clock.advance(options.step ?? 10);
    else await tick(5);
  }
}

/** A persisted event with only what the core looks at. */
export function stored(
  globalPosition: number,
  aggregateType = "Order",
  eventType = "OrderPlaced",
): PersistedEvent {
  return {
    globalPosition,
    aggregateType,
    aggregateId: `${aggregateType}-${globalPosition}`,
    aggregateVersion: 1,
    eventId: crypto.randomUUID(),
    eventType,
    eventVersion: 1,
    payload: new Uint8Array(),
    metadata: null,
    createdAt: new Date(0),
    traceId: null,
    correlationId: null,
    causationId: null,
  };
}

/** An event to append. */
export function draft(
  aggregateType = "Order",
  aggregateId = crypto.randomUUID(),
  eventType = "OrderPlaced",
): Event {
  return { aggregateType, aggregateId, eventType, payload: new TextEncoder().encode("{}") };
}

/** A clock that never fires anything (for code that must not wait). */
export const frozenClock: Clock = {
  now: () => 0,
  sleep: () => new Promise<void>(() => {}),
  setTimeout: () => 0,
  clearTimeout: () => {},
};

/**
 * Worker options for fleets of real processes in tests: fast heartbeats, rebalances and polls,
 * and a batch timeout out of the way (a stalled batch stays open until its process is killed).
 */
export const FAST_FLEET = {
  batchPause: 0,
  gapCheckInterval: 0,
  pollInterval: 100,
  maxPollInterval: 500,
  dispatcherInterval: 100,
  heartbeatInterval: 200,
  heartbeatTimeout: 1_500,
  rebalanceInterval: 300,
  assignmentPollInterval: 300,
  batchTimeout: 120_000,
} as const;

/** A worker child process started by {@link spawnWorkerChild}. */
export interface WorkerChild {
  readonly id: string;
  readonly proc: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
}

/** Starts the test file at `script` again as a child, in the child mode `plan` selects by `env`. */
export function spawnWorkerChild(
  script: string,
  env: string,
  plan: { readonly workerId: string },
): WorkerChild {
  const child = spawnScript(script, { [env]: JSON.stringify(plan) }, { collectStderr: true });
  return { id: plan.workerId, ...child };
}

/** The first window of a log (up to 10 events after position 0), checking `pendingToken` first. */
export function firstWindow(pendingToken: unknown = null): WindowQuery {
  return { after: 0, limit: 10, scan: 10, filter: null, pendingToken };
}

/** An append held open on an in-memory store (its position drawn, not committed). */
export interface HeldAppend {
  readonly position: number;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/** Opens a transaction appending `event` and keeps it open until `commit()` or `rollback()`. */
export async function holdAppend(store: InMemoryEventStore, event: Event): Promise<HeldAppend> {
  let finish!: (commit: boolean) => void;
  let position = 0;
  let appended!: () => void;
  const ready = new Promise<void>((resolve) => (appended = resolve));
  const done = store.transaction(async (tx) => {
    position = (await store.append(tx, any(), [event])).globalPositions[0];
    appended();
    if (!await new Promise<boolean>((resolve) => (finish = resolve))) {
      throw new Error("rolled back");
    }
  }).catch(() => {});
  await ready;
  return {
    position,
    commit: async () => (finish(true), await done),
    rollback: async () => (finish(false), await done),
  };
}
