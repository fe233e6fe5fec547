/**
 * What every worker offers — the PostgreSQL `Worker` and the in-memory `InMemoryWorker` alike — in
 * front of the one runtime they share.
 *
 * @module
 */
import type { WorkerRuntime } from "./core/runtime.ts";
import type { WaitForPositionOptions } from "./core/wait.ts";

const runtimes = new WeakMap<BaseWorker, WorkerRuntime<never>>();

/** Binds a worker to the runtime behind it (its constructor does it once). Internal. */
export function bindRuntime<Tx>(worker: BaseWorker, runtime: WorkerRuntime<Tx>): void {
  runtimes.set(worker, runtime as unknown as WorkerRuntime<never>);
}

/** The runtime behind a worker (tests look at its resolved options). Internal. */
export function runtimeOf(worker: BaseWorker): WorkerRuntime<unknown> {
  const runtime = runtimes.get(worker);
  if (runtime === undefined) throw new TypeError("not a constructed worker");
  return runtime as unknown as WorkerRuntime<unknown>;
}

/**
 * The face of a worker: lifecycle, reset and read-your-writes. `Worker` (PostgreSQL) and
 * `InMemoryWorker` (tests) are the two kinds; construct one of those.
 *
 * @example
 * ```ts
 * import type { BaseWorker } from "@eventsalsa/eventsalsa/worker";
 * async function runUntilStopped(worker: BaseWorker, signal: AbortSignal): Promise<void> {
 *   await worker.start(signal);
 * }
 * ```
 */
export abstract class BaseWorker {
  /** This worker's id (`workerId`, or a generated one). */
  get id(): string {
    return runtimeOf(this).id;
  }

  /** Whether `start` is running. */
  get running(): boolean {
    return runtimeOf(this).running;
  }

  /** Whether this worker currently believes it is the leader. */
  get isLeader(): boolean {
    return runtimeOf(this).isLeader;
  }

  /** The consumers this worker runs now (assigned to it, loops started). */
  get runningConsumers(): string[] {
    return runtimeOf(this).runningConsumers;
  }

  /**
   * Runs the worker. Resolves after `stop()` or when `signal` aborts (in-flight batches are
   * cancelled and rolled back, the registration removed); rejects with the first fatal error
   * (`ConsecutiveFailuresError`, `WorkerSetupError`, …). A stopped worker can start again.
   *
   * @example
   * ```ts
   * import type { Worker } from "@eventsalsa/eventsalsa/worker";
   * declare const worker: Worker;
   * const controller = new AbortController();
   * const running = worker.start(controller.signal);
   * controller.abort();
   * await running;
   * ```
   */
  start(signal?: AbortSignal): Promise<void> {
    return runtimeOf(this).start(signal);
  }

  /**
   * Stops the worker; resolves when it has stopped (never rejects). No-op when not running.
   *
   * @example
   * ```ts
   * import type { Worker } from "@eventsalsa/eventsalsa/worker";
   * declare const worker: Worker;
   * await worker.stop();
   * ```
   */
  stop(): Promise<void> {
    return runtimeOf(this).stop();
  }

  /**
   * Resets one of this worker's consumers to `options.toPosition` (default 0: a rebuild), safely
   * while the fleet runs: fenced like a batch, with the consumer's `reset` hook (clear the read
   * model there) in the same transaction as the checkpoint. Whichever worker runs the consumer
   * carries on from the new position. Resolves the checkpoint it had before.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * import { Worker } from "@eventsalsa/eventsalsa/worker";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const worker = new Worker(sql, new PostgresStore(), [{
   *   name: "orders_view",
   *   async handle(tx, event) {},
   *   async reset(tx) { await tx`TRUNCATE orders_view`; },
   * }]);
   * await worker.resetConsumer("orders_view");
   * ```
   */
  resetConsumer(name: string, options?: { toPosition?: number }): Promise<number> {
    return runtimeOf(this).resetConsumer(name, options);
  }

  /**
   * Read-your-writes: resolves once each of `options.consumers` (default: all of this worker's)
   * has a checkpoint at or past `position` — has handled or passed every event up to it —
   * whichever worker of the fleet runs it. Rejects with `WaitTimeoutError` after
   * `options.timeout` (default 30 s), or with the signal's reason.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { any, PostgresStore } from "@eventsalsa/eventsalsa/store";
   * import { Worker } from "@eventsalsa/eventsalsa/worker";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const store = new PostgresStore();
   * const worker = new Worker(sql, store, [{ name: "orders_view", handle() {} }]);
   * const running = worker.start();
   * const { globalPositions } = await store.append(sql, any(), [
   *   { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderPlaced", payload: new Uint8Array() },
   * ]);
   * await worker.waitForPosition(globalPositions.at(-1)!, { timeout: 5_000 });
   * await worker.stop();
   * await running;
   * ```
   */
  waitForPosition(position: number, options?: WaitForPositionOptions): Promise<void> {
    return runtimeOf(this).waitForPosition(position, options);
  }
}
