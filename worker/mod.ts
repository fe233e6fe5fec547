/**
 * The eventsalsa worker: asynchronous consumers (projections, process managers, relays) over the
 * event store, with checkpoints, the no-timeout gap rule, back-off and dead letters.
 *
 * @module
 */
export { type Clock, systemClock } from "../internal/clock.ts";
export * from "./errors.ts";
export type * from "./types.ts";
export * from "./options.ts";
export { defaultPoisonPolicy, skipPoisonEvents } from "./core/poison.ts";
export { failureBackoff, nextPollInterval } from "./core/backoff.ts";
export { computeFrontier, type Frontier } from "./core/frontier.ts";
export { type GapPlan, type GapToken, GapTracker, type WindowRead } from "./core/gap_rule.ts";
export { pause, Wakeup } from "./core/wakeup.ts";
export type * from "./core/coordination.ts";
export {
  type DispatcherContext,
  runNotifyDispatcher,
  runPollDispatcher,
} from "./core/dispatcher.ts";
export {
  ConsumerLoop,
  type ConsumerLoopContext,
  type ConsumerLoopExit,
} from "./core/consumer_loop.ts";
export { redriveWith } from "./core/redrive.ts";
export { WorkerRuntime } from "./core/runtime.ts";
export { Worker } from "./worker.ts";
export type { WorkerStore } from "./postgres/coordinator.ts";
export { migrate, migrationSql } from "./postgres/migration.ts";
export { status, type StatusOptions } from "./postgres/status.ts";
export { retryDeadLetter } from "./postgres/dead_letters.ts";
