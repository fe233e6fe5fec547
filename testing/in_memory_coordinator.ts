/**
 * The worker's coordination in memory: the production `CoordinationProtocol` over an
 * {@link InMemoryStorage} (registrations, assignments, checkpoints, dead letters and gap-skip
 * audit rows next to an {@link InMemoryEventStore}, with row locks standing in for PostgreSQL's).
 * Every batch is one of the store's transactions, so a handler's writes (joined through
 * `tx.onCommit`) commit atomically with the checkpoint. One storage serves any number of workers:
 * registrations with heartbeats, both leader strategies (`advisory`: a lock held by the leader's
 * session, which dies with it; `lease`: an expiry in the storage's clock), the leader's rebalance
 * (waiting, like PostgreSQL's row locks, for a running batch of each consumer it moves), change
 * notifications, and a server-side bound on a silent batch transaction (PostgreSQL's
 * `idle_in_transaction_session_timeout`). This class adds the inspection and fault controls tests
 * use.
 *
 * @module
 */
import type { Clock } from "../internal/clock.ts";
import type { PersistedEvent } from "../store/types.ts";
import { CoordinationProtocol, readStatus } from "../worker/core/protocol.ts";
import { redriveWith } from "../worker/core/redrive.ts";
import { WorkerRuntime } from "../worker/core/runtime.ts";
import { BaseWorker, bindRuntime } from "../worker/base_worker.ts";
import type { WorkerRuntimeOptions } from "../worker/options.ts";
import type {
  Consumer,
  DetachedConsumer,
  GapSkip,
  LeaderStatus,
  WorkerStatus,
} from "../worker/types.ts";
import {
  type InMemoryDeadLetter,
  type InMemoryRebalance,
  InMemoryStorage,
} from "./in_memory_storage.ts";
import type { InMemoryEventStore, InMemoryTransaction } from "./in_memory_store.ts";

export type { InMemoryDeadLetter, InMemoryRebalance } from "./in_memory_storage.ts";

/**
 * Options for {@link InMemoryCoordinator}.
 *
 * @example
 * ```ts
 * import { FakeClock, type InMemoryCoordinatorOptions } from "@eventsalsa/eventsalsa/testing";
 * const options: InMemoryCoordinatorOptions = { clock: new FakeClock(0) };
 * ```
 */
export interface InMemoryCoordinatorOptions {
  /** Time for heartbeats, leases and record timestamps; use the workers' clock. */
  clock?: Clock;
}

/** A storage the next coordinator shares instead of creating its own (see `coordinatorOver`). */
let sharedStorage: InMemoryStorage | null = null;

/**
 * The in-memory coordinator (see the module doc): hand it to {@link InMemoryWorker}s; inspect and
 * disturb what they share through its methods.
 *
 * @example
 * ```ts
 * import { InMemoryCoordinator, InMemoryEventStore, InMemoryWorker } from "@eventsalsa/eventsalsa/testing";
 * const store = new InMemoryEventStore();
 * const coordinator = new InMemoryCoordinator(store);
 * const worker = new InMemoryWorker(coordinator, [{ name: "audit", handle() {} }]);
 * const running = worker.start();
 * await worker.stop();
 * await running;
 * ```
 */
export class InMemoryCoordinator {
  /** The event store the workers read. */
  readonly store: InMemoryEventStore;
  readonly #storage: InMemoryStorage;
  readonly #protocol: CoordinationProtocol<InMemoryTransaction>;

  /** Creates a coordinator over `store`. */
  constructor(store: InMemoryEventStore, options: InMemoryCoordinatorOptions = {}) {
    const storage = sharedStorage ?? new InMemoryStorage(store, options);
    this.#storage = storage;
    this.#protocol = new CoordinationProtocol(storage);
    this.store = storage.store;
    protocols.set(this, this.#protocol);
  }

  // --- test controls and inspection -------------------------------------------------------------

  /** Simulates losing every listener connection (dispatchers and change listeners reconnect). */
  dropListeners(error: unknown = new Error("listener connection lost")): void {
    this.#storage.dropListeners(error);
  }

  /** How many append listeners (notify dispatchers) are connected. */
  get listenerCount(): number {
    return this.#storage.listenerCount;
  }

  /** How many change listeners (one per running worker) are connected. */
  get changeListenerCount(): number {
    return this.#storage.changeListenerCount;
  }

  /**
   * Reassigns a consumer by hand (e.g. to another worker, or null), at once and without a
   * notification (it does not wait for a running batch of the consumer).
   */
  setAssignment(consumer: string, workerId: string | null): void {
    this.#storage.setAssignment(consumer, workerId);
  }

  /**
   * Deletes a worker's registration (as another worker's cleanup or an operator would) and
   * announces it: at once when no batch holds its consumers, else when those batches end (the
   * foreign key's cascade waits for their row locks, as on PostgreSQL).
   */
  deleteWorker(workerId: string): void {
    this.#protocol.unregisterWorker(workerId).catch(() => {});
  }

  /**
   * Ends the advisory leader's session (like `pg_terminate_backend` on it, or its process dying):
   * the lock is free; that leader finds out at its next check. With `workerId`, only if that
   * worker holds it. Returns whether a session was ended.
   */
  terminateLeaderSession(workerId?: string): boolean {
    return this.#storage.terminateLeaderSession(workerId);
  }

  /** Makes the current lease run out now (a leader that could not renew in time). */
  expireLease(): void {
    this.#storage.expireLease();
  }

  /** The current leader (advisory lock holder, or unexpired lease), or null. */
  leader(): LeaderStatus | null {
    return this.#storage.leader();
  }

  /** Registered workers (live or not) with the consumers each registered. */
  registrations(): Map<string, { heartbeatAt: number; consumers: string[] }> {
    return this.#storage.registrations();
  }

  /** Every assignment row. */
  assignments(): Map<string, string | null> {
    return this.#storage.assignments();
  }

  /** Every rebalance a leader applied, oldest first. */
  rebalances(): readonly InMemoryRebalance[] {
    return this.#storage.rebalances();
  }

  /** The consumer's checkpoint (0 when none). */
  checkpoint(consumer: string): number {
    return this.#storage.checkpoint(consumer);
  }

  /** The worker a consumer is assigned to. */
  assignment(consumer: string): string | null {
    return this.#storage.assignment(consumer);
  }

  /** Every dead letter, by consumer and position. */
  deadLetters(consumer?: string): InMemoryDeadLetter[] {
    return this.#storage.deadLetters(consumer);
  }

  /** Every gap-skip audit record. */
  gapSkips(consumer?: string): GapSkip[] {
    return this.#storage.gapSkips(consumer);
  }

  /** The same report as the PostgreSQL `status`. */
  status(heartbeatTimeoutMs = 30_000): Promise<WorkerStatus> {
    return readStatus(this.#storage, heartbeatTimeoutMs);
  }

  /**
   * Redrives a skipped dead letter through `consumer` now (see `retryDeadLetter` of the worker).
   *
   * @example
   * ```ts
   * import { InMemoryCoordinator, InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const coordinator = new InMemoryCoordinator(new InMemoryEventStore());
   * await coordinator.retryDeadLetter({ name: "p", handle() {} }, 3).catch(() => {});
   * ```
   */
  retryDeadLetter(
    consumer: Consumer<InMemoryTransaction> | DetachedConsumer<InMemoryTransaction>,
    position: number,
  ): Promise<PersistedEvent> {
    return redriveWith(this.#protocol, consumer, position, "redrive");
  }
}

/**
 * The worker runtime on an {@link InMemoryCoordinator}: the same consumer loop, gap rule and
 * back-off as the PostgreSQL `Worker`, for tests and the multi-worker simulation. Handlers receive
 * an {@link InMemoryTransaction}; join it with `tx.onCommit` to write atomically with the
 * checkpoint.
 *
 * @example
 * ```ts
 * import { FakeClock, InMemoryCoordinator, InMemoryEventStore, InMemoryWorker } from "@eventsalsa/eventsalsa/testing";
 * const clock = new FakeClock(0);
 * const coordinator = new InMemoryCoordinator(new InMemoryEventStore(), { clock });
 * const seen: number[] = [];
 * const worker = new InMemoryWorker(coordinator, [{
 *   name: "audit",
 *   handle: (tx, event) => tx.onCommit(() => seen.push(event.globalPosition)),
 * }], { clock, workerId: "w-1" });
 * const running = worker.start();
 * await clock.advance(1_000);
 * await worker.stop();
 * await running;
 * ```
 */
export class InMemoryWorker extends BaseWorker {
  /** Validates consumers and options (see `WorkerRuntimeOptions`). */
  constructor(
    coordinator: InMemoryCoordinator,
    consumers: readonly (Consumer<InMemoryTransaction> | DetachedConsumer<InMemoryTransaction>)[],
    options: WorkerRuntimeOptions = {},
  ) {
    super();
    bindRuntime(this, new WorkerRuntime(protocolOf(coordinator), consumers, options));
  }
}

const protocols = new WeakMap<InMemoryCoordinator, CoordinationProtocol<InMemoryTransaction>>();

/** The protocol behind a coordinator: what its workers call. Internal (tests, the simulation). */
export function protocolOf(
  coordinator: InMemoryCoordinator,
): CoordinationProtocol<InMemoryTransaction> {
  return protocols.get(coordinator)!;
}

/** A coordinator over a `storage` that others share (the simulation). Internal. */
export function coordinatorOver(storage: InMemoryStorage): InMemoryCoordinator {
  sharedStorage = storage;
  try {
    return new InMemoryCoordinator(storage.store);
  } finally {
    sharedStorage = null;
  }
}
