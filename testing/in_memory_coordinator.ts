/**
 * The worker's coordination port in memory: worker registrations, assignments, checkpoints, dead
 * letters and gap-skip audit rows live next to an {@link InMemoryEventStore}, and every batch is
 * one of its transactions, so a handler's writes (joined through `tx.onCommit`) commit atomically
 * with the checkpoint. The gap rule uses {@link InMemoryEventStore.inFlightPositions} in place of
 * PostgreSQL's transaction snapshot. One coordinator serves any number of workers, which is what
 * the multi-worker simulation drives: registrations with heartbeats, both leader strategies
 * (`advisory`: a lock held by the leader's session, which dies with it; `lease`: an expiry in the
 * coordinator's clock), the leader's rebalance (which, like PostgreSQL's row locks, waits for a
 * running batch of each consumer it moves), change notifications, and a server-side bound on a
 * silent batch transaction (PostgreSQL's `idle_in_transaction_session_timeout`).
 *
 * @module
 */
import { type Clock, systemClock } from "../internal/clock.ts";
import type { PersistedEvent } from "../store/types.ts";
import type {
  AssignmentChange,
  AssignmentSnapshot,
  WorkerMembership,
} from "../worker/core/assignment.ts";
import type {
  BatchOutcome,
  BatchRequest,
  BatchSession,
  CoordinationChange,
  Coordinator,
  DeadLetterRecord,
  GapSkipRecord,
  LeaderElection,
  LeaderElectionSettings,
  ListenerHandle,
} from "../worker/core/coordination.ts";
import type { GapToken, WindowRead } from "../worker/core/gap_rule.ts";
import { redriveWith } from "../worker/core/redrive.ts";
import { rejectOnAbort } from "../worker/core/wakeup.ts";
import { WorkerRuntime } from "../worker/core/runtime.ts";
import { DeadLetterNotFoundError, WorkerIdInUseError } from "../worker/errors.ts";
import type { WorkerRuntimeOptions } from "../worker/options.ts";
import type { Consumer, GapBlocker, GapWait, LeaderStatus, WorkerStatus } from "../worker/types.ts";
import type { InMemoryEventStore, InMemoryTransaction } from "./in_memory_store.ts";

/**
 * A dead letter as the in-memory coordinator keeps it.
 *
 * @example
 * ```ts
 * import type { InMemoryDeadLetter } from "@eventsalsa/eventsalsa/testing";
 * const open = (d: InMemoryDeadLetter) => d.skipped && d.redrivenAt === null;
 * ```
 */
export interface InMemoryDeadLetter {
  /** The consumer that failed on the event. */
  readonly consumer: string;
  /** The event's global position. */
  readonly globalPosition: number;
  /** The event's id. */
  readonly eventId: string;
  /** The error text. */
  readonly error: string;
  /** Failed attempts so far. */
  readonly attempts: number;
  /** True: the checkpoint moved past it. False: the consumer stays at it. */
  readonly skipped: boolean;
  /** The worker that recorded it last. */
  readonly workerId: string;
  /** Clock time it was resolved (handled after all), or null. */
  readonly resolvedAt: number | null;
  /** Clock time it was redriven, or null. */
  readonly redrivenAt: number | null;
}

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
  /** Time for heartbeats and record timestamps; use the workers' clock. */
  clock?: Clock;
}

/**
 * One rebalance the leader applied, as the in-memory coordinator records it (for the simulation's
 * checks: the input the leader planned from, and what it changed).
 *
 * @example
 * ```ts
 * import type { InMemoryRebalance } from "@eventsalsa/eventsalsa/testing";
 * const moved = (r: InMemoryRebalance) => r.changes.filter((c) => c.from !== null).length;
 * ```
 */
export interface InMemoryRebalance {
  /** Coordinator clock time of the write. */
  readonly at: number;
  /** The leader that wrote it. */
  readonly leader: string;
  /** What the leader planned from. */
  readonly snapshot: AssignmentSnapshot;
  /** The rows it changed. */
  readonly changes: readonly AssignmentChange[];
}

interface Node {
  startedAt: number;
  heartbeatAt: number;
  consumers: string[];
}

interface Lease {
  leaderId: string | null;
  expiresAt: number;
  since: number;
}

interface AdvisoryHolder {
  workerId: string;
  session: object;
  since: number;
}

interface CheckpointRow {
  position: number;
  updatedAt: number;
  gap: GapWait | null;
}

/** A per-consumer mutex, standing in for the row locks on assignment and checkpoint. */
class ConsumerLock {
  #tail: Promise<void> = Promise.resolve();

  async acquire(signal?: AbortSignal): Promise<() => void> {
    let release!: () => void;
    const previous = this.#tail;
    this.#tail = new Promise<void>((resolve) => (release = resolve));
    if (signal === undefined) {
      await previous;
      return release;
    }
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    try {
      await Promise.race([previous, aborted]);
    } catch (error) {
      // Keep the queue order: hand the lock on once the previous holder is done.
      void previous.then(release);
      throw error;
    }
    return release;
  }
}

class InMemoryOwnershipChange extends Error {
  readonly owner: string | null;
  constructor(owner: string | null) {
    super("the consumer's owner changed during the batch");
    this.owner = owner;
  }
}

interface InMemoryToken {
  readonly inFlight: readonly number[];
}

/**
 * The in-memory coordinator (see the module doc).
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
export class InMemoryCoordinator implements Coordinator<InMemoryTransaction> {
  /** The event store the workers read. */
  readonly store: InMemoryEventStore;
  readonly #clock: Clock;
  readonly #nodes = new Map<string, Node>();
  readonly #assignments = new Map<string, string | null>();
  readonly #checkpoints = new Map<string, CheckpointRow>();
  readonly #deadLetters = new Map<string, InMemoryDeadLetter>();
  readonly #gapSkips: GapSkipRecord[] = [];
  readonly #locks = new Map<string, ConsumerLock>();
  readonly #listeners = new Set<(error: unknown) => void>();
  readonly #changeListeners = new Map<
    (error: unknown) => void,
    (change: CoordinationChange) => void
  >();
  #lease: Lease | null = null;
  #advisory: AdvisoryHolder | null = null;
  readonly #rebalances: InMemoryRebalance[] = [];

  /** Creates a coordinator over `store`. */
  constructor(store: InMemoryEventStore, options: InMemoryCoordinatorOptions = {}) {
    this.store = store;
    this.#clock = options.clock ?? systemClock;
  }

  #lock(consumer: string): ConsumerLock {
    let lock = this.#locks.get(consumer);
    if (lock === undefined) this.#locks.set(consumer, lock = new ConsumerLock());
    return lock;
  }

  /** Nothing to check in memory. */
  prepare(): Promise<void> {
    return Promise.resolve();
  }

  #notifyChange(change: CoordinationChange): void {
    // Delivered after the "commit", like a NOTIFY.
    const targets = [...this.#changeListeners.values()];
    queueMicrotask(() => {
      for (const onChange of targets) onChange(change);
    });
  }

  /** Removes registrations silent for longer than `olderThanMs` (crashed workers). */
  cleanupStaleWorkers(olderThanMs: number): Promise<number> {
    const now = this.#clock.now();
    const stale = [...this.#nodes].filter(([, node]) => now - node.heartbeatAt > olderThanMs);
    for (const [id] of stale) this.#remove(id);
    if (stale.length > 0) this.#notifyChange("membership");
    return Promise.resolve(stale.length);
  }

  /** Registers (or takes over a silent registration of) `workerId`. */
  registerWorker(
    workerId: string,
    consumers: readonly string[],
    heartbeatTimeoutMs: number,
  ): Promise<void> {
    const now = this.#clock.now();
    const existing = this.#nodes.get(workerId);
    if (existing !== undefined && now - existing.heartbeatAt < heartbeatTimeoutMs) {
      return Promise.reject(new WorkerIdInUseError(workerId));
    }
    this.#nodes.set(workerId, { startedAt: now, heartbeatAt: now, consumers: [...consumers] });
    for (const name of consumers) {
      if (!this.#assignments.has(name)) this.#assignments.set(name, null);
      if (!this.#checkpoints.has(name)) {
        this.#checkpoints.set(name, { position: 0, updatedAt: now, gap: null });
      }
    }
    this.#notifyChange("membership");
    return Promise.resolve();
  }

  /** Refreshes the heartbeat; false when the registration is gone. */
  heartbeat(workerId: string): Promise<boolean> {
    const node = this.#nodes.get(workerId);
    if (node !== undefined) node.heartbeatAt = this.#clock.now();
    return Promise.resolve(node !== undefined);
  }

  /** Deletes a registration: its assignments become free, its lease goes (the foreign keys). */
  #remove(workerId: string): boolean {
    if (!this.#nodes.delete(workerId)) return false;
    for (const [name, owner] of this.#assignments) {
      if (owner === workerId) this.#assignments.set(name, null);
    }
    if (this.#lease?.leaderId === workerId) this.#lease = null;
    return true;
  }

  /** Removes the registration; its assignments become free (like `ON DELETE SET NULL`). */
  unregisterWorker(workerId: string): Promise<void> {
    if (this.#remove(workerId)) this.#notifyChange("membership");
    return Promise.resolve();
  }

  /** The consumers assigned to `workerId`, by name. */
  assignedConsumers(workerId: string): Promise<string[]> {
    return Promise.resolve(
      [...this.#assignments].filter(([, owner]) => owner === workerId).map(([name]) => name)
        .sort(),
    );
  }

  /** Live workers: heartbeat within `timeoutMs`. */
  #live(timeoutMs: number): WorkerMembership[] {
    const now = this.#clock.now();
    return [...this.#nodes]
      .filter(([, node]) => now - node.heartbeatAt <= timeoutMs)
      .map(([workerId, node]) => ({ workerId, consumers: [...node.consumers] }));
  }

  /** The leader election of `workerId` (see the module doc for the two strategies). */
  leaderElection(workerId: string, settings: LeaderElectionSettings): LeaderElection {
    let session: object | null = null;
    const strategy = settings.strategy;
    const leads = (): boolean => {
      if (strategy === "advisory") return session !== null && this.#advisory?.session === session;
      const lease = this.#lease;
      return lease !== null && lease.leaderId === workerId &&
        lease.expiresAt > this.#clock.now();
    };
    const acquire = (): Promise<boolean> => {
      const now = this.#clock.now();
      if (strategy === "advisory") {
        if (session !== null) {
          if (this.#advisory?.session === session) return Promise.resolve(true);
          session = null; // the session died: a new one is opened next time
          return Promise.resolve(false);
        }
        if (this.#advisory !== null) return Promise.resolve(false);
        session = {};
        this.#advisory = { workerId, session, since: now };
        return Promise.resolve(true);
      }
      const lease = this.#lease;
      if (
        lease !== null && lease.leaderId !== null && lease.leaderId !== workerId &&
        lease.expiresAt > now
      ) {
        return Promise.resolve(false);
      }
      // The lease row references the registration (a renewal without one fails, as the FK does).
      if (!this.#nodes.has(workerId)) return Promise.resolve(false);
      this.#lease = {
        leaderId: workerId,
        expiresAt: now + settings.leaseMs,
        since: lease?.leaderId === workerId ? lease.since : now,
      };
      return Promise.resolve(true);
    };
    const rebalance = async (
      plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
      signal: AbortSignal,
    ): Promise<readonly AssignmentChange[] | null> => {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (!leads()) return null;
        const snapshot: AssignmentSnapshot = {
          workers: this.#live(settings.heartbeatTimeoutMs),
          assignments: new Map(this.#assignments),
        };
        const changes = plan(snapshot);
        if (changes.length === 0) return [];
        // Like the UPDATEs on PostgreSQL: wait for each moved consumer's running batch, in name
        // order, up to the lock timeout.
        const releases: Array<() => void> = [];
        const timeout = new AbortController();
        const timer = this.#clock.setTimeout(
          () => timeout.abort(new Error("rebalance lock timeout")),
          settings.rebalanceLockTimeoutMs,
        );
        try {
          const waits = AbortSignal.any([signal, timeout.signal]);
          for (const change of changes) {
            releases.push(await this.#lock(change.consumer).acquire(waits));
          }
          if (!leads()) return null;
          if (changes.some((c) => (this.#assignments.get(c.consumer) ?? null) !== c.from)) {
            continue; // changed meanwhile: plan again
          }
          for (const change of changes) {
            if (change.to !== null && !this.#nodes.has(change.to)) {
              throw new Error(`worker ${change.to} is gone (foreign key)`);
            }
          }
          for (const change of changes) this.#assignments.set(change.consumer, change.to);
          this.#rebalances.push({ at: this.#clock.now(), leader: workerId, snapshot, changes });
          this.#notifyChange("assignments");
          return changes;
        } finally {
          this.#clock.clearTimeout(timer);
          for (const release of releases) release();
        }
      }
      return [];
    };
    const release = (): Promise<void> => {
      if (strategy === "advisory") {
        if (session !== null && this.#advisory?.session === session) this.#advisory = null;
        session = null;
      } else if (this.#lease?.leaderId === workerId) {
        this.#lease = { ...this.#lease, leaderId: null, expiresAt: this.#clock.now() - 60_000 };
      }
      return Promise.resolve();
    };
    return { acquire, rebalance, release };
  }

  /** Subscribes to coordination changes (membership, assignments). */
  openChangeListener(
    onChange: (change: CoordinationChange) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    const lost = (error: unknown) => {
      this.#changeListeners.delete(lost);
      onClose(error);
    };
    this.#changeListeners.set(lost, onChange);
    return Promise.resolve({
      close: () => {
        this.#changeListeners.delete(lost);
        return Promise.resolve();
      },
    });
  }

  /** The consumer's checkpoint (0 when none). */
  readCheckpoint(consumer: string): Promise<number> {
    return Promise.resolve(this.#checkpoints.get(consumer)?.position ?? 0);
  }

  /** Positions of unresolved, non-skipped dead letters. */
  blockingDeadLetters(consumer: string): Promise<number[]> {
    return Promise.resolve(
      [...this.#deadLetters.values()]
        .filter((d) => d.consumer === consumer && !d.skipped && d.resolvedAt === null)
        .map((d) => d.globalPosition),
    );
  }

  #token(): InMemoryToken {
    return { inFlight: this.store.inFlightPositions() };
  }

  #resolved(token: GapToken | null): boolean {
    if (token === null) return false;
    const open = new Set(this.store.inFlightPositions());
    return (token as InMemoryToken).inFlight.every((position) => !open.has(position));
  }

  async #read(
    tx: InMemoryTransaction | InMemoryEventStore,
    afterPosition: number,
    limit: number,
    pendingToken: GapToken | null,
  ): Promise<WindowRead> {
    const pendingResolved = this.#resolved(pendingToken);
    const events = await this.store.readEvents(tx, afterPosition, limit);
    return { events, pendingResolved, token: () => Promise.resolve(this.#token()) };
  }

  /** Reads the window outside any transaction. */
  readWindow(
    afterPosition: number,
    limit: number,
    pendingToken: GapToken | null,
    signal: AbortSignal,
  ): Promise<WindowRead> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return this.#read(this.store, afterPosition, limit, pendingToken);
  }

  /** The highest committed position. */
  latestPosition(): Promise<number> {
    return this.store.latestPosition(this.store);
  }

  /** One entry per position an open transaction still holds among those the token covers. */
  gapBlockers(token: GapToken): Promise<GapBlocker[]> {
    const open = new Set(this.store.inFlightPositions());
    const held = (token as InMemoryToken).inFlight.filter((p) => open.has(p));
    return Promise.resolve(
      held.length === 0 ? [] : [{
        pid: null,
        xid: null,
        transactionAgeMs: null,
        state: "in flight",
        applicationName: "in-memory",
        query: `holds positions ${held.join(", ")}`,
      }],
    );
  }

  /** Keeps the gap wait for `status`. */
  reportGap(consumer: string, gap: GapWait | null): Promise<void> {
    const row = this.#checkpoints.get(consumer);
    if (row !== undefined) row.gap = gap;
    return Promise.resolve();
  }

  /** Runs a batch as one in-memory transaction under the consumer's lock (see the port). */
  async runBatch<T>(
    request: BatchRequest,
    work: (session: BatchSession<InMemoryTransaction>) => Promise<T>,
  ): Promise<BatchOutcome<T>> {
    const { consumer, workerId, expectedCheckpoint, signal } = request;
    const release = await this.#lock(consumer).acquire(signal);
    // The server's side of a silent transaction: ended after idleTimeout, rows freed.
    const server = new AbortController();
    const timer = request.idleTimeout === undefined ? null : this.#clock.setTimeout(
      () =>
        server.abort(
          new Error(`batch transaction of ${consumer} ended by the server: silent too long`),
        ),
      request.idleTimeout,
    );
    const owns = () =>
      (this.#assignments.get(consumer) ?? null) === workerId && this.#nodes.has(workerId);
    try {
      return await this.store.transaction(async (tx): Promise<BatchOutcome<T>> => {
        if (!owns()) return { kind: "notOwner", owner: this.#assignments.get(consumer) ?? null };
        const current = this.#checkpoints.get(consumer)?.position ?? 0;
        if (current !== expectedCheckpoint) return { kind: "checkpointMoved", checkpoint: current };
        const read = request.read === null
          ? null
          : await this.#read(tx, expectedCheckpoint, request.read.limit, request.read.pendingToken);
        const session = this.#session(tx, consumer, read);
        const value = await Promise.race([
          work(session),
          rejectOnAbort(signal),
          rejectOnAbort(server.signal),
        ]);
        if (signal.aborted) throw signal.reason;
        if (server.signal.aborted) throw server.signal.reason;
        // PostgreSQL's row lock keeps the owner from changing under a batch; here a registration
        // deleted or an assignment set by hand meanwhile rolls the batch back instead.
        if (!owns()) {
          throw new InMemoryOwnershipChange(this.#assignments.get(consumer) ?? null);
        }
        return { kind: "committed", value };
      }).catch((error) => {
        if (error instanceof InMemoryOwnershipChange) {
          return { kind: "notOwner", owner: error.owner } as BatchOutcome<T>;
        }
        throw error;
      });
    } finally {
      if (timer !== null) this.#clock.clearTimeout(timer);
      release();
    }
  }

  #session(
    tx: InMemoryTransaction,
    consumer: string,
    read: WindowRead | null,
  ): BatchSession<InMemoryTransaction> {
    const now = () => this.#clock.now();
    return {
      tx,
      read,
      saveCheckpoint: (position: number) => {
        tx.assertUsable();
        tx.onCommit(() => {
          const row = this.#checkpoints.get(consumer);
          this.#checkpoints.set(consumer, { position, updatedAt: now(), gap: row?.gap ?? null });
        });
        return Promise.resolve();
      },
      recordDeadLetter: (record: DeadLetterRecord) => {
        tx.assertUsable();
        tx.onCommit(() =>
          this.#deadLetters.set(`${record.consumer}\u0000${record.event.globalPosition}`, {
            consumer: record.consumer,
            globalPosition: record.event.globalPosition,
            eventId: record.event.eventId,
            error: record.error,
            attempts: record.attempts,
            skipped: record.skipped,
            workerId: record.workerId,
            resolvedAt: null,
            redrivenAt: null,
          })
        );
        return Promise.resolve();
      },
      resolveDeadLetters: (name: string, positions: readonly number[]) => {
        tx.assertUsable();
        tx.onCommit(() => {
          for (const position of positions) {
            const key = `${name}\u0000${position}`;
            const row = this.#deadLetters.get(key);
            if (row !== undefined && !row.skipped && row.resolvedAt === null) {
              this.#deadLetters.set(key, { ...row, resolvedAt: now() });
            }
          }
        });
        return Promise.resolve();
      },
      recordGapSkip: (record: GapSkipRecord) => {
        tx.assertUsable();
        tx.onCommit(() => this.#gapSkips.push(record));
        return Promise.resolve();
      },
    };
  }

  /** Redrives a skipped dead letter (see the port). */
  async redriveDeadLetter<T>(
    consumer: string,
    position: number,
    work: (tx: InMemoryTransaction, event: PersistedEvent) => Promise<T>,
  ): Promise<T> {
    const release = await this.#lock(consumer).acquire();
    try {
      const key = `${consumer}\u0000${position}`;
      const row = this.#deadLetters.get(key);
      if (row === undefined || !row.skipped || row.redrivenAt !== null) {
        throw new DeadLetterNotFoundError(consumer, position);
      }
      return await this.store.transaction(async (tx) => {
        const [event] = await this.store.readEvents(tx, position - 1, 1);
        if (event === undefined || event.globalPosition !== position) {
          throw new DeadLetterNotFoundError(consumer, position, "the event is not in the store");
        }
        const result = await work(tx, event);
        tx.onCommit(() => this.#deadLetters.set(key, { ...row, redrivenAt: this.#clock.now() }));
        return result;
      });
    } finally {
      release();
    }
  }

  /** Subscribes to the store's notifications (the store needs a `notifyChannel`). */
  openListener(onNotify: () => void, onClose: (error: unknown) => void): Promise<ListenerHandle> {
    const channel = this.store.notifyChannel;
    if (channel === null) {
      return Promise.reject(new Error("the in-memory store has no notifyChannel to listen on"));
    }
    const unlisten = this.store.listen(channel, () => onNotify());
    const lost = (error: unknown) => {
      this.#listeners.delete(lost);
      unlisten();
      onClose(error);
    };
    this.#listeners.add(lost);
    return Promise.resolve({
      close: () => {
        this.#listeners.delete(lost);
        unlisten();
        return Promise.resolve();
      },
    });
  }

  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  // --- test controls and inspection -------------------------------------------------------------

  /** Simulates losing every listener connection (dispatchers and change listeners reconnect). */
  dropListeners(error: unknown = new Error("listener connection lost")): void {
    for (const lost of [...this.#listeners]) lost(error);
    for (const lost of [...this.#changeListeners.keys()]) lost(error);
  }

  /** How many append listeners (notify dispatchers) are connected. */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** How many change listeners (one per running worker) are connected. */
  get changeListenerCount(): number {
    return this.#changeListeners.size;
  }

  /** Reassigns a consumer by hand (e.g. to another worker, or null), without a notification. */
  setAssignment(consumer: string, workerId: string | null): void {
    this.#assignments.set(consumer, workerId);
  }

  /** Deletes a worker's registration (as another worker's cleanup or an operator would). */
  deleteWorker(workerId: string): void {
    void this.unregisterWorker(workerId);
  }

  /**
   * Ends the advisory leader's session (like `pg_terminate_backend` on it, or its process dying):
   * the lock is free; that leader finds out at its next check. With `workerId`, only if that
   * worker holds it. Returns whether a session was ended.
   */
  terminateLeaderSession(workerId?: string): boolean {
    if (this.#advisory === null) return false;
    if (workerId !== undefined && this.#advisory.workerId !== workerId) return false;
    this.#advisory = null;
    return true;
  }

  /** Makes the current lease run out now (a leader that could not renew in time). */
  expireLease(): void {
    if (this.#lease !== null) this.#lease = { ...this.#lease, expiresAt: this.#clock.now() };
  }

  /** The current leader (advisory lock holder, or unexpired lease), or null. */
  leader(): LeaderStatus | null {
    if (this.#advisory !== null) {
      return {
        workerId: this.#advisory.workerId,
        strategy: "advisory",
        since: new Date(this.#advisory.since),
        expiresAt: null,
      };
    }
    const lease = this.#lease;
    if (lease !== null && lease.leaderId !== null && lease.expiresAt > this.#clock.now()) {
      return {
        workerId: lease.leaderId,
        strategy: "lease",
        since: new Date(lease.since),
        expiresAt: new Date(lease.expiresAt),
      };
    }
    return null;
  }

  /** Registered workers (live or not) with the consumers each registered. */
  registrations(): Map<string, { heartbeatAt: number; consumers: string[] }> {
    return new Map(
      [...this.#nodes].map(([id, node]) => [id, {
        heartbeatAt: node.heartbeatAt,
        consumers: [...node.consumers],
      }]),
    );
  }

  /** Every assignment row. */
  assignments(): Map<string, string | null> {
    return new Map(this.#assignments);
  }

  /** Every rebalance a leader applied, oldest first. */
  rebalances(): readonly InMemoryRebalance[] {
    return this.#rebalances;
  }

  /** The consumer's checkpoint (0 when none). */
  checkpoint(consumer: string): number {
    return this.#checkpoints.get(consumer)?.position ?? 0;
  }

  /** The worker a consumer is assigned to. */
  assignment(consumer: string): string | null {
    return this.#assignments.get(consumer) ?? null;
  }

  /** Every dead letter, by consumer and position. */
  deadLetters(consumer?: string): InMemoryDeadLetter[] {
    return [...this.#deadLetters.values()]
      .filter((d) => consumer === undefined || d.consumer === consumer)
      .sort((a, b) => a.consumer.localeCompare(b.consumer) || a.globalPosition - b.globalPosition);
  }

  /** Every gap-skip audit record. */
  gapSkips(consumer?: string): GapSkipRecord[] {
    return this.#gapSkips.filter((s) => consumer === undefined || s.consumer === consumer);
  }

  /** The same shape as the PostgreSQL `status`. */
  async status(heartbeatTimeoutMs = 30_000): Promise<WorkerStatus> {
    const latest = await this.latestPosition();
    const now = this.#clock.now();
    const names = [...new Set([...this.#checkpoints.keys(), ...this.#assignments.keys()])].sort();
    return {
      latestPosition: latest,
      workers: [...this.#nodes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map((
        [id, node],
      ) => ({
        workerId: id,
        startedAt: new Date(node.startedAt),
        heartbeatAt: new Date(node.heartbeatAt),
        consumers: [...node.consumers],
        live: now - node.heartbeatAt <= heartbeatTimeoutMs,
      })),
      leader: this.leader(),
      consumers: names.map((name) => {
        const row = this.#checkpoints.get(name);
        const letters = this.deadLetters(name);
        const checkpoint = row?.position ?? 0;
        return {
          name,
          workerId: this.#assignments.get(name) ?? null,
          checkpoint,
          lag: Math.max(0, latest - checkpoint),
          updatedAt: row === undefined ? null : new Date(row.updatedAt),
          gap: row?.gap == null ? null : {
            position: row.gap.position,
            since: new Date(row.gap.since),
            waitingMs: now - row.gap.since,
            blockers: row.gap.blockers,
          },
          deadLetters: {
            skipped: letters.filter((d) => d.skipped && d.redrivenAt === null).length,
            blocking: letters.filter((d) => !d.skipped && d.resolvedAt === null).length,
          },
          gapSkips: this.gapSkips(name).length,
        };
      }),
    };
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
    consumer: Consumer<InMemoryTransaction>,
    position: number,
  ): Promise<PersistedEvent> {
    return redriveWith(this, consumer, position, "redrive");
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
export class InMemoryWorker extends WorkerRuntime<InMemoryTransaction> {
  /** Validates consumers and options (see `WorkerRuntimeOptions`). */
  constructor(
    coordinator: InMemoryCoordinator,
    consumers: readonly Consumer<InMemoryTransaction>[],
    options: WorkerRuntimeOptions = {},
  ) {
    super(coordinator, consumers, options);
  }
}
