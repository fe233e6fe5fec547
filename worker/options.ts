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
import { partitionName } from "./core/partitions.ts";
import { storedTextProblem } from "../internal/stored_text.ts";

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
  /** The consumer's events per batch (a filtered consumer passes more positions). Default 100. */
  batchSize?: number;
  /** First idle wait between probes. Default 1000. */
  pollInterval?: number;
  /** Idle waits double up to this. Default 30000; must be ≥ `pollInterval`. */
  maxPollInterval?: number;
  /**
   * Pause after a full batch, before the next (throttles a catch-up). Default 0: at once, as fast
   * as the database allows.
   */
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
   * While a gap waits, check this often whether it is final (an append's notification wakes the
   * check early). Default 200; 0 allowed.
   */
  gapCheckInterval?: number;
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
 */
export interface ResolvedRuntimeOptions {
  /** This worker's id: the one given, or a random UUID. */
  readonly workerId: string;
  /** The consumer's events per batch. */
  readonly batchSize: number;
  /** First idle wait between probes, in milliseconds. */
  readonly pollInterval: number;
  /** Longest idle wait, in milliseconds. */
  readonly maxPollInterval: number;
  /** Pause after a full batch, in milliseconds. */
  readonly batchPause: number;
  /** A batch running longer is cancelled and rolled back, in milliseconds. */
  readonly batchTimeout: number;
  /** Failures in a row of one consumer that stop the worker. */
  readonly maxConsecutiveFailures: number;
  /** The gap-skip escape hatch in milliseconds, or null (off: holes are waited out). */
  readonly maxGapWait: number | null;
  /** Interval of gap reports while a gap waits, in milliseconds. */
  readonly gapReportInterval: number;
  /** How often a waiting gap is checked, in milliseconds. */
  readonly gapCheckInterval: number;
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

/** Longest delay the platform timers represent (setTimeout clamps larger values to 1 ms). */
const MAX_DELAY = 2_147_483_647;
const MAX_BATCH = 100_000;
const MAX_FAILURES = 1_000_000;

/**
 * One core option: how a given value is checked and what an omitted one becomes. `In` is the type
 * {@link WorkerRuntimeOptions} declares, `Out` the one {@link ResolvedRuntimeOptions} holds;
 * `Listed` says whether {@link WORKER_DEFAULTS} (docs/worker.md, "Options") lists the default: the
 * tuning values do, ids and services (policy, clock, logger, observer, telemetry) do not.
 */
interface RuntimeOption<In, Out, Listed extends boolean> {
  /** Whether `WORKER_DEFAULTS` lists the default. */
  readonly listed: Listed;
  /** The value of an omitted option; called for each worker (a fresh id, a fresh logger). */
  readonly fallback: () => Out;
  /**
   * An omitted option's default adjusted to the other options (given and checked, or their
   * defaults), e.g. a default cap that never undercuts the configured floor. It may read only
   * options that have no `adapt` themselves, so the table's order does not matter.
   */
  readonly adapt?: (fallback: Out, options: ResolvedRuntimeOptions) => Out;
  /** Checks a given value (never `undefined`); throws a `WorkerConfigError` naming the option. */
  readonly check: (value: unknown, name: string) => Out;
  /** Type-level only: the type users give (never set). */
  readonly given?: In;
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (value === null) return "null";
  return typeof value === "object" ? "an object" : String(value);
}

function invalid(name: string, expected: string, value: unknown): WorkerConfigError {
  return new WorkerConfigError(`${name} must be ${expected}, got ${show(value)}`);
}

function isDelay(value: unknown, allowZero: boolean): value is number {
  return typeof value === "number" && Number.isFinite(value) && value <= MAX_DELAY &&
    (allowZero ? value >= 0 : value > 0);
}

/** A duration in milliseconds, above 0 (or, with `allowZero`, at least 0), that timers can wait. */
function duration(fallback: number, allowZero = false): RuntimeOption<number, number, true> {
  const expected = `a number of milliseconds ${allowZero ? ">= 0" : "> 0"} and <= ${MAX_DELAY}`;
  return {
    listed: true,
    fallback: () => fallback,
    check(value, name) {
      if (!isDelay(value, allowZero)) throw invalid(name, expected, value);
      return value;
    },
  };
}

/** A duration above 0, or null for off (the default). */
function durationOrOff(): RuntimeOption<number | null, number | null, true> {
  const expected = `null (off) or a number of milliseconds > 0 and <= ${MAX_DELAY}`;
  return {
    listed: true,
    fallback: () => null,
    check(value, name) {
      if (value !== null && !isDelay(value, false)) throw invalid(name, expected, value);
      return value;
    },
  };
}

/** A whole number from 1 to `max`. */
function count(fallback: number, max: number): RuntimeOption<number, number, true> {
  return {
    listed: true,
    fallback: () => fallback,
    check(value, name) {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 || value > max) {
        throw invalid(name, `an integer from 1 to ${max}`, value);
      }
      return value;
    },
  };
}

/** One of `allowed`. */
function choice<T extends string>(allowed: readonly T[], fallback: T): RuntimeOption<T, T, true> {
  const expected = `one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`;
  return {
    listed: true,
    fallback: () => fallback,
    check(value, name) {
      if (!allowed.includes(value as T)) throw invalid(name, expected, value);
      return value as T;
    },
  };
}

/** A name stored as text ({@link checkName}); `make` gives a fresh one when omitted. */
function storedName(make: () => string): RuntimeOption<string, string, false> {
  return service(make, checkName);
}

/** An id or a service: not listed in `WORKER_DEFAULTS`, `fallback()` when omitted. */
function service<In, Out = In>(
  fallback: () => Out,
  check: (value: unknown, name: string) => Out,
): RuntimeOption<In, Out, false> {
  return { listed: false, fallback, check };
}

/** A function, `fallback` when omitted. */
function fn<T>(fallback: T): RuntimeOption<T, T, false> {
  return service(() => fallback, (value, name) => {
    if (typeof value !== "function") throw invalid(name, "a function", value);
    return value as T;
  });
}

/** An object of hooks (any member may be absent), a fresh empty one when omitted. */
function hooks<T extends object>(): RuntimeOption<T, T, false> {
  return service(() => ({}) as T, (value, name) => {
    if (typeof value !== "object" || value === null) throw invalid(name, "an object", value);
    return value as T;
  });
}

function checkClock(value: unknown): Clock {
  const clock = value as Partial<Clock>;
  if (
    typeof clock !== "object" || clock === null || typeof clock.now !== "function" ||
    typeof clock.sleep !== "function" || typeof clock.setTimeout !== "function" ||
    typeof clock.clearTimeout !== "function"
  ) {
    throw new WorkerConfigError(
      `clock must implement now, sleep, setTimeout and clearTimeout, got ${show(value)}`,
    );
  }
  return value as Clock;
}

/**
 * Every core option, once: its name, its check (kind, unit, range) and its default. The option
 * types, {@link WORKER_DEFAULTS}, {@link RUNTIME_OPTION_KEYS} (unknown-option detection) and
 * {@link resolveRuntimeOptions} are derived from it; the documented interfaces
 * {@link WorkerRuntimeOptions} and {@link ResolvedRuntimeOptions} are checked against it at
 * compile time (below). Rules between options are {@link CROSS_OPTION_RULES}.
 */
const RUNTIME_OPTIONS = {
  workerId: storedName(() => crypto.randomUUID()),
  batchSize: count(100, MAX_BATCH),
  pollInterval: duration(1_000),
  maxPollInterval: {
    ...duration(30_000),
    adapt: (fallback: number, o: ResolvedRuntimeOptions) => Math.max(fallback, o.pollInterval),
  },
  batchPause: duration(0, true),
  batchTimeout: duration(30_000),
  maxConsecutiveFailures: count(5, MAX_FAILURES),
  maxGapWait: durationOrOff(),
  gapReportInterval: duration(5_000),
  gapCheckInterval: duration(200, true),
  dispatcher: choice<DispatcherStrategy>(["poll", "notify"], "poll"),
  dispatcherInterval: duration(200),
  notifyReconcileInterval: duration(1_000),
  heartbeatInterval: duration(5_000),
  heartbeatTimeout: {
    ...duration(30_000),
    adapt: (fallback: number, o: ResolvedRuntimeOptions) =>
      Math.max(fallback, o.heartbeatInterval * 2),
  },
  rebalanceInterval: duration(5_000),
  assignmentPollInterval: duration(1_000),
  leaderStrategy: choice<LeaderStrategy>(["advisory", "lease"], "advisory"),
  onPoison: fn<PoisonPolicy>(defaultPoisonPolicy),
  clock: service<Clock>(() => systemClock, checkClock),
  logger: hooks<Logger>(),
  observer: hooks<WorkerObserver>(),
  telemetry: service<Telemetry, Telemetry | null>(
    () => null,
    (value) => checkTelemetry(value, (message) => new WorkerConfigError(message)),
  ),
};

/**
 * Rules between options, checked after each option's own check and defaults: each names what is
 * wrong, or gives null.
 */
const CROSS_OPTION_RULES: readonly ((o: ResolvedRuntimeOptions) => string | null)[] = [
  (o) =>
    o.maxPollInterval >= o.pollInterval
      ? null
      : `maxPollInterval (${o.maxPollInterval}) must be >= pollInterval (${o.pollInterval})`,
  (o) =>
    o.heartbeatTimeout > o.heartbeatInterval
      ? null
      : `heartbeatTimeout (${o.heartbeatTimeout}) must be greater than heartbeatInterval ` +
        `(${o.heartbeatInterval})`,
  (o) =>
    o.leaderStrategy !== "lease" || o.rebalanceInterval < o.heartbeatTimeout
      ? null
      : `with leaderStrategy "lease", rebalanceInterval (${o.rebalanceInterval}) must be below ` +
        `heartbeatTimeout (${o.heartbeatTimeout}), the lease length: the leader renews every cycle`,
];

type Table = typeof RUNTIME_OPTIONS;
type OptionName = keyof Table;
type GivenType<K extends OptionName> = Table[K] extends { readonly given?: infer In } ? In
  : never;
type ResolvedType<K extends OptionName> = ReturnType<Table[K]["check"]>;
type ListedName = { [K in OptionName]: Table[K]["listed"] extends true ? K : never }[OptionName];

/** Whether `A` and `B` are the same type (not merely assignable to each other). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;

// Compile-time checks: the documented interfaces name exactly the table's options, with the
// table's types, and WORKER_DEFAULTS lists exactly the table's listed defaults. An option added,
// renamed or retyped in one place and not the other fails `deno check` here.
const _givenMatchesTable: Equal<
  Required<WorkerRuntimeOptions>,
  { [K in OptionName]: Exclude<GivenType<K>, undefined> }
> = true;
const _resolvedMatchesTable: Equal<
  ResolvedRuntimeOptions,
  { readonly [K in OptionName]: ResolvedType<K> }
> = true;
const _defaultsMatchTable: Equal<
  Required<Omit<WorkerRuntimeOptions, Exclude<OptionName, ListedName>>>,
  { [K in ListedName]: ResolvedType<K> }
> = true;

const OPTION_ENTRIES = Object.entries(RUNTIME_OPTIONS) as [
  OptionName,
  RuntimeOption<unknown, unknown, boolean>,
][];

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
> = Object.freeze(
  Object.fromEntries(
    OPTION_ENTRIES.filter(([, o]) => o.listed).map(([name, o]) => [name, o.fallback()]),
  ) as { [K in ListedName]: ResolvedType<K> },
);

/** The option names `resolveRuntimeOptions` understands; adapters add their own. */
export const RUNTIME_OPTION_KEYS: readonly string[] = Object.freeze(Object.keys(RUNTIME_OPTIONS));

/**
 * Checks a name the worker stores as text and looks rows up by (a worker id, a consumer name):
 * the rule of all stored text (internal/stored_text.ts: non-empty, at most 1,024 UTF-8 bytes, no
 * NUL, no lone surrogate), and not blank.
 */
export function checkName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.trim().length === 0) {
    throw new WorkerConfigError(`${what} must be a non-empty string, got ${show(value)}`);
  }
  const problem = storedTextProblem(value);
  if (problem !== null) throw new WorkerConfigError(`${what} ${problem}`);
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

/**
 * Applies defaults and validates every core option. Throws `WorkerConfigError` on the first bad
 * one (each option's own check first, then the rules between options); `extraKeys` are options an
 * adapter handles itself.
 */
export function resolveRuntimeOptions(
  options: WorkerRuntimeOptions = {},
  extraKeys: readonly string[] = [],
): ResolvedRuntimeOptions {
  if (typeof options !== "object" || options === null) {
    throw new WorkerConfigError(`worker options must be an object, got ${show(options)}`);
  }
  checkKnownKeys(options, [...RUNTIME_OPTION_KEYS, ...extraKeys]);
  const given = options as Record<string, unknown>;
  const resolved: Record<string, unknown> = {};
  for (const [name, option] of OPTION_ENTRIES) {
    const value = given[name];
    resolved[name] = value === undefined ? option.fallback() : option.check(value, name);
  }
  const result = resolved as unknown as ResolvedRuntimeOptions;
  for (const [name, option] of OPTION_ENTRIES) {
    if (given[name] === undefined && option.adapt !== undefined) {
      resolved[name] = option.adapt(resolved[name], result);
    }
  }
  for (const rule of CROSS_OPTION_RULES) {
    const problem = rule(result);
    if (problem !== null) throw new WorkerConfigError(problem);
  }
  return result;
}

function checkTypeList(value: unknown, what: string): void {
  if (value === undefined) return;
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string" || v.length === 0)) {
    throw new WorkerConfigError(`${what} must be an array of non-empty strings`);
  }
  // The filter runs in SQL: a type the store could never hold would fail every read, not match.
  for (const [i, type] of (value as string[]).entries()) {
    const problem = storedTextProblem(type);
    if (problem !== null) throw new WorkerConfigError(`${what}[${i}] ${problem}`);
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
    if (partitions !== undefined && partitions > 1) {
      // The partitions are stored under their own names, which must follow the stored-text rule
      // too: the longest one is the last partition's.
      const longest = partitionName(name, partitions - 1, partitions);
      const problem = storedTextProblem(longest);
      if (problem !== null) {
        throw new WorkerConfigError(
          `partition names of consumer at index ${index} (name#<index>of${partitions}) ${problem}`,
        );
      }
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
