/**
 * The coordination protocol, once, for every backend: the consumer loop and the runtime call it
 * (as the {@link Coordinator} they are written against), and it speaks to storage only through
 * the narrow port of `./storage.ts`. Everything that decides lives here:
 *
 * - the batch fence: the consumer's rows locked, its owner and checkpoint compared, in the
 *   batch's own transaction, so a worker that lost the consumer cannot commit for it;
 * - the batch handle's life: open until the batch signal fires, the work ends or the connection
 *   is lost — closed *first* on abort, before the cancel and the rollback, so no handler statement
 *   and no checkpoint reaches the database once the worker has given the batch up;
 * - registration, departure and clean-up, with their notifications;
 * - the leader's rebalance: read, plan, lock the rows that change in name order, check nothing
 *   moved, write, announce;
 * - redrive of a skipped dead letter, serialised with the consumer's batches;
 * - the `status` report.
 *
 * PostgreSQL and the in-memory adapter differ only in how rows are stored and locked; the
 * multi-worker simulation runs this very code with faults injected at the port.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import { BatchClosedError, DeadLetterNotFoundError, WorkerIdInUseError } from "../errors.ts";
import { WorkerConfigError, WorkerSetupError } from "../errors.ts";
import type { ConsumerStatus, GapBlocker, GapWait, WorkerStatus } from "../types.ts";
import { type AssignmentChange, type AssignmentSnapshot, compareCodePoints } from "./assignment.ts";
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
} from "./coordination.ts";
import type { GapToken, WindowQuery, WindowRead } from "./gap_rule.ts";
import type {
  ConsumerRegistration,
  LeadershipStorage,
  StorageTransaction,
  WorkerStorage,
} from "./storage.ts";
import { rejectOnAbort } from "./wakeup.ts";

/** Attempts of a rebalance whose rows changed between its read and its lock. */
const REBALANCE_ATTEMPTS = 3;

/**
 * Rejects with `signal.reason` once the signal fires and `tx.cancel()` was sent (so the statement
 * running in the transaction fails promptly and the rollback is not queued behind it).
 */
function cancelOnAbort<Tx>(
  tx: StorageTransaction<Tx>,
  signal: AbortSignal,
  onAbort: () => void,
): { aborted: Promise<never>; cancelled: () => Promise<void> | null; detach: () => void } {
  let running: Promise<void> | null = null;
  let detach = () => {};
  const aborted = new Promise<never>((_, reject) => {
    const abort = () => {
      onAbort();
      running = tx.cancel().catch(() => {});
      void running.then(() => reject(signal.reason));
    };
    if (signal.aborted) abort();
    else {
      signal.addEventListener("abort", abort, { once: true });
      detach = () => signal.removeEventListener("abort", abort);
    }
  });
  aborted.catch(() => {});
  return { aborted, cancelled: () => running, detach };
}

/**
 * The protocol over a {@link WorkerStorage} (see the module doc). One instance serves one worker
 * at a time (the in-memory adapter shares one storage between many).
 */
export class CoordinationProtocol<Tx> implements Coordinator<Tx> {
  readonly #storage: WorkerStorage<Tx>;
  #singleSession = false;

  /** Creates the protocol over `storage`; nothing happens until `prepare`. */
  constructor(storage: WorkerStorage<Tx>) {
    this.#storage = storage;
  }

  /** The storage this protocol runs on. */
  protected get storage(): WorkerStorage<Tx> {
    return this.#storage;
  }

  /** Checks the schema and learns whether the backend serves one session only. */
  async prepare(): Promise<void> {
    this.#singleSession = (await this.#storage.prepare()).singleSession;
  }

  /** True when the backend serves one session only (see the port). */
  get singleSession(): boolean {
    return this.#singleSession;
  }

  /** Deletes registrations silent longer than `olderThanMs`, and announces it when any went. */
  async cleanupStaleWorkers(olderThanMs: number): Promise<number> {
    const rows = this.#storage.rows;
    const removed = await rows.deleteStaleWorkers(olderThanMs);
    if (removed > 0) await rows.notify("membership");
    return removed;
  }

  /** Registers the worker (unless a live one has its id) and its consumers' rows; announces it. */
  async registerWorker(
    workerId: string,
    consumers: readonly ConsumerRegistration[],
    heartbeatTimeoutMs: number,
  ): Promise<void> {
    const names = consumers.map((c) => c.name);
    await this.#storage.transaction({}, async (tx) => {
      if (!await tx.registerWorker(workerId, names, heartbeatTimeoutMs)) {
        throw new WorkerIdInUseError(workerId);
      }
      await tx.ensureConsumers(consumers);
      await tx.notify("membership");
    });
  }

  /** Refreshes the heartbeat; false when the registration is gone. */
  heartbeat(workerId: string): Promise<boolean> {
    return this.#storage.rows.heartbeat(workerId);
  }

  /** Removes the registration (its consumers become free) and announces it. */
  async unregisterWorker(workerId: string): Promise<void> {
    const rows = this.#storage.rows;
    if (await rows.deleteWorker(workerId)) await rows.notify("membership");
  }

  /** The consumers assigned to `workerId`, with their stored checkpoints. */
  assignedConsumers(workerId: string): Promise<Map<string, number>> {
    return this.#storage.rows.owned(workerId);
  }

  /** Every consumer with an assignment row (registration creates one per consumer). */
  async consumerNames(): Promise<string[]> {
    return [...(await this.#storage.rows.assignments()).keys()];
  }

  /**
   * The leader election of `workerId`: the storage's mechanism for acquiring, the protocol's
   * rebalance. A single-session backend elects by lease whatever the strategy (an advisory lock
   * needs a session of its own).
   */
  leaderElection(workerId: string, settings: LeaderElectionSettings): LeaderElection {
    const leadership = this.#storage.leadership(workerId, {
      strategy: this.#singleSession ? "lease" : settings.strategy,
      leaseMs: settings.leaseMs,
    });
    return {
      acquire: () => leadership.acquire(),
      rebalance: (plan, signal) => rebalance(leadership, settings, plan, signal),
      release: () => leadership.release(),
    };
  }

  /** Listens for joins, leaves and assignment changes; null without a channel. */
  openChangeListener(
    onChange: (change: CoordinationChange) => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle | null> {
    if (this.#singleSession) return Promise.resolve(null);
    return this.#storage.listen("coordination", (change) => {
      if (change !== null) onChange(change);
    }, onClose);
  }

  /** The consumer's checkpoint (0 when none). */
  readCheckpoint(consumer: string): Promise<number> {
    return this.#storage.rows.readCheckpoint(consumer);
  }

  /** Positions of the consumer's unresolved, non-skipped dead letters. */
  blockingDeadLetters(consumer: string): Promise<number[]> {
    return this.#storage.rows.blockingDeadLetters(consumer);
  }

  /** Reads a window outside any transaction (the probe before a batch). */
  readWindow(query: WindowQuery, signal: AbortSignal): Promise<WindowRead> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return Promise.race([
      this.#storage.rows.readWindow(query),
      rejectOnAbort(signal),
    ]);
  }

  /** The highest visible position. */
  latestPosition(): Promise<number> {
    return this.#storage.rows.latestPosition();
  }

  /** Open transactions that may hold the positions the token covers. */
  gapBlockers(token: GapToken): Promise<GapBlocker[]> {
    return this.#storage.rows.gapBlockers(token);
  }

  /** Persists (or clears) the consumer's gap wait for `status`. */
  reportGap(consumer: string, gap: GapWait | null): Promise<void> {
    return this.#storage.rows.reportGap(consumer, gap);
  }

  /**
   * One batch: the fence, then `work` with a session whose every write — the handlers' through
   * `tx`, the checkpoint, dead letters, gap skips — is refused once the batch is over.
   */
  async runBatch<T>(
    request: BatchRequest,
    work: (session: BatchSession<Tx>) => Promise<T>,
  ): Promise<BatchOutcome<T>> {
    const { consumer, workerId, expectedCheckpoint, signal, read } = request;
    if (signal.aborted) throw signal.reason;
    // Open until the signal fires, the work ends, or the connection is lost. Closed first thing
    // on abort (before the cancel and the rollback), so nothing of the batch is sent after it.
    let open = true;
    const close = () => (open = false);
    signal.addEventListener("abort", close, { once: true });
    let detach = () => {};
    try {
      return await this.#storage.transaction({}, async (tx): Promise<BatchOutcome<T>> => {
        const isOpen = () => open && !tx.lost;
        const abort = cancelOnAbort(tx, signal, close);
        detach = abort.detach;
        const guarded = <V>(promise: Promise<V>): Promise<V> =>
          Promise.race([promise, abort.aborted]);
        const fence = await guarded(tx.lockConsumer(consumer, {
          idleTimeout: request.idleTimeout,
          read: read === null ? null : { ...read, after: expectedCheckpoint },
        }));
        const owner = fence?.owner ?? null;
        if (fence === null || owner !== workerId) return { kind: "notOwner", owner };
        if (fence.checkpoint !== expectedCheckpoint) {
          return { kind: "checkpointMoved", checkpoint: fence.checkpoint };
        }
        const session = batchSession(tx, consumer, expectedCheckpoint, fence.read, isOpen);
        let value: T;
        try {
          value = await guarded(work(session));
        } finally {
          // Whatever the handler still has running sends nothing more: not before the commit (it
          // would join a batch already decided), not after it (it would run outside any batch).
          close();
        }
        if (signal.aborted || tx.lost) {
          // Aborted as the work finished: do not commit a batch the worker has given up on.
          await abort.cancelled();
          throw signal.aborted ? signal.reason : new BatchClosedError(consumer);
        }
        return { kind: "committed", value };
      });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw error;
    } finally {
      close();
      signal.removeEventListener("abort", close);
      detach();
    }
  }

  /**
   * Redrives the skipped dead letter of `consumer` at `position`: the consumer's rows locked as a
   * batch would, `work` run on the event, the letter marked redriven, in one transaction.
   */
  async redriveDeadLetter<R>(
    consumer: string,
    position: number,
    work: (tx: Tx, event: PersistedEvent) => Promise<R>,
  ): Promise<R> {
    return await this.#storage.transaction({}, async (tx) => {
      const event = await deadLetterEvent(tx, consumer, position);
      const result = await withHandle(tx, consumer, (handle) => work(handle, event));
      await tx.markRedriven(consumer, position);
      return result;
    });
  }

  /** The event of a skipped dead letter, checked as a redrive checks it; nothing written. */
  async readDeadLetter(consumer: string, position: number): Promise<PersistedEvent> {
    return await this.#storage.transaction({}, (tx) => deadLetterEvent(tx, consumer, position));
  }

  /**
   * Moves the consumer's checkpoint to `toPosition` under its lock (see the Coordinator): a running
   * batch finishes first; its worker's next batch finds the checkpoint moved and follows it. A
   * consumer without a checkpoint row is refused.
   */
  async resetConsumer(
    consumer: string | readonly string[],
    toPosition: number,
    hook: ((tx: Tx) => Promise<void>) | null,
  ): Promise<number> {
    if (!Number.isSafeInteger(toPosition) || toPosition < 0) {
      throw new WorkerConfigError(`toPosition must be a non-negative integer, got ${toPosition}`);
    }
    // Locked in code-point order, like a rebalance: two resets never deadlock on each other.
    const names = (typeof consumer === "string" ? [consumer] : [...consumer])
      .sort(compareCodePoints);
    return await this.#storage.transaction({}, async (tx) => {
      const before = new Map<string, number>();
      for (const name of names) {
        const rows = await tx.lockConsumer(name);
        if (rows === null) {
          throw new WorkerConfigError(`no consumer named ${name} (it never registered)`);
        }
        before.set(name, rows.checkpoint);
      }
      if (hook !== null) await withHandle(tx, names[0], hook);
      for (const name of names) {
        await tx.deleteDeadLetters(name, toPosition);
        await tx.reportGap(name, null);
        await tx.saveCheckpoint(name, toPosition, before.get(name)!);
      }
      // Workers re-read their assignments and checkpoints on this; an idle owner notices now.
      await tx.notify("assignments");
      return Math.max(...before.values());
    });
  }

  /** Listens for appends; rejects when the storage has no channel for them. */
  async openListener(
    onNotify: () => void,
    onClose: (error: unknown) => void,
  ): Promise<ListenerHandle> {
    const handle = await this.#storage.listen("events", () => onNotify(), onClose);
    if (handle === null) {
      throw new WorkerSetupError("no notify channel configured for the notify dispatcher");
    }
    return handle;
  }

  /** Releases what the storage opened for itself. */
  close(): Promise<void> {
    return this.#storage.close();
  }
}

/**
 * In `tx`: locks the consumer as a batch would and its skipped, not yet redriven dead letter at
 * `position`, and reads its event; `DeadLetterNotFoundError` when either is missing.
 */
async function deadLetterEvent<Tx>(
  tx: StorageTransaction<Tx>,
  consumer: string,
  position: number,
): Promise<PersistedEvent> {
  await tx.lockConsumer(consumer);
  if (!await tx.lockDeadLetter(consumer, position)) {
    throw new DeadLetterNotFoundError(consumer, position);
  }
  const event = await tx.readEvent(position);
  if (event === null || event.globalPosition !== position) {
    throw new DeadLetterNotFoundError(consumer, position, "the event is not in the store");
  }
  return event;
}

/**
 * Runs a user hook (a redrive's handler, a reset hook) on a handle of `tx` that refuses
 * statements once the hook has returned or thrown: what it left running writes nothing more.
 */
async function withHandle<Tx, R>(
  tx: StorageTransaction<Tx>,
  consumer: string,
  hook: (handle: Tx) => Promise<R>,
): Promise<R> {
  let open = true;
  try {
    return await hook(tx.handle(consumer, () => open && !tx.lost));
  } finally {
    open = false;
  }
}

/** The session of one batch: each write checks the batch is still open. */
function batchSession<Tx>(
  tx: StorageTransaction<Tx>,
  consumer: string,
  expectedCheckpoint: number,
  read: WindowRead | null,
  isOpen: () => boolean,
): BatchSession<Tx> {
  const checked =
    <A extends unknown[]>(write: (...args: A) => Promise<void>) => (...args: A): Promise<void> => {
      if (!isOpen()) return Promise.reject(new BatchClosedError(consumer));
      return write(...args);
    };
  return {
    tx: tx.handle(consumer, isOpen),
    read,
    saveCheckpoint: checked((position: number) =>
      tx.saveCheckpoint(consumer, position, expectedCheckpoint)
    ),
    recordDeadLetter: checked((record: DeadLetterRecord) => tx.writeDeadLetter(record)),
    resolveDeadLetters: checked((name: string, positions: readonly number[]) =>
      tx.resolveDeadLetters(name, positions)
    ),
    recordGapSkip: checked((record: GapSkipRecord) => tx.writeGapSkip(record)),
  };
}

/**
 * The leader's rebalance, in a transaction fenced by leadership: reads the live workers and every
 * assignment, plans, locks the rows to change in name order (two leaders never deadlock on them;
 * each waits for the consumer's running batch), checks they still hold what was read, writes them
 * and announces it. Null when leadership could not be confirmed; rejects with the signal's reason
 * when it fires (the running statement is cancelled and the transaction rolls back).
 */
async function rebalance<Tx>(
  leadership: LeadershipStorage<Tx>,
  settings: LeaderElectionSettings,
  plan: (snapshot: AssignmentSnapshot) => readonly AssignmentChange[],
  signal: AbortSignal,
): Promise<readonly AssignmentChange[] | null> {
  if (signal.aborted) throw signal.reason;
  try {
    for (let attempt = 0; attempt < REBALANCE_ATTEMPTS; attempt++) {
      const result = await leadership.transaction(
        { lockTimeout: settings.rebalanceLockTimeoutMs },
        async (tx): Promise<readonly AssignmentChange[] | "retry"> => {
          const abort = cancelOnAbort(tx, signal, () => {});
          try {
            const guarded = <V>(p: Promise<V>): Promise<V> => Promise.race([p, abort.aborted]);
            const [workers, assignments] = await guarded(Promise.all([
              tx.liveWorkers(settings.heartbeatTimeoutMs),
              tx.assignments(),
            ]));
            const changes = plan({ workers, assignments });
            if (changes.length === 0) return [];
            const names = changes.map((c) => c.consumer).sort(compareCodePoints);
            const locked = await guarded(tx.lockAssignments(names));
            const moved = changes.some((c) =>
              !locked.has(c.consumer) || locked.get(c.consumer) !== c.from
            );
            if (moved) return "retry";
            await guarded(tx.writeAssignments(changes));
            await guarded(tx.notify("assignments"));
            return changes;
          } finally {
            abort.detach();
          }
        },
      );
      if (result !== "retry") return result;
    }
    return [];
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  }
}

/**
 * The `status` report from one consistent read of the storage: workers, the leader, and per
 * consumer its owner, checkpoint, lag (latest position − checkpoint), gap wait and dead letters.
 *
 * @example
 * ```ts ignore
 * const report = await readStatus(storage, 30_000);
 * ```
 */
export async function readStatus<Tx>(
  storage: WorkerStorage<Tx>,
  heartbeatTimeoutMs: number,
): Promise<WorkerStatus> {
  const rows = await storage.transaction(
    { snapshot: true },
    (tx) => tx.statusRows(heartbeatTimeoutMs),
  );
  const latest = rows.latestPosition;
  const byName = (a: { name: string }, b: { name: string }) => compareCodePoints(a.name, b.name);
  const consumers = [...rows.consumers].sort(byName).map((row): ConsumerStatus => ({
    name: row.name,
    workerId: row.workerId,
    checkpoint: row.checkpoint,
    lag: Math.max(0, latest - row.checkpoint),
    updatedAt: row.updatedAt,
    gap: row.gap === null ? null : {
      ...row.gap,
      waitingMs: Math.max(0, row.gap.waitingMs),
      blockers: row.gap.blockers.map((b) => ({ ...b, database: b.database ?? null })),
    },
    deadLetters: { skipped: row.skippedDeadLetters, blocking: row.blockingDeadLetters },
    gapSkips: row.gapSkips,
  }));
  const workers = [...rows.workers]
    .sort((a, b) => compareCodePoints(a.workerId, b.workerId))
    .map((w) => ({ ...w, consumers: [...w.consumers] }));
  return { latestPosition: latest, workers, leader: rows.leader, consumers };
}
