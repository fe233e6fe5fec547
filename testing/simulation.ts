/**
 * The multi-worker simulation: N workers — the real worker core, unchanged — on one
 * {@link InMemoryCoordinator}, driven by a simulated clock and a seeded random schedule of
 * appends (with version conflicts, rollbacks and held transactions that leave holes), joins,
 * graceful leaves, crashes without cleanup, pauses past the heartbeat timeout, network
 * partitions and leader loss. After every step it checks:
 *
 * - no position is committed twice for a consumer, and commits come in position order;
 * - every committed event is handled exactly once per consumer, in order: what a consumer's
 *   handler committed equals the matching committed events up to its checkpoint;
 * - a batch commits only for the consumer's current owner, and at most one worker is inside a
 *   batch of a consumer at any time; checkpoints never go back;
 * - every rebalance a leader applied is valid for what it read (eligible, balanced within one)
 *   and, in a homogeneous fleet, moves no more consumers than needed;
 * - after settling (faults healed, time passed): every consumer is on a live worker that
 *   registered it, loads are balanced within one, each worker runs exactly its consumers, and
 *   every consumer has caught up.
 *
 * A failure throws {@link WorkerSimulationError} with the seed, the step, the recent trace and a
 * command that replays it. Pass your own consumers to run them under the same faults.
 *
 * @module
 */
import type { Clock } from "../internal/clock.ts";
import { ConcurrencyError } from "../store/errors.ts";
import { any, exact } from "../store/expected_version.ts";
import type { PersistedEvent } from "../store/types.ts";
import type {
  AssignmentChange,
  AssignmentSnapshot,
  WorkerMembership,
} from "../worker/core/assignment.ts";
import { applyAssignmentChanges } from "../worker/core/assignment.ts";
import type {
  BatchOutcome,
  BatchRequest,
  BatchSession,
  CoordinationChange,
  Coordinator,
  LeaderElection,
  LeaderElectionSettings,
  ListenerHandle,
} from "../worker/core/coordination.ts";
import type { GapToken, WindowRead } from "../worker/core/gap_rule.ts";
import { WorkerRuntime } from "../worker/core/runtime.ts";
import {
  ConsecutiveFailuresError,
  errorText,
  WorkerRegistrationLostError,
} from "../worker/errors.ts";
import type { LeaderStrategy, WorkerRuntimeOptions } from "../worker/options.ts";
import type { Consumer, GapBlocker, GapWait } from "../worker/types.ts";
import { assignmentProblems, countMoves, minimalMoves } from "./assignment_invariants.ts";
import { InMemoryCoordinator } from "./in_memory_coordinator.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "./in_memory_store.ts";
import { SeededRandom } from "./seeded_random.ts";
import { PausableClock, SimulationClock } from "./simulation_clock.ts";

/**
 * What the schedule can do in one step; the weights of
 * {@link WorkerSimulationOptions.actions} use these names.
 *
 * @example
 * ```ts
 * import type { SimulationAction } from "@eventsalsa/eventsalsa/testing";
 * const rare: SimulationAction = "leaderLoss";
 * ```
 */
export type SimulationAction =
  | "append"
  | "conflict"
  | "rollback"
  | "hold"
  | "join"
  | "leave"
  | "crash"
  | "pause"
  | "partition"
  | "leaderLoss"
  | "idle";

/** The default weights of the schedule's actions. */
const DEFAULT_ACTIONS: Readonly<Record<SimulationAction, number>> = Object.freeze({
  append: 8,
  conflict: 1,
  rollback: 1,
  hold: 1,
  join: 2,
  leave: 1,
  crash: 1,
  pause: 1,
  partition: 1,
  leaderLoss: 1,
  idle: 2,
});

/**
 * Options of {@link simulateWorkers}.
 *
 * @example
 * ```ts
 * import type { WorkerSimulationOptions } from "@eventsalsa/eventsalsa/testing";
 * const options: WorkerSimulationOptions = { seed: 7, steps: 60, maxWorkers: 5, actions: { crash: 3 } };
 * ```
 */
export interface WorkerSimulationOptions {
  /** The seed of the schedule; the same seed replays the same run. */
  seed: number;
  /** Schedule steps (default 40); the run also settles every `settleEvery` steps and at the end. */
  steps?: number;
  /** Steps between settle-and-check phases (default 20). */
  settleEvery?: number;
  /** Workers at the start (default 2). */
  initialWorkers?: number;
  /** Workers running at once, at most (default 4). */
  maxWorkers?: number;
  /**
   * Your consumers (their handlers receive an `InMemoryTransaction`; write through
   * `tx.onCommit`). Each simulated worker runs its own wrapped copy. Default: four built-in
   * consumers (global, scoped by aggregate type, by event type, and a `handleBatch` one).
   */
  consumers?: readonly Consumer<InMemoryTransaction>[];
  /** `advisory`, `lease`, or `random` (default: chosen by the seed). */
  leaderStrategy?: LeaderStrategy | "random";
  /**
   * Whether workers may register different subsets of the consumers (default: chosen by the
   * seed). Each consumer stays registered by at least the initial workers.
   */
  heterogeneous?: boolean | "random";
  /** Weights of the schedule's actions (0 turns one off); merged over the defaults. */
  actions?: Partial<Record<SimulationAction, number>>;
  /** Worker options merged over the simulation's (fast, simulated-time) defaults. */
  workerOptions?: WorkerRuntimeOptions;
  /** Your own invariants, run after every step; throw to fail the run. */
  check?: (view: SimulationView) => void | Promise<void>;
  /** Receives every trace line as it happens (default: kept, and shown on failure). */
  trace?: (line: string) => void;
  /** The replay command shown on failure; default `deno run -A testing/simulation_replay.ts`. */
  replayCommand?: (seed: number, steps: number) => string;
}

/**
 * What {@link WorkerSimulationOptions.check} sees after each step.
 *
 * @example
 * ```ts
 * import type { SimulationView } from "@eventsalsa/eventsalsa/testing";
 * const noLag = (view: SimulationView) => view.coordinator.checkpoint("c0") >= 0;
 * ```
 */
export interface SimulationView {
  /** The step just run, from 1 (0 before the first). */
  readonly step: number;
  /** The simulated clock every worker runs on. */
  readonly clock: SimulationClock;
  /** The shared in-memory event store. */
  readonly store: InMemoryEventStore;
  /** The shared in-memory coordinator (checkpoints, assignments, dead letters). */
  readonly coordinator: InMemoryCoordinator;
  /** Workers started so far, with their state. */
  readonly workers: readonly SimulatedWorkerState[];
}

/**
 * A simulated worker as the view shows it.
 *
 * @example
 * ```ts
 * import type { SimulatedWorkerState } from "@eventsalsa/eventsalsa/testing";
 * const running = (w: SimulatedWorkerState) => w.state === "up";
 * ```
 */
export interface SimulatedWorkerState {
  /** The worker id. */
  readonly id: string;
  /** `up`, `paused`, `partitioned`, `crashed`, or `stopped` (left, or stopped itself). */
  readonly state: "up" | "paused" | "partitioned" | "crashed" | "stopped";
  /** The consumers it registered. */
  readonly consumers: readonly string[];
  /** The consumers it runs now. */
  readonly running: readonly string[];
}

/**
 * What a successful run did.
 *
 * @example
 * ```ts
 * import type { WorkerSimulationReport } from "@eventsalsa/eventsalsa/testing";
 * const summary = (r: WorkerSimulationReport) => `seed ${r.seed}: ${r.commits} commits, ${r.rebalances} rebalances`;
 * ```
 */
export interface WorkerSimulationReport {
  /** The seed that was run. */
  readonly seed: number;
  /** Schedule steps run. */
  readonly steps: number;
  /** The leader strategy used (chosen by the seed unless given). */
  readonly leaderStrategy: LeaderStrategy;
  /** Whether workers registered different subsets of the consumers. */
  readonly heterogeneous: boolean;
  /** Committed events in the store. */
  readonly events: number;
  /** Handler commits recorded (one per event per consumer that matched it). */
  readonly commits: number;
  /** Rebalances the leaders applied. */
  readonly rebalances: number;
  /** Consumers moved from one live worker to another, over all rebalances. */
  readonly moves: number;
  /** Workers started in all. */
  readonly workersStarted: number;
  /** How often each action ran. */
  readonly actions: Readonly<Record<string, number>>;
  /** Simulated milliseconds. */
  readonly simulatedMs: number;
  /** Every trace line of the run, in order. */
  readonly trace: readonly string[];
}

/**
 * A broken invariant (or a run that did not settle), with everything needed to replay it.
 *
 * @example
 * ```ts
 * import { simulateWorkers, WorkerSimulationError } from "@eventsalsa/eventsalsa/testing";
 * try {
 *   await simulateWorkers({ seed: 1 });
 * } catch (error) {
 *   if (error instanceof WorkerSimulationError) console.error(error.replay);
 *   throw error;
 * }
 * ```
 */
export class WorkerSimulationError extends Error {
  /** Stable error name. */
  override readonly name: string = "WorkerSimulationError";
  /** The failing seed. */
  readonly seed: number;
  /** The step at which the invariant broke. */
  readonly step: number;
  /** The command that replays the run. */
  readonly replay: string;
  /** The trace of the run up to the failure. */
  readonly trace: readonly string[];
  /** Creates the error. */
  constructor(
    seed: number,
    step: number,
    problem: string,
    replay: string,
    trace: readonly string[],
  ) {
    super(
      `simulation seed ${seed} failed at step ${step}: ${problem}\n` +
        `replay: ${replay}\nlast steps:\n  ${trace.slice(-25).join("\n  ")}`,
    );
    this.seed = seed;
    this.step = step;
    this.replay = replay;
    this.trace = trace;
  }
}

/**
 * The fault a simulated worker's database calls fail with (partition, crash).
 *
 * @example
 * ```ts
 * import { SimulatedFault } from "@eventsalsa/eventsalsa/testing";
 * const injected = (error: unknown) => error instanceof SimulatedFault;
 * ```
 */
export class SimulatedFault extends Error {
  /** Stable error name. */
  override readonly name: string = "SimulatedFault";
}

type LinkState = "up" | "paused" | "partitioned" | "crashed";

interface Connection {
  handle: ListenerHandle;
  onClose: (error: unknown) => void;
}

/** One worker's connection to the coordinator: where pauses, partitions and crashes happen. */
class Link {
  state: LinkState = "up";
  readonly #waiters: Array<() => void> = [];
  readonly connections = new Set<Connection>();
  readonly id: string;

  constructor(id: string) {
    this.id = id;
  }

  /** Passes when up; waits while paused; throws while partitioned or after a crash. */
  async gate(): Promise<void> {
    for (;;) {
      if (this.state === "up") return;
      if (this.state === "partitioned") throw new SimulatedFault(`${this.id} is partitioned`);
      if (this.state === "crashed") throw new SimulatedFault(`${this.id} crashed`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  set(state: LinkState): void {
    this.state = state;
    if (state !== "paused") { for (const wake of this.#waiters.splice(0)) wake(); }
    if (state === "partitioned" || state === "crashed") {
      for (const connection of [...this.connections]) {
        this.connections.delete(connection);
        void connection.handle.close();
        connection.onClose(new SimulatedFault(`${this.id}: connection lost`));
      }
    }
  }
}

/** The coordination port as one simulated worker reaches it: every call goes through its link. */
class LinkedCoordinator implements Coordinator<InMemoryTransaction> {
  readonly #inner: InMemoryCoordinator;
  readonly #link: Link;
  readonly #onBatch: (consumer: string, enter: boolean) => void;

  constructor(
    inner: InMemoryCoordinator,
    link: Link,
    onBatch: (consumer: string, enter: boolean) => void,
  ) {
    this.#inner = inner;
    this.#link = link;
    this.#onBatch = onBatch;
  }

  async #call<T>(work: () => Promise<T>): Promise<T> {
    await this.#link.gate();
    const result = await work();
    await this.#link.gate();
    return result;
  }

  prepare(): Promise<void> {
    return this.#call(() => this.#inner.prepare());
  }
  cleanupStaleWorkers(olderThanMs: number): Promise<number> {
    return this.#call(() => this.#inner.cleanupStaleWorkers(olderThanMs));
  }
  registerWorker(id: string, consumers: readonly string[], timeout: number): Promise<void> {
    return this.#call(() => this.#inner.registerWorker(id, consumers, timeout));
  }
  heartbeat(id: string): Promise<boolean> {
    return this.#call(() => this.#inner.heartbeat(id));
  }
  unregisterWorker(id: string): Promise<void> {
    return this.#call(() => this.#inner.unregisterWorker(id));
  }
  assignedConsumers(id: string): Promise<string[]> {
    return this.#call(() => this.#inner.assignedConsumers(id));
  }
  leaderElection(id: string, settings: LeaderElectionSettings): LeaderElection {
    const inner = this.#inner.leaderElection(id, settings);
    return {
      acquire: () => this.#call(() => inner.acquire()),
      rebalance: (
        plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
        signal: AbortSignal,
      ) => this.#call(() => inner.rebalance(plan, signal)),
      release: () => this.#call(() => inner.release()),
    };
  }
  async openChangeListener(
    onChange: (change: CoordinationChange) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    await this.#link.gate();
    const link = this.#link;
    const handle = await this.#inner.openChangeListener(
      // A paused process handles what arrived when it continues.
      (change) => void link.gate().then(() => onChange(change), () => {}),
      onClose,
    );
    return handle === null ? null : this.#track(handle, onClose);
  }
  async openListener(
    onNotify: () => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle> {
    await this.#link.gate();
    const link = this.#link;
    const handle = await this.#inner.openListener(
      () => void link.gate().then(onNotify, () => {}),
      onClose,
    );
    return this.#track(handle, onClose);
  }
  #track(handle: ListenerHandle, onClose: (error: unknown) => void): ListenerHandle {
    const connection = { handle, onClose };
    this.#link.connections.add(connection);
    return {
      close: () => {
        this.#link.connections.delete(connection);
        return handle.close();
      },
    };
  }
  readCheckpoint(consumer: string): Promise<number> {
    return this.#call(() => this.#inner.readCheckpoint(consumer));
  }
  blockingDeadLetters(consumer: string): Promise<number[]> {
    return this.#call(() => this.#inner.blockingDeadLetters(consumer));
  }
  readWindow(
    after: number,
    limit: number,
    token: GapToken | null,
    signal: AbortSignal,
  ): Promise<WindowRead> {
    return this.#call(() => this.#inner.readWindow(after, limit, token, signal));
  }
  latestPosition(): Promise<number> {
    return this.#call(() => this.#inner.latestPosition());
  }
  gapBlockers(token: GapToken): Promise<GapBlocker[]> {
    return this.#call(() => this.#inner.gapBlockers(token));
  }
  reportGap(consumer: string, gap: GapWait | null): Promise<void> {
    return this.#call(() => this.#inner.reportGap(consumer, gap));
  }
  runBatch<T>(
    request: BatchRequest,
    work: (session: BatchSession<InMemoryTransaction>) => Promise<T>,
  ): Promise<BatchOutcome<T>> {
    return this.#call(() =>
      this.#inner.runBatch(request, async (session) => {
        // Past the fence: this worker is inside a batch of the consumer until it ends.
        this.#onBatch(request.consumer, true);
        try {
          await this.#link.gate();
          const value = await work(session);
          await this.#link.gate();
          return value;
        } finally {
          this.#onBatch(request.consumer, false);
        }
      })
    );
  }
  redriveDeadLetter<T>(
    consumer: string,
    position: number,
    work: (tx: InMemoryTransaction, event: PersistedEvent) => Promise<T>,
  ): Promise<T> {
    return this.#call(() => this.#inner.redriveDeadLetter(consumer, position, work));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface SimWorker {
  readonly id: string;
  readonly link: Link;
  readonly clock: PausableClock;
  readonly runtime: WorkerRuntime<InMemoryTransaction>;
  readonly consumers: readonly string[];
  stopped: boolean;
  /** Step (and simulated time) at which a pause or partition ends. */
  until: number | null;
  readonly done: Promise<void>;
}

interface Held {
  position: number;
  releaseAt: number;
  finish: (commit: boolean) => void;
  done: Promise<void>;
}

class Failure extends Error {}

const AGGREGATES = ["Order", "Account"] as const;
const EVENT_TYPE: Record<string, string> = { Order: "OrderPlaced", Account: "Deposited" };

function builtInConsumers(): Consumer<InMemoryTransaction>[] {
  return [
    { name: "c0-all", handle() {} },
    { name: "c1-orders", aggregateTypes: ["Order"], handle() {} },
    { name: "c2-deposits", eventTypes: ["Deposited"], handle() {} },
    { name: "c3-batches", handleBatch() {} },
  ];
}

function matches(list: readonly string[] | undefined, value: string): boolean {
  return list === undefined || list.length === 0 || list.includes(value);
}

/** Simulation defaults: fast cycles in simulated time. */
const SIMULATED: WorkerRuntimeOptions = {
  pollInterval: 250,
  maxPollInterval: 2_000,
  dispatcherInterval: 500,
  batchPause: 50,
  batchTimeout: 3_000,
  heartbeatInterval: 500,
  heartbeatTimeout: 2_000,
  rebalanceInterval: 1_000,
  assignmentPollInterval: 1_000,
  gapReportInterval: 60_000,
  maxConsecutiveFailures: 5,
};

/**
 * Runs one seeded simulation (see the module doc). Resolves with a report when every invariant
 * held; rejects with {@link WorkerSimulationError} otherwise.
 *
 * @example
 * ```ts
 * import { simulateWorkers } from "@eventsalsa/eventsalsa/testing";
 * for (let seed = 1; seed <= 20; seed++) {
 *   const report = await simulateWorkers({ seed });
 *   console.log(`seed ${seed}: ${report.commits} commits, ${report.moves} moves`);
 * }
 * ```
 */
export async function simulateWorkers(
  options: WorkerSimulationOptions,
): Promise<WorkerSimulationReport> {
  const simulation = new Simulation(options);
  return await simulation.run();
}

class Simulation {
  readonly #o: WorkerSimulationOptions;
  readonly #random: SeededRandom;
  readonly #clock = new SimulationClock(1_700_000_000_000);
  readonly #store = new InMemoryEventStore();
  readonly #coordinator: InMemoryCoordinator;
  readonly #consumers: readonly Consumer<InMemoryTransaction>[];
  readonly #strategy: LeaderStrategy;
  readonly #heterogeneous: boolean;
  readonly #workerOptions: WorkerRuntimeOptions;
  readonly #heartbeatTimeout: number;
  readonly #workers: SimWorker[] = [];
  readonly #held: Held[] = [];
  readonly #trace: string[] = [];
  readonly #actions: Record<string, number> = {};
  /** Positions each consumer's handlers committed, in commit order. */
  readonly #handled = new Map<string, number[]>();
  readonly #inBatch = new Map<string, string>();
  readonly #checkpoints = new Map<string, number>();
  #problems: string[] = [];
  #rebalancesChecked = 0;
  #moves = 0;
  #step = 0;
  #aggregateSeq = 0;

  constructor(options: WorkerSimulationOptions) {
    if (!Number.isInteger(options.seed)) throw new TypeError("seed must be an integer");
    this.#o = options;
    this.#random = new SeededRandom(options.seed);
    this.#coordinator = new InMemoryCoordinator(this.#store, { clock: this.#clock });
    this.#consumers = options.consumers ?? builtInConsumers();
    const strategy = options.leaderStrategy ?? "random";
    this.#strategy = strategy === "random"
      ? this.#random.pick(["advisory", "lease"] as const)
      : strategy;
    const heterogeneous = options.heterogeneous ?? "random";
    this.#heterogeneous = heterogeneous === "random" ? this.#random.chance(0.3) : heterogeneous;
    this.#workerOptions = {
      ...SIMULATED,
      batchSize: this.#random.int(2, 8),
      leaderStrategy: this.#strategy,
      ...options.workerOptions,
    };
    this.#heartbeatTimeout = this.#workerOptions.heartbeatTimeout ?? 2_000;
    for (const consumer of this.#consumers) this.#handled.set(consumer.name, []);
  }

  #log(line: string): void {
    const entry = `[${this.#step}] t+${this.#clock.now() - 1_700_000_000_000}ms ${line}`;
    this.#trace.push(entry);
    this.#o.trace?.(entry);
  }

  #fail(problem: string): never {
    throw new Failure(problem);
  }

  get #steps(): number {
    return this.#o.steps ?? 40;
  }

  #replay(): string {
    return this.#o.replayCommand?.(this.#o.seed, this.#steps) ??
      `deno run -A testing/simulation_replay.ts --seed ${this.#o.seed} --steps ${this.#steps}`;
  }

  async run(): Promise<WorkerSimulationReport> {
    try {
      for (let i = 0; i < (this.#o.initialWorkers ?? 2); i++) this.#join(true);
      await this.#clock.advance(100);
      const settleEvery = this.#o.settleEvery ?? 20;
      for (this.#step = 1; this.#step <= this.#steps; this.#step++) {
        await this.#act();
        await this.#clock.advance(this.#random.int(50, 1_500));
        await this.#release();
        await this.#check();
        if (this.#step % settleEvery === 0 || this.#step === this.#steps) await this.#settle();
      }
      return this.#report();
    } catch (error) {
      const problem = error instanceof Failure ? error.message : errorText(error);
      throw new WorkerSimulationError(
        this.#o.seed,
        this.#step,
        problem,
        this.#replay(),
        this.#trace,
      );
    } finally {
      await this.#shutdown();
    }
  }

  #report(): WorkerSimulationReport {
    let commits = 0;
    for (const list of this.#handled.values()) commits += list.length;
    return {
      seed: this.#o.seed,
      steps: this.#steps,
      leaderStrategy: this.#strategy,
      heterogeneous: this.#heterogeneous,
      events: this.#committedEvents().length,
      commits,
      rebalances: this.#coordinator.rebalances().length,
      moves: this.#moves,
      workersStarted: this.#workers.length,
      actions: { ...this.#actions },
      simulatedMs: this.#clock.now() - 1_700_000_000_000,
      trace: this.#trace,
    };
  }

  // --- the schedule ----------------------------------------------------------------------------

  #live(): SimWorker[] {
    return this.#workers.filter((w) => !w.stopped);
  }

  #up(): SimWorker[] {
    return this.#live().filter((w) => w.link.state === "up");
  }

  async #act(): Promise<void> {
    const weights = { ...DEFAULT_ACTIONS, ...this.#o.actions };
    const live = this.#live();
    const up = this.#up();
    const max = this.#o.maxWorkers ?? 4;
    if (live.length >= max) weights.join = 0;
    if (live.length === 0) weights.join = Math.max(weights.join, 1);
    if (up.length <= 1) {
      weights.leave =
        weights.crash =
        weights.pause =
        weights.partition =
          0;
    }
    const action = this.#random.weighted(weights);
    this.#actions[action] = (this.#actions[action] ?? 0) + 1;
    switch (action) {
      case "append":
        return await this.#append();
      case "conflict":
        return await this.#conflict();
      case "rollback":
        return await this.#rollback();
      case "hold":
        return this.#hold();
      case "join":
        return this.#join(false);
      case "leave":
        return await this.#leave(this.#random.pick(up));
      case "crash":
        return await this.#crash(this.#random.pick(up));
      case "pause":
        return this.#pause(this.#random.pick(up));
      case "partition":
        return this.#partition(this.#random.pick(up));
      case "leaderLoss":
        return this.#leaderLoss();
      case "idle":
        return;
    }
  }

  #draft(aggregateType: string, aggregateId: string) {
    return {
      aggregateType,
      aggregateId,
      eventType: EVENT_TYPE[aggregateType],
      payload: new Uint8Array([this.#step & 255]),
    };
  }

  #aggregate(): { type: string; id: string } {
    const type = this.#random.pick(AGGREGATES);
    return { type, id: `${type}-${this.#random.int(1, 4)}` };
  }

  async #append(): Promise<void> {
    const { type, id } = this.#aggregate();
    const count = this.#random.int(1, 3);
    const result = await this.#store.transaction((tx) =>
      this.#store.append(
        tx,
        any(),
        Array.from({ length: count }, () => this.#draft(type, id)),
      )
    );
    this.#log(`append ${type}/${id} at ${result.globalPositions.join(",")}`);
  }

  async #conflict(): Promise<void> {
    const { type, id } = this.#aggregate();
    const head = await this.#store.transaction((tx) => this.#store.headVersion(tx, type, id));
    // A stale version when the aggregate exists, a future one when it does not.
    const stale = head > 0 ? head - 1 : 1;
    try {
      await this.#store.transaction((tx) =>
        this.#store.append(tx, exact(stale), [this.#draft(type, id)])
      );
    } catch (error) {
      if (error instanceof ConcurrencyError) {
        this.#log(`append to ${type}/${id} expecting version ${stale} refused (head ${head})`);
        return;
      }
      throw error;
    }
    this.#fail(`an append to ${type}/${id} expecting ${stale} was accepted at head ${head}`);
  }

  async #rollback(): Promise<void> {
    const { type, id } = this.#aggregate();
    let position = 0;
    await this.#store.transaction(async (tx) => {
      position = (await this.#store.append(tx, any(), [this.#draft(type, id)])).globalPositions[0];
      throw new Error("rolled back on purpose");
    }).catch(() => {});
    this.#log(`append at ${position} rolled back (a permanent hole)`);
  }

  #hold(): void {
    // Its own aggregate, so no other append waits on its lock.
    const id = `held-${++this.#aggregateSeq}`;
    let finish!: (commit: boolean) => void;
    const decided = new Promise<boolean>((resolve) => (finish = resolve));
    const held: Held = {
      position: 0,
      releaseAt: this.#step + this.#random.int(1, 4),
      finish,
      done: Promise.resolve(),
    };
    held.done = this.#store.transaction(async (tx) => {
      held.position = (await this.#store.append(tx, any(), [this.#draft("Order", id)]))
        .globalPositions[0];
      if (!await decided) throw new Error("rolled back on purpose");
    }).catch(() => {});
    this.#held.push(held);
    this.#log(`append to Order/${id} held open (until step ${held.releaseAt})`);
  }

  async #release(force = false): Promise<void> {
    for (const held of [...this.#held]) {
      if (!force && held.releaseAt > this.#step) continue;
      this.#held.splice(this.#held.indexOf(held), 1);
      const commit = this.#random.chance(0.7);
      held.finish(commit);
      await held.done;
      this.#log(`held append at ${held.position} ${commit ? "committed late" : "rolled back"}`);
    }
    for (const worker of this.#live()) {
      if (worker.until !== null && worker.until <= this.#clock.now()) this.#heal(worker);
    }
  }

  #join(initial: boolean): void {
    const id = `w-${this.#workers.length + 1}`;
    const all = this.#consumers.map((c) => c.name);
    // Heterogeneous fleets: later workers may run only some consumers.
    const names = this.#heterogeneous && !initial
      ? all.filter(() => this.#random.chance(0.6))
      : all;
    const link = new Link(id);
    const clock = new PausableClock(this.#clock);
    const coordinator = new LinkedCoordinator(this.#coordinator, link, (consumer, enter) => {
      if (enter) {
        const other = this.#inBatch.get(consumer);
        if (other !== undefined) {
          this.#problems.push(`${id} entered a batch of ${consumer} while ${other} was in one`);
        }
        this.#inBatch.set(consumer, id);
      } else if (this.#inBatch.get(consumer) === id) this.#inBatch.delete(consumer);
    });
    const consumers = this.#consumers.filter((c) => names.includes(c.name)).map((c) =>
      this.#wrap(c, id, link)
    );
    const runtime = new WorkerRuntime<InMemoryTransaction>(coordinator, consumers, {
      ...this.#workerOptions,
      workerId: id,
      clock: clock as Clock,
    });
    const worker: SimWorker = {
      id,
      link,
      clock,
      runtime,
      consumers: names,
      stopped: false,
      until: null,
      done: Promise.resolve(),
    };
    (worker as { done: Promise<void> }).done = runtime.start().then(
      () => {
        if (!worker.stopped) this.#log(`${id} stopped`);
        worker.stopped = true;
      },
      (error) => {
        worker.stopped = true;
        const expected = error instanceof WorkerRegistrationLostError ||
          (error instanceof ConsecutiveFailuresError && causedByFault(error));
        this.#log(`${id} stopped itself: ${errorText(error)}`);
        if (!expected) this.#problems.push(`${id} failed: ${errorText(error)}`);
      },
    );
    this.#workers.push(worker);
    this.#log(`${id} joins, running ${names.join(",") || "nothing"}`);
  }

  #wrap(
    consumer: Consumer<InMemoryTransaction>,
    workerId: string,
    link: Link,
  ): Consumer<InMemoryTransaction> {
    const name = consumer.name;
    const record = (tx: InMemoryTransaction, event: PersistedEvent) =>
      tx.onCommit(() => this.#committed(name, workerId, event.globalPosition));
    return {
      name,
      aggregateTypes: consumer.aggregateTypes,
      eventTypes: consumer.eventTypes,
      onPoison: consumer.onPoison,
      handle: consumer.handle === undefined ? undefined : async (tx, event, context) => {
        await link.gate();
        record(tx, event);
        await consumer.handle!(tx, event, context);
      },
      handleBatch: consumer.handleBatch === undefined ? undefined : async (tx, events, context) => {
        await link.gate();
        for (const event of events) record(tx, event);
        await consumer.handleBatch!(tx, events, context);
      },
    };
  }

  #committed(consumer: string, workerId: string, position: number): void {
    const owner = this.#coordinator.assignment(consumer);
    if (owner !== workerId) {
      this.#problems.push(
        `${workerId} committed ${consumer}@${position} while ${owner ?? "nobody"} owned it`,
      );
    }
    const list = this.#handled.get(consumer)!;
    if (list.includes(position)) {
      this.#problems.push(`${consumer}@${position} committed twice (again by ${workerId})`);
    } else if (list.length > 0 && list[list.length - 1] > position) {
      this.#problems.push(
        `${consumer}@${position} committed after ${list[list.length - 1]}: out of order`,
      );
    }
    list.push(position);
  }

  async #leave(worker: SimWorker): Promise<void> {
    this.#log(`${worker.id} leaves gracefully`);
    worker.stopped = true;
    await worker.runtime.stop();
  }

  async #crash(worker: SimWorker): Promise<void> {
    this.#log(`${worker.id} crashes (no cleanup)`);
    worker.stopped = true;
    worker.link.set("crashed");
    worker.clock.resume();
    this.#coordinator.terminateLeaderSession(worker.id);
    await worker.runtime.stop();
  }

  #pause(worker: SimWorker): void {
    const ms = this.#random.int(this.#heartbeatTimeout / 2, this.#heartbeatTimeout * 3);
    worker.until = this.#clock.now() + ms;
    worker.link.set("paused");
    worker.clock.pause();
    this.#log(`${worker.id} pauses for ${ms} ms`);
  }

  #partition(worker: SimWorker): void {
    const ms = this.#random.int(500, this.#heartbeatTimeout * 3);
    worker.until = this.#clock.now() + ms;
    worker.link.set("partitioned");
    // The server ends the partitioned session (and a session lock with it).
    this.#coordinator.terminateLeaderSession(worker.id);
    this.#log(`${worker.id} is partitioned for ${ms} ms`);
  }

  #heal(worker: SimWorker): void {
    const was = worker.link.state;
    worker.until = null;
    if (was === "crashed" || was === "up") return;
    worker.link.set("up");
    worker.clock.resume();
    this.#log(`${worker.id} ${was === "paused" ? "resumes" : "reconnects"}`);
  }

  #leaderLoss(): void {
    if (this.#strategy === "advisory") {
      const leader = this.#coordinator.leader();
      const ended = this.#coordinator.terminateLeaderSession();
      this.#log(ended ? `leader ${leader?.workerId} loses its session` : "no leader to lose");
    } else {
      const leader = this.#coordinator.leader();
      this.#coordinator.expireLease();
      this.#log(`the lease of ${leader?.workerId ?? "nobody"} runs out`);
    }
  }

  // --- checks ----------------------------------------------------------------------------------

  #committedEvents(): PersistedEvent[] {
    // Synchronous read of the committed log (the in-memory store answers in a microtask).
    return this.#events;
  }

  #events: PersistedEvent[] = [];

  async #refresh(): Promise<void> {
    this.#events = await this.#store.readEvents(this.#store, 0, 1_000_000);
  }

  async #check(): Promise<void> {
    await this.#refresh();
    if (this.#problems.length > 0) this.#fail(this.#problems.join("; "));
    for (const consumer of this.#consumers) {
      const name = consumer.name;
      const checkpoint = this.#coordinator.checkpoint(name);
      const before = this.#checkpoints.get(name) ?? 0;
      if (checkpoint < before) this.#fail(`${name}'s checkpoint went back from ${before}`);
      this.#checkpoints.set(name, checkpoint);
      const skipped = new Set([
        ...this.#coordinator.deadLetters(name).filter((d) => d.skipped).map((d) =>
          d.globalPosition
        ),
        ...this.#coordinator.gapSkips(name).flatMap((s) => s.skippedPositions),
      ]);
      const expected = this.#events.filter((e) =>
        e.globalPosition <= checkpoint && !skipped.has(e.globalPosition) &&
        matches(consumer.aggregateTypes, e.aggregateType) &&
        matches(consumer.eventTypes, e.eventType)
      ).map((e) => e.globalPosition);
      const handled = this.#handled.get(name)!;
      if (JSON.stringify(handled) !== JSON.stringify(expected)) {
        this.#fail(
          `${name} at checkpoint ${checkpoint} handled [${handled.join(",")}], ` +
            `expected exactly once in order [${expected.join(",")}]`,
        );
      }
    }
    const rebalances = this.#coordinator.rebalances();
    for (; this.#rebalancesChecked < rebalances.length; this.#rebalancesChecked++) {
      this.#checkRebalance(rebalances[this.#rebalancesChecked]);
    }
    await this.#o.check?.(this.#view());
  }

  #checkRebalance(rebalance: {
    at: number;
    leader: string;
    snapshot: AssignmentSnapshot;
    changes: readonly AssignmentChange[];
  }): void {
    const { snapshot, changes } = rebalance;
    const after = applyAssignmentChanges(snapshot.assignments, changes);
    const problems = assignmentProblems(snapshot.workers, after);
    if (problems.length > 0) {
      this.#fail(`rebalance by ${rebalance.leader} left: ${problems.join("; ")}`);
    }
    const live = new Set(snapshot.workers.map((w) => w.workerId));
    const moves = countMoves(snapshot.assignments, after, live);
    this.#moves += moves;
    const minimum = minimalMoves(snapshot);
    if (minimum !== null && moves > minimum) {
      this.#fail(`rebalance by ${rebalance.leader} moved ${moves} consumers; ${minimum} needed`);
    }
    this.#log(
      `(at t+${rebalance.at - 1_700_000_000_000}ms) ${rebalance.leader} rebalanced: ${
        changes.map((c) => `${c.consumer} ${c.from ?? "-"}->${c.to ?? "-"}`).join(", ")
      }`,
    );
  }

  #view(): SimulationView {
    return {
      step: this.#step,
      clock: this.#clock,
      store: this.#store,
      coordinator: this.#coordinator,
      workers: this.#workers.map((w) => ({
        id: w.id,
        state: w.stopped ? (w.link.state === "crashed" ? "crashed" : "stopped") : w.link.state,
        consumers: w.consumers,
        running: w.runtime.runningConsumers,
      })),
    };
  }

  /** Heals every fault, lets time pass until the fleet is quiet, and checks it. */
  async #settle(): Promise<void> {
    this.#log("settling: faults healed, held appends finished");
    await this.#release(true);
    for (const worker of this.#live()) this.#heal(worker);
    if (this.#live().length === 0) this.#join(false);
    const deadline = this.#clock.now() + 120_000;
    let reason = "";
    for (;;) {
      await this.#clock.advance(500);
      await this.#check();
      reason = this.#unsettled();
      if (reason === "") break;
      if (this.#clock.now() > deadline) this.#fail(`the fleet did not settle: ${reason}`);
      if (this.#live().length === 0) this.#join(false);
    }
    this.#log("settled");
  }

  /** Why the fleet is not settled yet ("" when it is). */
  #unsettled(): string {
    const now = this.#clock.now();
    const live = this.#live();
    const registrations = this.#coordinator.registrations();
    const members: WorkerMembership[] = [];
    for (const [id, row] of registrations) {
      if (now - row.heartbeatAt <= this.#heartbeatTimeout) {
        members.push({ workerId: id, consumers: row.consumers });
      }
    }
    const expected = live.map((w) => w.id).sort();
    const seen = members.map((m) => m.workerId).sort();
    if (JSON.stringify(seen) !== JSON.stringify(expected)) {
      return `live registrations [${seen}] are not the running workers [${expected}]`;
    }
    const assignments = this.#coordinator.assignments();
    const problems = assignmentProblems(members, assignments);
    if (problems.length > 0) return problems.join("; ");
    for (const worker of live) {
      const mine = [...assignments].filter(([, owner]) => owner === worker.id).map(([c]) => c)
        .sort();
      const running = [...worker.runtime.runningConsumers].sort();
      if (JSON.stringify(mine) !== JSON.stringify(running)) {
        return `${worker.id} runs [${running}] but is assigned [${mine}]`;
      }
    }
    const latest = this.#events.length === 0
      ? 0
      : this.#events[this.#events.length - 1].globalPosition;
    for (const consumer of this.#consumers) {
      const eligible = members.some((m) => m.consumers.includes(consumer.name));
      const checkpoint = this.#coordinator.checkpoint(consumer.name);
      if (eligible && checkpoint < latest) {
        return `${consumer.name} is at ${checkpoint}, the log at ${latest}`;
      }
    }
    return "";
  }

  async #shutdown(): Promise<void> {
    for (const held of this.#held.splice(0)) {
      held.finish(false);
      await held.done;
    }
    for (const worker of this.#workers) {
      if (worker.link.state !== "up" && worker.link.state !== "crashed") {
        worker.link.set("up");
        worker.clock.resume();
      }
      worker.stopped = true;
    }
    await Promise.all(this.#workers.map((w) => w.runtime.stop()));
    await Promise.all(this.#workers.map((w) => w.done));
  }
}

function causedByFault(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 10; depth++) {
    if (e instanceof SimulatedFault) return true;
    e = (e as { cause?: unknown })?.cause;
  }
  return false;
}
