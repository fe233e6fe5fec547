/**
 * The multi-worker simulation: N workers — the production `WorkerRuntime`, consumer loop and
 * `CoordinationProtocol`, unchanged — on one shared in-memory storage, driven by a simulated
 * clock and a seeded random schedule. Each worker reaches the storage through a wrapper of the
 * storage port of its own, where its faults happen: statements that fail, connections that drop
 * (before a statement, before COMMIT, or after COMMIT reached the server), pauses (its clock and
 * its calls freeze while the others run), partitions, crashes, lost notifications, a skewed
 * clock, and (for some workers) answers that take a round trip. Its handlers may take time and
 * may overrun their batch (sleeping past `batchTimeout`, then writing anyway, as a careless
 * handler would), and it may be stopped at any await of a batch. Besides: appends (with version
 * conflicts, rollbacks and held transactions that leave holes), joins, graceful leaves and leader
 * loss. After every step it checks:
 *
 * - no committed event is skipped: what a consumer's handlers committed equals the matching
 *   committed events up to its checkpoint, each exactly once, in order;
 * - no effect commits outside its batch: each handler effect (a `tx.onCommit`) commits with the
 *   batch transaction that made it, with the checkpoint that covers it, for the consumer's owner
 *   at that moment — never on its own after the batch was given up; a checkpoint is never saved
 *   outside its batch's transaction;
 * - at most one worker is inside a batch of a consumer at any time, one owner commits; checkpoints
 *   never go back;
 * - every rebalance a leader committed is valid for what it read (eligible, balanced within one)
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
import { type Clock, sleepWith } from "../internal/clock.ts";
import { ConcurrencyError } from "../store/errors.ts";
import { any, exact } from "../store/expected_version.ts";
import type { PersistedEvent } from "../store/types.ts";
import type { AssignmentChange, AssignmentSnapshot } from "../worker/core/assignment.ts";
import { applyAssignmentChanges, type WorkerMembership } from "../worker/core/assignment.ts";
import type { CoordinationChange, ListenerHandle } from "../worker/core/coordination.ts";
import { expandPartitions, inPartition, partitionOf } from "../worker/core/partitions.ts";
import { CoordinationProtocol } from "../worker/core/protocol.ts";
import { WorkerRuntime } from "../worker/core/runtime.ts";
import type {
  LeadershipSettings,
  LeadershipStorage,
  StorageInfo,
  StorageTransaction,
  TransactionOptions,
  WorkerRows,
  WorkerStorage,
} from "../worker/core/storage.ts";
import { BatchTimeoutError, errorText, WorkerRegistrationLostError } from "../worker/errors.ts";
import type { LeaderStrategy, WorkerRuntimeOptions } from "../worker/options.ts";
import type { Consumer } from "../worker/types.ts";
import { assignmentProblems, countMoves, minimalMoves } from "./assignment_invariants.ts";
import { coordinatorOver, type InMemoryCoordinator } from "./in_memory_coordinator.ts";
import {
  ENDED_BY_THE_SERVER,
  InMemoryStorage,
  InMemoryStorageTransaction,
} from "./in_memory_storage.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "./in_memory_store.ts";
import { SeededRandom } from "./seeded_random.ts";
import { PausableClock, SimulationClock } from "./simulation_clock.ts";

/**
 * What the schedule can do in one step; the weights of
 * {@link WorkerSimulationOptions.actions} use these names. The faults of one worker
 * (`failStatement`, `dropConnection`, `overrun`, `abortBatch`) are armed by the step and strike
 * its next transaction, handler or batch.
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
  | "failStatement"
  | "dropConnection"
  | "overrun"
  | "abortBatch"
  | "loseNotifications"
  | "skew"
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
  failStatement: 2,
  dropConnection: 2,
  overrun: 2,
  abortBatch: 2,
  loseNotifications: 1,
  skew: 1,
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
   * consumers (global, scoped by aggregate type, by event type, and a `handleBatch` one). A
   * consumer with `partitions` is checked per partition (its checkpoint, its aggregates).
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
  /** The simulated clock every worker runs on (the storage's time). */
  readonly clock: Clock;
  /** The shared in-memory event store. */
  readonly store: InMemoryEventStore;
  /** An in-memory coordinator over the shared storage (checkpoints, assignments, dead letters). */
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
  /** Faults that struck (armed ones that found no transaction or handler are not counted). */
  readonly faults: number;
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
 * The fault a simulated worker's storage calls fail with (injected failures, dropped connections,
 * partitions, crashes).
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

// --- one worker's process: its link, its clock, its faults ---------------------------------------

type LinkState = "up" | "paused" | "partitioned" | "crashed";

interface Connection {
  handle: ListenerHandle;
  onClose: (error: unknown) => void;
}

/** One worker's connection to the storage: where pauses, partitions and crashes happen. */
class Link {
  state: LinkState = "up";
  readonly #waiters: Array<() => void> = [];
  readonly connections = new Set<Connection>();
  readonly id: string;

  constructor(id: string) {
    this.id = id;
  }

  /** Null when up (go on at once); a wait while paused; throws while partitioned or crashed. */
  pass(): Promise<void> | null {
    if (this.state === "up") return null;
    if (this.state === "partitioned") throw new SimulatedFault(`${this.id} is partitioned`);
    if (this.state === "crashed") throw new SimulatedFault(`${this.id} crashed`);
    return new Promise<void>((resolve) => this.#waiters.push(resolve)).then(() => this.pass()!);
  }

  /** Like {@link Link.pass}, always a promise. */
  async gate(): Promise<void> {
    const wait = this.pass();
    if (wait !== null) await wait;
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

/** One worker's clock: its process can be paused, and its time is off by a skew. */
class WorkerClock implements Clock {
  readonly process: PausableClock;
  offset: number;

  constructor(shared: Clock, offset: number) {
    this.process = new PausableClock(shared);
    this.offset = offset;
  }

  now(): number {
    return this.process.now() + this.offset;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  setTimeout(callback: () => void, ms: number): unknown {
    return this.process.setTimeout(callback, ms);
  }

  clearTimeout(handle: unknown): void {
    this.process.clearTimeout(handle);
  }
}

/** A fault armed on a worker's next transaction. */
type TransactionFault =
  /** The statement at `at` (or COMMIT, when the transaction has fewer) fails: it rolls back. */
  | { readonly kind: "fail"; readonly at: number }
  /** The connection drops before the statement at `at` (or before COMMIT). */
  | { readonly kind: "drop"; readonly at: number }
  /** COMMIT reaches the server, its answer does not: committed, reported lost. */
  | { readonly kind: "dropAfterCommit" };

/** A fault armed on a worker's next handler call: it overruns its batch timeout. */
interface HandlerFault {
  /** `late`: sleeps, then writes (a careless handler); `slow`: writes, then sleeps. */
  readonly kind: "late" | "slow";
  readonly sleepMs: number;
}

/** A stop armed on a worker's next batch: at statement `at`, or in a handler (`at` < 0). */
interface AbortFault {
  readonly at: number;
}

interface SimWorker {
  readonly id: string;
  readonly link: Link;
  readonly clock: WorkerClock;
  readonly runtime: WorkerRuntime<InMemoryTransaction>;
  readonly consumers: readonly string[];
  /** Its open storage transactions (a partition or crash ends them on the server). */
  readonly open: Set<StorageTransaction<InMemoryTransaction>>;
  stopped: boolean;
  /** Simulated time at which a pause or partition ends. */
  until: number | null;
  /** Notifications to it are lost until this storage time. */
  deafUntil: number;
  /** Round-trip time of its connections (ms of storage time; 0: answers come at once). */
  readonly latency: number;
  /** How long each of its handler calls takes (ms of its own time). */
  readonly handlerMs: number;
  transactionFault: TransactionFault | null;
  handlerFault: HandlerFault | null;
  abortFault: AbortFault | null;
  readonly done: Promise<void>;
}

/** One transaction of a worker (a batch, when its handle reaches handlers), as the checks see it. */
interface BatchRecord {
  /** Its number in the run, for the messages. */
  readonly id: number;
  /** The event store's transaction underneath. */
  readonly raw: InMemoryTransaction | null;
  /** Set at its commit, before its handlers' effects run. */
  committed: boolean;
}

/** What a worker's storage wrapper reports to the simulation. */
interface Observer {
  log(line: string): void;
  problem(text: string): void;
  /** A fault struck. */
  struck(): void;
  /** The worker is stopped mid-batch (the `abortBatch` fault). */
  stop(worker: SimWorker, where: string): void;
  /** The transaction of each handle, for the effects handlers register through it. */
  readonly batches: WeakMap<InMemoryTransaction, BatchRecord>;
  /** Numbers the transactions. */
  nextId(): number;
  /** The batch passed the fence's lock (`enter`), or its transaction ended. */
  inBatch(consumer: string, worker: string, enter: boolean): void;
  /** At the commit of a batch that saved `consumer`'s checkpoint. */
  committed(consumer: string, worker: string): void;
  /** Storage time. */
  now(): number;
  /** Waits `ms` of storage time (network latency). */
  delay(ms: number): Promise<void>;
}

/** Every row operation of the port, so the wrapper forwards them all. */
const ROW_OPERATIONS: Readonly<Record<keyof WorkerRows, true>> = {
  registerWorker: true,
  ensureConsumers: true,
  heartbeat: true,
  deleteWorker: true,
  deleteStaleWorkers: true,
  liveWorkers: true,
  assignments: true,
  owned: true,
  lockAssignments: true,
  writeAssignments: true,
  notify: true,
  lockConsumer: true,
  saveCheckpoint: true,
  readCheckpoint: true,
  reportGap: true,
  writeDeadLetter: true,
  resolveDeadLetters: true,
  blockingDeadLetters: true,
  deleteDeadLetters: true,
  lockDeadLetter: true,
  markRedriven: true,
  writeGapSkip: true,
  readWindow: true,
  readEvent: true,
  latestPosition: true,
  gapBlockers: true,
  statusRows: true,
};

/** The outcome of `sent` as the worker hears it: `latency` later (at once when 0). */
async function answer<T>(sent: Promise<T>, latency: number, observer: Observer): Promise<T> {
  if (latency === 0) return await sent;
  try {
    return await sent;
  } finally {
    await observer.delay(latency);
  }
}

type Send = (
  name: keyof WorkerRows,
  args: unknown[],
  call: () => Promise<unknown>,
) => Promise<unknown>;

/** `inner`'s row operations, each sent through `send`. */
function rowsThrough(inner: WorkerRows, send: Send): WorkerRows {
  const rows: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const name of Object.keys(ROW_OPERATIONS) as (keyof WorkerRows)[]) {
    const operation = inner[name] as (...args: unknown[]) => Promise<unknown>;
    rows[name] = (...args) => send(name, args, () => operation.apply(inner, args));
  }
  return rows as unknown as WorkerRows;
}

/**
 * The storage port as one simulated worker reaches it: the production protocol runs on this, and
 * every fault of the worker happens here. Statements are sent to the storage the moment they
 * pass the link (a frozen process sends nothing), so a statement's place in its transaction is
 * what it would be on a real connection.
 */
class WorkerStorageLink implements WorkerStorage<InMemoryTransaction> {
  readonly rows: WorkerRows;
  readonly #inner: InMemoryStorage;
  readonly #worker: () => SimWorker;
  readonly #observer: Observer;

  constructor(inner: InMemoryStorage, worker: () => SimWorker, observer: Observer) {
    this.#inner = inner;
    this.#worker = worker;
    this.#observer = observer;
    this.rows = rowsThrough(inner.rows, (_name, _args, call) => this.#call(call));
  }

  get #link(): Link {
    return this.#worker().link;
  }

  async #call<T>(send: () => Promise<T>): Promise<T> {
    await this.#link.gate();
    const result = await answer(send(), this.#worker().latency, this.#observer);
    // A paused process sees the answer when it continues.
    await this.#link.gate();
    return result;
  }

  prepare(): Promise<StorageInfo> {
    return this.#call(() => this.#inner.prepare());
  }

  transaction<T>(
    options: TransactionOptions,
    work: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>,
  ): Promise<T> {
    return this.#transaction(work, (run) => this.#inner.transaction(options, run));
  }

  leadership(
    workerId: string,
    settings: LeadershipSettings,
  ): LeadershipStorage<InMemoryTransaction> {
    const inner = this.#inner.leadership(workerId, settings);
    return {
      acquire: () => this.#call(() => inner.acquire()),
      transaction: <T>(
        options: TransactionOptions,
        work: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>,
      ) => this.#transaction(work, (run) => inner.transaction(options, run)),
      release: () => this.#call(() => inner.release()),
    };
  }

  async #transaction<T, R>(
    work: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>,
    open: (run: (tx: StorageTransaction<InMemoryTransaction>) => Promise<T>) => Promise<R>,
  ): Promise<R> {
    const worker = this.#worker();
    await worker.link.gate();
    const fault = worker.transactionFault;
    worker.transactionFault = null;
    let tracked: StorageTransaction<InMemoryTransaction> | null = null;
    let registers = false;
    let committed = false;
    try {
      const result = await answer(
        open(async (inner) => {
          worker.open.add(tracked = inner);
          const tx = new FaultyTransaction(inner, this.#inner, worker, fault, this.#observer);
          const value = await work(tx.port);
          registers = tx.registers;
          tx.beforeCommit();
          return value;
        }),
        worker.latency,
        this.#observer,
      );
      committed = true;
      if (fault?.kind === "dropAfterCommit" && tracked !== null) {
        this.#observer.struck();
        this.#observer.log(`${worker.id}: connection lost after COMMIT reached the server`);
        throw new SimulatedFault(`${worker.id}: connection lost; the COMMIT's outcome is unknown`);
      }
      await worker.link.gate();
      return result;
    } catch (error) {
      // A registration that committed while the worker heard a failure: it must recognise its own
      // row when it retries (the runtime waits the row out), so this is traced, not excused.
      if (committed && registers) this.#observer.log(`${worker.id}: registration in doubt`);
      throw error;
    } finally {
      if (tracked !== null) worker.open.delete(tracked);
    }
  }

  async listen(
    topic: "events" | "coordination",
    onMessage: (change: CoordinationChange | null) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    const link = this.#link;
    await link.gate();
    const handle = await this.#inner.listen(topic, (message) => {
      if (this.#worker().deafUntil > this.#observer.now()) return; // lost
      // A paused process handles what arrived when it continues.
      void link.gate().then(() => onMessage(message), () => {});
    }, onClose);
    if (handle === null) return null;
    const connection = { handle, onClose };
    link.connections.add(connection);
    return {
      close: () => {
        link.connections.delete(connection);
        return handle.close();
      },
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** One transaction of a simulated worker, with the fault armed on it (if any). */
class FaultyTransaction {
  /** What the protocol gets. */
  readonly port: StorageTransaction<InMemoryTransaction>;
  readonly #inner: StorageTransaction<InMemoryTransaction>;
  readonly #storage: InMemoryStorage;
  readonly #worker: SimWorker;
  readonly #observer: Observer;
  readonly #batch: BatchRecord;
  #fault: TransactionFault | null;
  #abort: AbortFault | null = null;
  #count = 0;
  /** Whether it registers the worker (its first statement does). */
  registers = false;

  constructor(
    inner: StorageTransaction<InMemoryTransaction>,
    storage: InMemoryStorage,
    worker: SimWorker,
    fault: TransactionFault | null,
    observer: Observer,
  ) {
    this.#inner = inner;
    this.#storage = storage;
    this.#worker = worker;
    this.#fault = fault;
    this.#observer = observer;
    const raw = inner instanceof InMemoryStorageTransaction ? inner.raw : null;
    const record: BatchRecord = { id: observer.nextId(), raw, committed: false };
    this.#batch = record;
    raw?.onCommit(() => (record.committed = true));
    const rows = rowsThrough(inner, (name, args, call) => this.#statement(name, args, call));
    const batches = observer.batches;
    const batch = this.#batch;
    this.port = Object.assign(rows, {
      handle(consumer: string, isOpen: () => boolean): InMemoryTransaction {
        const handle = inner.handle(consumer, isOpen);
        batches.set(handle, batch);
        return handle;
      },
      // The cancel request travels on a connection of its own.
      cancel: () => answer(Promise.resolve(), worker.latency, observer).then(() => inner.cancel()),
    }) as unknown as StorageTransaction<InMemoryTransaction>;
    Object.defineProperty(this.port, "lost", { get: () => inner.lost });
  }

  async #statement(
    name: keyof WorkerRows,
    args: unknown[],
    call: () => Promise<unknown>,
  ): Promise<unknown> {
    const wait = this.#worker.link.pass();
    if (wait !== null) await wait;
    const index = this.#count++;
    if (index === 0) this.registers = name === "registerWorker";
    if (index === 0 && name === "lockConsumer") {
      // A batch: the abort armed on the worker strikes it.
      this.#abort = this.#worker.abortFault !== null && this.#worker.abortFault.at >= 0
        ? this.#worker.abortFault
        : null;
      if (this.#abort !== null) this.#worker.abortFault = null;
    }
    this.#strike(index, name);
    const raw = this.#batch.raw;
    if (name === "saveCheckpoint") {
      const [consumer, position] = args as [string, number];
      if (raw === null || !raw.isOpen) {
        this.#observer.problem(
          `${this.#worker.id} saved the checkpoint of ${consumer} (${position}) after its batch's ` +
            `transaction had ended: it committed on its own, outside the batch`,
        );
      } else {
        raw.onCommit(() => this.#observer.committed(consumer, this.#worker.id));
      }
    }
    const value = await answer(call(), this.#worker.latency, this.#observer);
    if (name === "lockConsumer") {
      const rows = value as { owner: string | null } | null;
      const consumer = args[0] as string;
      if (rows?.owner === this.#worker.id && raw !== null && raw.isOpen) {
        const worker = this.#worker.id;
        this.#observer.inBatch(consumer, worker, true);
        const exit = () => this.#observer.inBatch(consumer, worker, false);
        raw.onCommit(exit);
        raw.onRollback(exit);
      }
    }
    const after = this.#worker.link.pass();
    if (after !== null) await after;
    return value;
  }

  /** The fault armed on this transaction, at statement `index` (or COMMIT: -1). */
  #strike(index: number, name: string): void {
    const where = index < 0 ? "COMMIT" : `${name} (statement ${index + 1})`;
    const id = this.#worker.id;
    const abort = this.#abort;
    if (abort !== null && (index < 0 || abort.at === index)) {
      this.#abort = null;
      this.#observer.struck();
      this.#observer.stop(this.#worker, `at ${where} of a batch`);
    }
    const fault = this.#fault;
    if (fault === null || fault.kind === "dropAfterCommit") return;
    if (index >= 0 && fault.at !== index) return;
    this.#fault = null;
    this.#observer.struck();
    if (fault.kind === "fail") {
      this.#observer.log(`${id}: ${where} fails (injected)`);
      // A failed statement aborts the transaction, whatever the caller does with the error.
      this.#batch.raw?.abort(`${where} failed (injected)`);
      throw new SimulatedFault(`${id}: ${where} failed (injected)`);
    }
    this.#observer.log(`${id}: the connection drops before ${where}`);
    this.#storage.terminate(this.#inner, new SimulatedFault(`${id}: connection lost`));
    if (index < 0) throw new SimulatedFault(`${id}: connection lost before COMMIT`);
  }

  /** The work resolved: a fault still armed strikes the COMMIT. */
  beforeCommit(): void {
    if (this.#worker.link.state === "partitioned" || this.#worker.link.state === "crashed") {
      throw new SimulatedFault(`${this.#worker.id}: connection lost before COMMIT`);
    }
    this.#strike(-1, "COMMIT");
  }
}

// --- the simulation ------------------------------------------------------------------------------

interface Held {
  position: number;
  releaseAt: number;
  finish: (commit: boolean) => void;
  done: Promise<void>;
}

class Failure extends Error {}

const AGGREGATES = ["Order", "Account"] as const;
const EVENT_TYPE: Record<string, string> = { Order: "OrderPlaced", Account: "Deposited" };
const EPOCH = 1_700_000_000_000;

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
  gapCheckInterval: 50,
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
  readonly #clock = new SimulationClock(EPOCH);
  readonly #store = new InMemoryEventStore();
  readonly #storage: InMemoryStorage;
  /** For inspection (and the view): the protocol over the shared storage. */
  readonly #coordinator: InMemoryCoordinator;
  readonly #consumers: readonly Consumer<InMemoryTransaction>[];
  /** The consumers as they run: each partitioned one as its partitions. */
  readonly #runnable: readonly Consumer<InMemoryTransaction>[];
  readonly #strategy: LeaderStrategy;
  readonly #heterogeneous: boolean;
  readonly #workerOptions: WorkerRuntimeOptions;
  readonly #heartbeatTimeout: number;
  readonly #batchTimeout: number;
  readonly #workers: SimWorker[] = [];
  readonly #held: Held[] = [];
  readonly #trace: string[] = [];
  readonly #actions: Record<string, number> = {};
  /** Positions each consumer's handlers committed, in commit order. */
  readonly #handled = new Map<string, number[]>();
  readonly #inBatch = new Map<string, string>();
  readonly #checkpoints = new Map<string, number>();
  readonly #observer: Observer;
  #problems: string[] = [];
  #rebalancesChecked = 0;
  #moves = 0;
  #faults = 0;
  #transactions = 0;
  #step = 0;
  #aggregateSeq = 0;

  constructor(options: WorkerSimulationOptions) {
    if (!Number.isInteger(options.seed)) throw new TypeError("seed must be an integer");
    this.#o = options;
    this.#random = new SeededRandom(options.seed);
    this.#storage = new InMemoryStorage(this.#store, { clock: this.#clock });
    this.#coordinator = coordinatorOver(this.#storage);
    this.#consumers = options.consumers ?? builtInConsumers();
    this.#runnable = expandPartitions(this.#consumers);
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
    this.#batchTimeout = this.#workerOptions.batchTimeout ?? 3_000;
    for (const consumer of this.#runnable) this.#handled.set(consumer.name, []);
    this.#observer = {
      log: (line) => this.#log(line),
      problem: (text) => this.#problems.push(text),
      struck: () => this.#faults++,
      stop: (worker, where) => this.#stopMidBatch(worker, where),
      batches: new WeakMap(),
      nextId: () => ++this.#transactions,
      inBatch: (consumer, worker, enter) => this.#enterBatch(consumer, worker, enter),
      committed: (consumer, worker) => {
        const owner = this.#storage.assignment(consumer);
        if (owner !== worker) {
          this.#problems.push(
            `${worker} committed a batch of ${consumer} while ${owner ?? "nobody"} owned it`,
          );
        }
      },
      now: () => this.#clock.now(),
      delay: (ms) => this.#clock.sleep(ms),
    };
  }

  #log(line: string): void {
    const entry = `[${this.#step}] t+${this.#clock.now() - EPOCH}ms ${line}`;
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
      events: this.#events.length,
      commits,
      rebalances: this.#storage.rebalances().length,
      moves: this.#moves,
      workersStarted: this.#workers.length,
      actions: { ...this.#actions },
      faults: this.#faults,
      simulatedMs: this.#clock.now() - EPOCH,
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
        weights.abortBatch =
          0;
    }
    if (up.length === 0) {
      weights.failStatement =
        weights.dropConnection =
        weights.overrun =
        weights.loseNotifications =
        weights.skew =
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
        return this.#leave(this.#random.pick(up));
      case "crash":
        return this.#crash(this.#random.pick(up));
      case "pause":
        return this.#pause(this.#random.pick(up));
      case "partition":
        return this.#partition(this.#random.pick(up));
      case "leaderLoss":
        return this.#leaderLoss();
      case "failStatement":
        return this.#armTransactionFault(this.#random.pick(up), "fail");
      case "dropConnection":
        return this.#armTransactionFault(this.#random.pick(up), "drop");
      case "overrun":
        return this.#armOverrun(this.#random.pick(up));
      case "abortBatch":
        return this.#armAbort(this.#random.pick(up));
      case "loseNotifications":
        return this.#deafen(this.#random.pick(up));
      case "skew":
        return this.#skew(this.#random.pick(up));
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
    const skew = Math.round(this.#heartbeatTimeout / 2);
    const clock = new WorkerClock(this.#clock, this.#random.int(-skew, skew));
    // Some workers' answers take a round trip, and their handlers take time, so that what runs
    // between a statement and its answer (an abort, another worker) varies.
    const latency = this.#random.chance(0.5) ? 0 : this.#random.int(1, 25);
    const handlerMs = this.#random.chance(0.5) ? 0 : this.#random.int(1, 40);
    let self!: SimWorker;
    const storage = new WorkerStorageLink(this.#storage, () => self, this.#observer);
    const consumers = this.#consumers.filter((c) => names.includes(c.name)).map((c) =>
      this.#wrap(c, () => self)
    );
    const runtime = new WorkerRuntime<InMemoryTransaction>(
      new CoordinationProtocol(storage),
      consumers,
      { ...this.#workerOptions, workerId: id, clock },
    );
    const worker: SimWorker = self = {
      id,
      link: new Link(id),
      clock,
      runtime,
      consumers: this.#runnable
        .filter((c) => names.includes(partitionOf(c)?.consumer ?? c.name))
        .map((c) => c.name),
      open: new Set(),
      stopped: false,
      until: null,
      deafUntil: 0,
      latency,
      handlerMs,
      transactionFault: null,
      handlerFault: null,
      abortFault: null,
      done: Promise.resolve(),
    };
    (worker as { done: Promise<void> }).done = runtime.start().then(
      () => {
        if (!worker.stopped) this.#log(`${id} stopped`);
        worker.stopped = true;
      },
      (error) => {
        worker.stopped = true;
        // A worker may give up under faults (a crashed one has no say at all); anything else
        // that stops it is a bug.
        const expected = worker.link.state === "crashed" ||
          error instanceof WorkerRegistrationLostError || causedByFault(error);
        this.#log(`${id} stopped itself: ${errorText(error)}`);
        if (!expected) this.#problems.push(`${id} failed: ${errorText(error)}`);
      },
    );
    this.#workers.push(worker);
    this.#log(
      `${id} joins (clock ${clock.offset >= 0 ? "+" : ""}${clock.offset} ms, round trip ` +
        `${latency} ms, handlers ${handlerMs} ms), running ${names.join(",") || "nothing"}`,
    );
  }

  /** The consumer as a worker runs it: its effects recorded, its armed handler faults applied. */
  #wrap(
    consumer: Consumer<InMemoryTransaction>,
    worker: () => SimWorker,
  ): Consumer<InMemoryTransaction> {
    // Effects are recorded under the name the batch runs as (a partition's, when partitioned).
    const record = (
      tx: InMemoryTransaction,
      events: readonly PersistedEvent[],
      name: string,
    ) => {
      const id = worker().id;
      const batch = this.#observer.batches.get(tx) ?? null;
      for (const event of events) {
        // A hook that runs while it is being registered ran outside any transaction.
        let registering = true;
        tx.onCommit(() => this.#committed(name, id, event.globalPosition, batch, registering));
        registering = false;
      }
    };
    const run = async (
      tx: InMemoryTransaction,
      events: readonly PersistedEvent[],
      name: string,
      handle: () => void | Promise<void>,
    ) => {
      const w = worker();
      await w.link.gate();
      const abort = w.abortFault !== null && w.abortFault.at < 0 ? w.abortFault : null;
      if (abort !== null) {
        w.abortFault = null;
        this.#faults++;
        this.#stopMidBatch(w, `in a handler of ${name}`);
      }
      if (w.handlerMs > 0) await w.clock.sleep(w.handlerMs);
      const fault = w.handlerFault;
      w.handlerFault = null;
      if (fault === null) {
        record(tx, events, name);
        return await handle();
      }
      this.#faults++;
      this.#log(
        `${w.id}: a handler of ${name} overruns its batch (${fault.kind}: ${fault.sleepMs} ms)`,
      );
      // Deaf to context.signal, as a careless handler is.
      if (fault.kind === "slow") record(tx, events, name);
      await w.clock.sleep(fault.sleepMs);
      if (fault.kind === "late") record(tx, events, name);
      await handle();
    };
    return {
      name: consumer.name,
      partitions: consumer.partitions,
      aggregateTypes: consumer.aggregateTypes,
      eventTypes: consumer.eventTypes,
      onPoison: consumer.onPoison,
      handle: consumer.handle === undefined
        ? undefined
        : (tx, event, context) =>
          run(tx, [event], context.consumer, () => consumer.handle!(tx, event, context)),
      handleBatch: consumer.handleBatch === undefined
        ? undefined
        : (tx, events, context) =>
          run(tx, events, context.consumer, () => consumer.handleBatch!(tx, events, context)),
    };
  }

  /**
   * A handler effect committed: it must be with the batch that made it (`atOnce`: it ran as it
   * was registered, with no transaction around it).
   */
  #committed(
    consumer: string,
    workerId: string,
    position: number,
    batch: BatchRecord | null,
    atOnce: boolean,
  ): void {
    if (atOnce || (batch !== null && !batch.committed)) {
      this.#problems.push(
        `${workerId} committed an effect of ${consumer}@${position} outside its batch ` +
          `(transaction #${batch?.id ?? "?"} had ended; the statement ran on its own)`,
      );
    } else {
      const owner = this.#storage.assignment(consumer);
      if (owner !== workerId) {
        this.#problems.push(
          `${workerId} committed ${consumer}@${position} while ${owner ?? "nobody"} owned it`,
        );
      }
      const checkpoint = this.#storage.checkpoint(consumer);
      if (checkpoint < position) {
        this.#problems.push(
          `${workerId} committed ${consumer}@${position} without its checkpoint (at ${checkpoint})`,
        );
      }
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

  #enterBatch(consumer: string, worker: string, enter: boolean): void {
    if (enter) {
      const other = this.#inBatch.get(consumer);
      if (other !== undefined) {
        this.#problems.push(`${worker} entered a batch of ${consumer} while ${other} was in one`);
      }
      this.#inBatch.set(consumer, worker);
    } else if (this.#inBatch.get(consumer) === worker) this.#inBatch.delete(consumer);
  }

  #leave(worker: SimWorker): void {
    this.#log(`${worker.id} leaves gracefully`);
    worker.stopped = true;
    // Not awaited: stopping may wait for a statement, and time must go on meanwhile.
    void worker.runtime.stop();
  }

  #stopMidBatch(worker: SimWorker, where: string): void {
    if (worker.stopped || worker.link.state !== "up") return;
    this.#log(`${worker.id} is stopped ${where}`);
    worker.stopped = true;
    void worker.runtime.stop();
  }

  /** The server's side of a dead connection: the worker's transactions end, its locks go. */
  #cutOff(worker: SimWorker, why: string): void {
    for (const tx of [...worker.open]) this.#storage.terminate(tx, new SimulatedFault(why));
  }

  #crash(worker: SimWorker): void {
    this.#log(`${worker.id} crashes (no cleanup)`);
    worker.stopped = true;
    worker.link.set("crashed");
    worker.clock.process.resume();
    this.#cutOff(worker, `${worker.id} crashed`);
    this.#storage.terminateLeaderSession(worker.id);
    void worker.runtime.stop();
  }

  #pause(worker: SimWorker): void {
    const ms = this.#random.int(this.#heartbeatTimeout / 2, this.#heartbeatTimeout * 3);
    worker.until = this.#clock.now() + ms;
    worker.link.set("paused");
    worker.clock.process.pause();
    this.#log(`${worker.id} pauses for ${ms} ms`);
  }

  #partition(worker: SimWorker): void {
    const ms = this.#random.int(500, this.#heartbeatTimeout * 3);
    worker.until = this.#clock.now() + ms;
    worker.link.set("partitioned");
    // The server ends the partitioned sessions (and a session lock with them).
    this.#cutOff(worker, `${worker.id} is partitioned`);
    this.#storage.terminateLeaderSession(worker.id);
    this.#log(`${worker.id} is partitioned for ${ms} ms`);
  }

  #heal(worker: SimWorker): void {
    const was = worker.link.state;
    worker.until = null;
    if (was === "crashed" || was === "up") return;
    worker.link.set("up");
    worker.clock.process.resume();
    this.#log(`${worker.id} ${was === "paused" ? "resumes" : "reconnects"}`);
  }

  #leaderLoss(): void {
    const leader = this.#storage.leader();
    if (this.#strategy === "advisory") {
      const ended = this.#storage.terminateLeaderSession();
      this.#log(ended ? `leader ${leader?.workerId} loses its session` : "no leader to lose");
    } else {
      this.#storage.expireLease();
      this.#log(`the lease of ${leader?.workerId ?? "nobody"} runs out`);
    }
  }

  #armTransactionFault(worker: SimWorker, kind: "fail" | "drop"): void {
    // Statement 1 is the fence (a batch) or the first read; up to 5 covers a batch's writes.
    const at = this.#random.int(0, 5);
    const fault: TransactionFault = kind === "drop" && this.#random.chance(0.25)
      ? { kind: "dropAfterCommit" }
      : { kind, at };
    worker.transactionFault = fault;
    this.#log(
      `${worker.id}: its next transaction ${
        fault.kind === "fail"
          ? `fails at statement ${fault.at + 1}`
          : fault.kind === "drop"
          ? `loses its connection before statement ${fault.at + 1}`
          : "loses its connection after COMMIT"
      } (or at COMMIT)`,
    );
  }

  #armOverrun(worker: SimWorker): void {
    const kind = this.#random.pick(["late", "slow"] as const);
    const sleepMs = this.#batchTimeout + this.#random.int(50, this.#batchTimeout);
    worker.handlerFault = { kind, sleepMs };
    this.#log(`${worker.id}: its next handler call overruns its batch timeout (${kind})`);
  }

  #armAbort(worker: SimWorker): void {
    const at = this.#random.int(-1, 5);
    worker.abortFault = { at };
    this.#log(
      `${worker.id}: stopped during its next batch (${
        at < 0 ? "in a handler" : `at statement ${at + 1}`
      })`,
    );
  }

  #deafen(worker: SimWorker): void {
    const ms = this.#random.int(500, this.#heartbeatTimeout * 2);
    worker.deafUntil = this.#clock.now() + ms;
    this.#log(`${worker.id} loses its notifications for ${ms} ms`);
  }

  #skew(worker: SimWorker): void {
    // A step of its clock (NTP): below the heartbeat timeout either way.
    const limit = this.#heartbeatTimeout - 1;
    worker.clock.offset = this.#random.int(-limit, limit);
    this.#log(`${worker.id}'s clock is now off by ${worker.clock.offset} ms`);
  }

  // --- checks ----------------------------------------------------------------------------------

  #events: PersistedEvent[] = [];

  async #refresh(): Promise<void> {
    this.#events = await this.#store.readEvents(this.#store, 0, 1_000_000);
  }

  async #check(): Promise<void> {
    await this.#refresh();
    const failures: string[] = [];
    for (const consumer of this.#runnable) {
      const name = consumer.name;
      const partition = partitionOf(consumer);
      const checkpoint = this.#storage.checkpoint(name);
      const before = this.#checkpoints.get(name) ?? 0;
      if (checkpoint < before) failures.push(`${name}'s checkpoint went back from ${before}`);
      this.#checkpoints.set(name, checkpoint);
      const skipped = new Set([
        ...this.#storage.deadLetters(name).filter((d) => d.skipped).map((d) => d.globalPosition),
        ...this.#storage.gapSkips(name).flatMap((s) => s.skippedPositions),
      ]);
      const expected = this.#events.filter((e) =>
        e.globalPosition <= checkpoint && !skipped.has(e.globalPosition) &&
        matches(consumer.aggregateTypes, e.aggregateType) &&
        matches(consumer.eventTypes, e.eventType) &&
        (partition === null || inPartition(e, partition))
      ).map((e) => e.globalPosition);
      const handled = this.#handled.get(name)!;
      if (JSON.stringify(handled) !== JSON.stringify(expected)) {
        failures.push(
          `${name} at checkpoint ${checkpoint} handled [${handled.join(",")}], ` +
            `expected exactly once in order [${expected.join(",")}]`,
        );
      }
    }
    failures.push(...this.#problems);
    if (failures.length > 0) this.#fail(failures.join("; "));
    const rebalances = this.#storage.rebalances();
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
      `(at t+${rebalance.at - EPOCH}ms) ${rebalance.leader} rebalanced: ${
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
    for (const worker of this.#live()) {
      this.#heal(worker);
      worker.transactionFault = worker.handlerFault = worker.abortFault = null;
      worker.deafUntil = 0;
    }
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
    const members: WorkerMembership[] = [];
    for (const [id, row] of this.#storage.registrations()) {
      if (now - row.heartbeatAt <= this.#heartbeatTimeout) {
        members.push({ workerId: id, consumers: row.consumers });
      }
    }
    const expected = live.map((w) => w.id).sort();
    const seen = members.map((m) => m.workerId).sort();
    if (JSON.stringify(seen) !== JSON.stringify(expected)) {
      return `live registrations [${seen}] are not the running workers [${expected}]`;
    }
    const assignments = this.#storage.assignments();
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
    for (const consumer of this.#runnable) {
      const eligible = members.some((m) => m.consumers.includes(consumer.name));
      const checkpoint = this.#storage.checkpoint(consumer.name);
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
        worker.clock.process.resume();
      }
      worker.stopped = true;
    }
    let stopped = false;
    const all = Promise.all(this.#workers.map((w) => w.runtime.stop().then(() => w.done)))
      .then(() => (stopped = true));
    // A stop may wait for a statement that waits for time (a lock, a handler still sleeping).
    for (let waited = 0; !stopped && waited < 600_000; waited += 1_000) {
      await this.#clock.advance(1_000);
    }
    if (stopped) await all;
  }
}

/** Whether the error comes from an injected fault (or its consequence: a timeout, a lost session). */
function causedByFault(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 10; depth++) {
    if (e instanceof SimulatedFault || e instanceof BatchTimeoutError) return true;
    if (e instanceof Error && e.message.includes(ENDED_BY_THE_SERVER)) return true;
    e = (e as { cause?: unknown })?.cause;
  }
  return false;
}
