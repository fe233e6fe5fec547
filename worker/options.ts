/**
 * Worker options: defaults (listed in docs/worker.md, "Options") and validation. A bad value is a
 * `WorkerConfigError` at construction, never a silent default, a hang or a hot loop.
 *
 * @module
 */
import type { Options as PostgresOptions } from "postgres";
import { type Clock, systemClock } from "../internal/clock.ts";
import type { Logger } from "../store/logger.ts";
import { checkTelemetry, type Telemetry } from "../internal/telemetry.ts";
import { WorkerConfigError } from "./errors.ts";
import type { AnyConsumer, PoisonPolicy, WorkerObserver } from "./types.ts";
import { defaultPoisonPolicy } from "./core/poison.ts";

/**
 * How consumers learn about new events besides their own polling.
 *
 * @example
 * ```ts
 * import type { DispatcherStrategy, WorkerOptions } from "@eventsalsa/eventsalsa/worker";
 * const dispatcher: DispatcherStrategy = "notify";
 * const options: WorkerOptions = { dispatcher, notifyChannel: "events" };
 * ```
 */
export type DispatcherStrategy = "poll" | "notify";

/**
 * How workers elect the leader that rebalances: `advisory` (a PostgreSQL session advisory lock,
 * held on a reserved connection; released the moment the leader's session ends) or `lease` (a
 * row with an expiry in database time, renewed every `rebalanceInterval`; safe behind PgBouncer
 * transaction pooling). Every worker of one fleet must use the same strategy.
 *
 * @example
 * ```ts
 * import type { LeaderStrategy, WorkerOptions } from "@eventsalsa/eventsalsa/worker";
 * const leaderStrategy: LeaderStrategy = "lease"; // e.g. behind PgBouncer in transaction mode
 * const options: WorkerOptions = { leaderStrategy };
 * ```
 */
export type LeaderStrategy = "advisory" | "lease";

/**
 * Options of the runtime-agnostic core, shared by the PostgreSQL `Worker` and the in-memory one.
 * Durations are milliseconds.
 *
 * @example
 * ```ts
 * import type { WorkerRuntimeOptions } from "@eventsalsa/eventsalsa/worker";
 * const options: WorkerRuntimeOptions = { batchSize: 500, pollInterval: 250, maxGapWait: 60_000 };
 * ```
 */
export interface WorkerRuntimeOptions {
  /** This worker's id (text); a random UUID when omitted. */
  workerId?: string;
  /** Events read per batch (unscoped window). Default 100. */
  batchSize?: number;
  /** First idle wait between probes. Default 1000. */
  pollInterval?: number;
  /** Idle waits double up to this. Default 30000; must be ≥ `pollInterval`. */
  maxPollInterval?: number;
  /** Pause after a full batch and while a gap waits. Default 200; 0 allowed. */
  batchPause?: number;
  /** A batch running longer is cancelled and rolled back. Default 30000. */
  batchTimeout?: number;
  /** A consumer failing this many times in a row stops the worker. Default 5. */
  maxConsecutiveFailures?: number;
  /**
   * Escape hatch: skip a hole that has waited this long, recording the skip in the audit table.
   * Off (null) by default: holes are waited out, a committed event is never skipped.
   */
  maxGapWait?: number | null;
  /** While a gap waits, report it (observer, log, status) at this interval. Default 5000. */
  gapReportInterval?: number;
  /**
   * `poll` (default) or `notify` (LISTEN, with a reconciliation poll). On the embedded PGlite the
   * worker polls whatever this says (one session: no LISTEN connection).
   */
  dispatcher?: DispatcherStrategy;
  /** How often the poll dispatcher checks the latest position. Default 200. */
  dispatcherInterval?: number;
  /** How often the notify dispatcher reconciles by polling anyway. Default 1000. */
  notifyReconcileInterval?: number;
  /** Heartbeat period of the worker's registration row. Default 5000. */
  heartbeatInterval?: number;
  /** A worker silent this long counts as dead. Default 30000; must exceed `heartbeatInterval`. */
  heartbeatTimeout?: number;
  /**
   * Leader cycle: how often the leader checks membership and rebalances, and non-leaders try to
   * take over. Joins and graceful leaves are acted on at once (notification). Default 5000; with
   * `lease` it must be below `heartbeatTimeout` (the lease length).
   */
  rebalanceInterval?: number;
  /**
   * How often a worker re-reads its assignments anyway; notifications usually tell it sooner.
   * Default 1000.
   */
  assignmentPollInterval?: number;
  /**
   * Leader election strategy: `advisory` (default) or `lease`. On the embedded PGlite the worker
   * uses `lease` whatever this says (one session: no advisory session of its own).
   */
  leaderStrategy?: LeaderStrategy;
  /** The default poison policy of every consumer. Default: `PoisonEventError` → dead letter. */
  onPoison?: PoisonPolicy;
  /** Time source for every timer; `systemClock` by default, `FakeClock` in tests. */
  clock?: Clock;
  /** Structured log records. */
  logger?: Logger;
  /** Metrics and tracing hooks. */
  observer?: WorkerObserver;
  /**
   * OpenTelemetry `{ tracer, meter }` (see docs/worker.md): a span per batch transaction, and
   * handled events, batch durations, consumer lag, gap waits and dead letters as metrics. No
   * telemetry when omitted.
   */
  telemetry?: Telemetry;
}

/**
 * Table names of the worker's schema, each optionally schema-qualified.
 *
 * @example
 * ```ts
 * import type { WorkerTableOptions } from "@eventsalsa/eventsalsa/worker";
 * const tables: WorkerTableOptions = { consumerCheckpointsTable: "infra.consumer_checkpoints" };
 * ```
 */
export interface WorkerTableOptions {
  /** Default `worker_nodes`. */
  workerNodesTable?: string;
  /** Default `consumer_assignments`. */
  consumerAssignmentsTable?: string;
  /** Default `consumer_checkpoints`. */
  consumerCheckpointsTable?: string;
  /** Default `consumer_gap_skips`. */
  consumerGapSkipsTable?: string;
  /** Default `consumer_dead_letters`. */
  consumerDeadLettersTable?: string;
  /** Default `worker_leader_election`. */
  leaderElectionTable?: string;
}

/**
 * Options of the PostgreSQL {@link Worker}: the core options, table names, and the notify
 * dispatcher's channel and connection.
 *
 * @example
 * ```ts
 * import type { WorkerOptions } from "@eventsalsa/eventsalsa/worker";
 * const options: WorkerOptions = { dispatcher: "notify", notifyChannel: "events", batchSize: 200 };
 * ```
 */
export interface WorkerOptions extends WorkerRuntimeOptions, WorkerTableOptions {
  /** LISTEN channel for `dispatcher: "notify"`; the store's `notifyChannel` when omitted. */
  notifyChannel?: string;
  /**
   * The dedicated LISTEN connections (URL or postgres.js options): the notify dispatcher's and the
   * coordination listener's. Derived from the pool's own options when omitted; behind PgBouncer in
   * transaction mode, point it at PostgreSQL directly (LISTEN needs a session).
   */
  // deno-lint-ignore no-explicit-any
  notifyConnection?: string | PostgresOptions<any>;
  /**
   * Channel on which workers announce joins and leaves and the leader announces assignment
   * changes (an identifier without schema). Default `eventsalsa_worker`. `null`: no notifications;
   * workers then learn about changes by polling only (`assignmentPollInterval`,
   * `rebalanceInterval`), with no LISTEN connection. On the embedded PGlite the worker chooses
   * `null` by itself.
   */
  coordinationChannel?: string | null;
}

/**
 * Every core option with its default applied, as `WorkerRuntime.options` shows it. Each member
 * means what the {@link WorkerRuntimeOptions} member of the same name means.
 *
 * @example
 * ```ts
 * import type { ResolvedRuntimeOptions, WorkerRuntime } from "@eventsalsa/eventsalsa/worker";
 * declare const runtime: WorkerRuntime<unknown>;
 * const options: ResolvedRuntimeOptions = runtime.options;
 * console.log(options.batchSize, options.pollInterval); // 100 1000 unless configured
 * ```
 */
export interface ResolvedRuntimeOptions {
  /** This worker's id: the one given, or a random UUID. */
  readonly workerId: string;
  /** Events read per batch. */
  readonly batchSize: number;
  /** First idle wait between probes, in milliseconds. */
  readonly pollInterval: number;
  /** Longest idle wait, in milliseconds. */
  readonly maxPollInterval: number;
  /** Pause after a full batch and while a gap waits, in milliseconds. */
  readonly batchPause: number;
  /** A batch running longer is cancelled and rolled back, in milliseconds. */
  readonly batchTimeout: number;
  /** Failures in a row of one consumer that stop the worker. */
  readonly maxConsecutiveFailures: number;
  /** The gap-skip escape hatch in milliseconds, or null (off: holes are waited out). */
  readonly maxGapWait: number | null;
  /** Interval of gap reports while a gap waits, in milliseconds. */
  readonly gapReportInterval: number;
  /** `poll` or `notify`. */
  readonly dispatcher: DispatcherStrategy;
  /** Poll dispatcher period, in milliseconds. */
  readonly dispatcherInterval: number;
  /** Notify dispatcher reconciliation period, in milliseconds. */
  readonly notifyReconcileInterval: number;
  /** Heartbeat period of the registration row, in milliseconds. */
  readonly heartbeatInterval: number;
  /** Silence after which a worker counts as dead, in milliseconds. */
  readonly heartbeatTimeout: number;
  /** Leader cycle, in milliseconds. */
  readonly rebalanceInterval: number;
  /** Period of the assignment re-read, in milliseconds. */
  readonly assignmentPollInterval: number;
  /** `advisory` or `lease`. */
  readonly leaderStrategy: LeaderStrategy;
  /** The default poison policy of every consumer. */
  readonly onPoison: PoisonPolicy;
  /** Time source of every timer. */
  readonly clock: Clock;
  /** Where structured log records go. */
  readonly logger: Logger;
  /** Metrics and tracing hooks. */
  readonly observer: WorkerObserver;
  /** OpenTelemetry tracer and meter, or null when the option was omitted. */
  readonly telemetry: Telemetry | null;
}

/**
 * The defaults, as documented in docs/worker.md.
 *
 * @example
 * ```ts
 * import { WORKER_DEFAULTS } from "@eventsalsa/eventsalsa/worker";
 * console.log(WORKER_DEFAULTS.batchSize); // 100
 * ```
 */
export const WORKER_DEFAULTS: Readonly<
  Required<
    Omit<
      WorkerRuntimeOptions,
      "workerId" | "onPoison" | "clock" | "logger" | "observer" | "telemetry"
    >
  >
> = Object.freeze({
  batchSize: 100,
  pollInterval: 1_000,
  maxPollInterval: 30_000,
  batchPause: 200,
  batchTimeout: 30_000,
  maxConsecutiveFailures: 5,
  maxGapWait: null,
  gapReportInterval: 5_000,
  dispatcher: "poll",
  dispatcherInterval: 200,
  notifyReconcileInterval: 1_000,
  heartbeatInterval: 5_000,
  heartbeatTimeout: 30_000,
  rebalanceInterval: 5_000,
  assignmentPollInterval: 1_000,
  leaderStrategy: "advisory",
});

/** Longest delay the platform timers represent (setTimeout clamps larger values to 1 ms). */
const MAX_DELAY = 2_147_483_647;
const MAX_BATCH = 100_000;

const RUNTIME_KEYS = [
  "workerId",
  "batchSize",
  "pollInterval",
  "maxPollInterval",
  "batchPause",
  "batchTimeout",
  "maxConsecutiveFailures",
  "maxGapWait",
  "gapReportInterval",
  "dispatcher",
  "dispatcherInterval",
  "notifyReconcileInterval",
  "heartbeatInterval",
  "heartbeatTimeout",
  "rebalanceInterval",
  "assignmentPollInterval",
  "leaderStrategy",
  "onPoison",
  "clock",
  "logger",
  "observer",
  "telemetry",
] as const;

/** The option names `resolveRuntimeOptions` understands; adapters add their own. */
export const RUNTIME_OPTION_KEYS: readonly string[] = RUNTIME_KEYS;

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (value === null) return "null";
  return typeof value === "object" ? "an object" : String(value);
}

function duration(value: unknown, what: string, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" || !Number.isFinite(value) || value < 0 ||
    (!allowZero && value === 0) || value > MAX_DELAY
  ) {
    throw new WorkerConfigError(
      `${what} must be a number of milliseconds ${
        allowZero ? ">= 0" : "> 0"
      } and <= ${MAX_DELAY}, ` +
        `got ${show(value)}`,
    );
  }
  return value;
}

function count(value: unknown, what: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new WorkerConfigError(`${what} must be an integer from 1 to ${max}, got ${show(value)}`);
  }
  return value;
}

function oneOf<T extends string>(
  value: unknown,
  what: string,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value as T)) {
    throw new WorkerConfigError(
      `${what} must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}, got ${
        show(value)
      }`,
    );
  }
  return value as T;
}

/** Checks a name that is stored as text: non-empty, no NUL, well-formed, bounded. */
export function checkName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.trim().length === 0) {
    throw new WorkerConfigError(`${what} must be a non-empty string, got ${show(value)}`);
  }
  if (value.length > 200) throw new WorkerConfigError(`${what} is longer than 200 characters`);
  if (value.includes("\u0000") || !value.isWellFormed()) {
    throw new WorkerConfigError(`${what} contains a NUL character or a lone surrogate`);
  }
  return value;
}

/** Rejects keys no option has (typos such as `pollIntervalMs` would otherwise be ignored). */
export function checkKnownKeys(options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new WorkerConfigError(`unknown worker option ${JSON.stringify(key)}`);
    }
  }
}

function checkClock(value: unknown): Clock {
  if (value === undefined) return systemClock;
  const clock = value as Partial<Clock>;
  if (
    typeof clock !== "object" || clock === null || typeof clock.now !== "function" ||
    typeof clock.sleep !== "function" || typeof clock.setTimeout !== "function" ||
    typeof clock.clearTimeout !== "function"
  ) {
    throw new WorkerConfigError("clock must implement now, sleep, setTimeout and clearTimeout");
  }
  return value as Clock;
}

function checkObject<T>(value: unknown, what: string): T {
  if (value === undefined) return {} as T;
  if (typeof value !== "object" || value === null) {
    throw new WorkerConfigError(`${what} must be an object, got ${show(value)}`);
  }
  return value as T;
}

/**
 * Applies defaults and validates every core option. Throws `WorkerConfigError` on the first bad
 * one; `extraKeys` are options an adapter handles itself.
 */
export function resolveRuntimeOptions(
  options: WorkerRuntimeOptions = {},
  extraKeys: readonly string[] = [],
): ResolvedRuntimeOptions {
  if (typeof options !== "object" || options === null) {
    throw new WorkerConfigError(`worker options must be an object, got ${show(options)}`);
  }
  checkKnownKeys(options, [...RUNTIME_KEYS, ...extraKeys]);
  const d = WORKER_DEFAULTS;
  const pollInterval = duration(options.pollInterval, "pollInterval", d.pollInterval);
  const maxPollInterval = duration(
    options.maxPollInterval,
    "maxPollInterval",
    Math.max(d.maxPollInterval, pollInterval),
  );
  if (maxPollInterval < pollInterval) {
    throw new WorkerConfigError(
      `maxPollInterval (${maxPollInterval}) must be >= pollInterval (${pollInterval})`,
    );
  }
  const heartbeatInterval = duration(
    options.heartbeatInterval,
    "heartbeatInterval",
    d.heartbeatInterval,
  );
  const heartbeatTimeout = duration(
    options.heartbeatTimeout,
    "heartbeatTimeout",
    Math.max(d.heartbeatTimeout, heartbeatInterval * 2),
  );
  if (heartbeatTimeout <= heartbeatInterval) {
    throw new WorkerConfigError(
      `heartbeatTimeout (${heartbeatTimeout}) must be greater than heartbeatInterval (${heartbeatInterval})`,
    );
  }
  const rebalanceInterval = duration(
    options.rebalanceInterval,
    "rebalanceInterval",
    d.rebalanceInterval,
  );
  const leaderStrategy = oneOf(
    options.leaderStrategy,
    "leaderStrategy",
    ["advisory", "lease"],
    d.leaderStrategy,
  );
  if (leaderStrategy === "lease" && rebalanceInterval >= heartbeatTimeout) {
    throw new WorkerConfigError(
      `with leaderStrategy "lease", rebalanceInterval (${rebalanceInterval}) must be below ` +
        `heartbeatTimeout (${heartbeatTimeout}), the lease length: the leader renews every cycle`,
    );
  }
  if (options.onPoison !== undefined && typeof options.onPoison !== "function") {
    throw new WorkerConfigError(`onPoison must be a function, got ${show(options.onPoison)}`);
  }
  return {
    workerId: options.workerId === undefined
      ? crypto.randomUUID()
      : checkName(options.workerId, "workerId"),
    batchSize: count(options.batchSize, "batchSize", d.batchSize, MAX_BATCH),
    pollInterval,
    maxPollInterval,
    batchPause: duration(options.batchPause, "batchPause", d.batchPause, true),
    batchTimeout: duration(options.batchTimeout, "batchTimeout", d.batchTimeout),
    maxConsecutiveFailures: count(
      options.maxConsecutiveFailures,
      "maxConsecutiveFailures",
      d.maxConsecutiveFailures,
      1_000_000,
    ),
    maxGapWait: options.maxGapWait === null || options.maxGapWait === undefined
      ? null
      : duration(options.maxGapWait, "maxGapWait", 0),
    gapReportInterval: duration(
      options.gapReportInterval,
      "gapReportInterval",
      d.gapReportInterval,
    ),
    dispatcher: oneOf(options.dispatcher, "dispatcher", ["poll", "notify"], d.dispatcher),
    dispatcherInterval: duration(
      options.dispatcherInterval,
      "dispatcherInterval",
      d.dispatcherInterval,
    ),
    notifyReconcileInterval: duration(
      options.notifyReconcileInterval,
      "notifyReconcileInterval",
      d.notifyReconcileInterval,
    ),
    heartbeatInterval,
    heartbeatTimeout,
    rebalanceInterval,
    assignmentPollInterval: duration(
      options.assignmentPollInterval,
      "assignmentPollInterval",
      d.assignmentPollInterval,
    ),
    leaderStrategy,
    onPoison: options.onPoison ?? defaultPoisonPolicy,
    clock: checkClock(options.clock),
    logger: checkObject<Logger>(options.logger, "logger"),
    observer: checkObject<WorkerObserver>(options.observer, "observer"),
    telemetry: checkTelemetry(options.telemetry, (message) => new WorkerConfigError(message)),
  };
}

function checkTypeList(value: unknown, what: string): void {
  if (value === undefined) return;
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string" || v.length === 0)) {
    throw new WorkerConfigError(`${what} must be an array of non-empty strings`);
  }
}

/**
 * Checks the consumer list: an array of objects with a unique non-empty name, `handle` or
 * `handleBatch`, and well-formed filters. Returns a copy.
 */
export function checkConsumers<Tx>(consumers: unknown): AnyConsumer<Tx>[] {
  if (!Array.isArray(consumers)) {
    throw new WorkerConfigError(`consumers must be an array, got ${show(consumers)}`);
  }
  const seen = new Set<string>();
  consumers.forEach((consumer: AnyConsumer<Tx>, index) => {
    if (typeof consumer !== "object" || consumer === null) {
      throw new WorkerConfigError(`consumer at index ${index} is not an object`);
    }
    const name = checkName(consumer.name, `name of consumer at index ${index}`);
    if (seen.has(name)) {
      throw new WorkerConfigError(`duplicate consumer name ${JSON.stringify(name)}`);
    }
    seen.add(name);
    if (typeof consumer.handle !== "function" && typeof consumer.handleBatch !== "function") {
      throw new WorkerConfigError(
        `consumer ${JSON.stringify(name)} needs a handle or handleBatch function`,
      );
    }
    if (consumer.handle !== undefined && typeof consumer.handle !== "function") {
      throw new WorkerConfigError(`handle of consumer ${JSON.stringify(name)} must be a function`);
    }
    if (consumer.handleBatch !== undefined && typeof consumer.handleBatch !== "function") {
      throw new WorkerConfigError(
        `handleBatch of consumer ${JSON.stringify(name)} must be a function`,
      );
    }
    if (consumer.onPoison !== undefined && typeof consumer.onPoison !== "function") {
      throw new WorkerConfigError(
        `onPoison of consumer ${JSON.stringify(name)} must be a function`,
      );
    }
    checkTypeList(consumer.aggregateTypes, `aggregateTypes of consumer ${JSON.stringify(name)}`);
    checkTypeList(consumer.eventTypes, `eventTypes of consumer ${JSON.stringify(name)}`);
    const { startFrom, reset, partitions, mode } = consumer;
    if (
      startFrom !== undefined && startFrom !== "beginning" && startFrom !== "end" &&
      !(Number.isSafeInteger(startFrom) && (startFrom as number) >= 0)
    ) {
      throw new WorkerConfigError(
        `startFrom of consumer ${JSON.stringify(name)} must be "beginning", "end" or a ` +
          `non-negative integer position, got ${show(startFrom)}`,
      );
    }
    if (reset !== undefined && typeof reset !== "function") {
      throw new WorkerConfigError(`reset of consumer ${JSON.stringify(name)} must be a function`);
    }
    if (
      partitions !== undefined &&
      !(Number.isSafeInteger(partitions) && partitions >= 1 && partitions <= 1_024)
    ) {
      throw new WorkerConfigError(
        `partitions of consumer ${JSON.stringify(name)} must be an integer from 1 to 1024, ` +
          `got ${show(partitions)}`,
      );
    }
    if (mode !== undefined && mode !== "transactional" && mode !== "detached") {
      throw new WorkerConfigError(
        `mode of consumer ${JSON.stringify(name)} must be "transactional" or "detached", ` +
          `got ${show(mode)}`,
      );
    }
  });
  return [...consumers];
}
