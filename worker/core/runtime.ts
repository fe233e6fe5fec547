/**
 * The worker runtime: lifecycle (`start`/`stop`), start-up cleanup, registration and heartbeat,
 * the dispatcher, the coordination listener, the leader loop, and the assignment sync that runs
 * one consumer loop per consumer assigned to this worker. Runtime-agnostic: the PostgreSQL `Worker` and the
 * in-memory worker of `@eventsalsa/eventsalsa/testing` are this class on different adapters.
 *
 * @module
 */
import {
  errorText,
  WorkerAlreadyStartedError,
  WorkerConfigError,
  WorkerIdInUseError,
  WorkerRegistrationLostError,
  WorkerSetupError,
} from "../errors.ts";
import type { Clock } from "../../internal/clock.ts";
import { failureBackoff } from "./backoff.ts";
import {
  checkConsumers,
  type ResolvedRuntimeOptions,
  resolveRuntimeOptions,
  type WorkerRuntimeOptions,
} from "../options.ts";
import type { AnyConsumer } from "../types.ts";
import type { Coordinator } from "./coordination.ts";
import { AssignmentSync } from "./assignment_sync.ts";
import { type ConsumerLoopExit, safely } from "./consumer_loop.ts";
import { checkPartitionShapes, expandPartitions, runningNames } from "./partitions.ts";
import {
  type DispatcherContext,
  keepListening,
  runNotifyDispatcher,
  runPollDispatcher,
} from "./dispatcher.ts";
import { waitForCheckpoints, type WaitForPositionOptions } from "./wait.ts";
import { resetOf } from "./reset.ts";
import { LeaderLoop } from "./leadership.ts";
import { pause, Wakeup } from "./wakeup.ts";

/**
 * Runs consumers against any {@link Coordinator}. Construct it with validated consumers and
 * options (a bad one throws `WorkerConfigError` here); `start` runs until `stop`, the signal, or a
 * fatal error.
 */
export class WorkerRuntime<Tx> {
  /** This worker's id. */
  readonly id: string;
  readonly #coordinator: Coordinator<Tx>;
  /** The consumers as declared. */
  readonly #consumers: readonly AnyConsumer<Tx>[];
  /**
   * The consumers as they run, register and are assigned: the declared ones, each partitioned
   * consumer replaced by its partitions (see `./partitions.ts`).
   */
  readonly #runnable: readonly AnyConsumer<Tx>[];
  readonly #options: ResolvedRuntimeOptions;
  #control: AbortController | null = null;
  #running: Promise<void> | null = null;
  #leader: LeaderLoop | null = null;
  #sync: AssignmentSync<Tx> | null = null;

  /**
   * Validates consumers and options; `extraOptionKeys` are options an adapter consumed itself
   * (table names, notify connection), so they are not reported as unknown.
   */
  constructor(
    coordinator: Coordinator<Tx>,
    consumers: readonly AnyConsumer<Tx>[],
    options: WorkerRuntimeOptions = {},
    extraOptionKeys: readonly string[] = [],
  ) {
    this.#consumers = checkConsumers<Tx>(consumers);
    this.#runnable = expandPartitions(this.#consumers);
    this.#options = resolveRuntimeOptions(options, extraOptionKeys);
    this.#coordinator = coordinator;
    this.id = this.#options.workerId;
  }

  /** The resolved options (defaults applied). */
  get options(): ResolvedRuntimeOptions {
    return this.#options;
  }

  /** Whether `start` is running. */
  get running(): boolean {
    return this.#running !== null;
  }

  /** Whether this worker currently believes it is the leader. */
  get isLeader(): boolean {
    return this.#leader?.isLeader ?? false;
  }

  /** The consumers this worker is running now (assigned to it, loops started). */
  get runningConsumers(): string[] {
    return this.#sync?.running ?? [];
  }

  /**
   * Runs the worker. Resolves after `stop()` or when `signal` aborts (in-flight batches are
   * cancelled and rolled back, the registration removed); rejects with the first fatal error
   * (`ConsecutiveFailuresError`, `WorkerSetupError`, ...). A stopped worker can start again.
   */
  start(signal?: AbortSignal): Promise<void> {
    if (this.#running !== null) return Promise.reject(new WorkerAlreadyStartedError(this.id));
    const control = new AbortController();
    this.#control = control;
    const onAbort = () => control.abort(signal?.reason);
    if (signal?.aborted) control.abort(signal.reason);
    else signal?.addEventListener("abort", onAbort, { once: true });
    this.#running = this.#run(control).finally(() => {
      signal?.removeEventListener("abort", onAbort);
      this.#running = null;
      this.#control = null;
    });
    return this.#running;
  }

  /**
   * Resolves once each of `options.consumers` (default: all of this worker's) has a checkpoint at
   * or past `position` (see `waitForCheckpoints`); works whether or not this worker runs them now.
   * A partitioned consumer has passed a position when all its partitions have; a partition can be
   * named on its own too.
   */
  waitForPosition(position: number, options: WaitForPositionOptions = {}): Promise<void> {
    const declared = this.#consumers.map((c) => c.name);
    const parts = new Map(this.#consumers.map((c) => [c.name, runningNames(c)]));
    const names = new Set([...declared, ...this.#runnable.map((c) => c.name)]);
    const wanted = options.consumers ?? declared;
    const foreign = wanted.filter((name) => !names.has(name));
    if (foreign.length > 0) {
      return Promise.reject(
        new WorkerConfigError(
          `this worker has no consumer named ${foreign.join(", ")}; use waitForPosition(sql, …) ` +
            `for consumers of other workers`,
        ),
      );
    }
    const read = async (consumers: readonly string[]) =>
      new Map(
        await Promise.all(
          consumers.map(async (name) => {
            const checkpoints = await Promise.all(
              (parts.get(name) ?? [name]).map((part) => this.#coordinator.readCheckpoint(part)),
            );
            return [name, Math.min(...checkpoints)] as const;
          }),
        ),
      );
    return waitForCheckpoints(read, this.#options.clock, position, wanted, options);
  }

  /**
   * Resets one of this worker's consumers to `toPosition` (default 0: a rebuild from the start),
   * running its `reset` hook in the same transaction (see `Coordinator.resetConsumer`). Works
   * whether or not this worker runs the consumer now, and while the fleet runs. Resolves the
   * checkpoint it had before.
   */
  resetConsumer(name: string, options: { toPosition?: number } = {}): Promise<number> {
    const consumer = this.#consumers.find((c) => c.name === name);
    if (consumer === undefined) {
      return Promise.reject(new WorkerConfigError(`this worker has no consumer named ${name}`));
    }
    const toPosition = options.toPosition ?? 0;
    const { names, hook } = resetOf(consumer, toPosition);
    return this.#coordinator.resetConsumer(names, toPosition, hook);
  }

  /** Stops the worker; resolves when it has stopped (never rejects). No-op when not running. */
  stop(): Promise<void> {
    const running = this.#running;
    this.#control?.abort(new Error("worker stopped"));
    return running === null ? Promise.resolve() : running.catch(() => {});
  }

  async #run(control: AbortController): Promise<void> {
    const o = this.#options;
    const coordinator = this.#coordinator;
    const signal = control.signal;
    const names = this.#runnable.map((c) => c.name);
    let fatal: unknown = null;
    const fail = (error: unknown) => {
      if (fatal === null) fatal = error;
      control.abort(error);
    };
    let registered = false;
    const tasks: Promise<unknown>[] = [];
    try {
      if (!await this.#startUp(signal)) return;
      registered = true;
      safely(() => o.logger.info?.("worker started", { workerId: this.id, consumers: names }));
      // One session (the embedded PGlite): no LISTEN connection, so the poll dispatcher.
      const singleSession = coordinator.singleSession === true;
      if (singleSession) {
        safely(() =>
          o.logger.info?.("single-session database (embedded PGlite): polling, lease election", {
            workerId: this.id,
          })
        );
      }
      const events = new Wakeup();
      const leaderWakeup = new Wakeup();
      const syncWakeup = new Wakeup();
      const context: DispatcherContext = {
        coordinator: coordinator as Coordinator<unknown>,
        clock: o.clock,
        wakeup: events,
        logger: o.logger,
        signal,
      };
      tasks.push(
        (o.dispatcher === "notify" && !singleSession
          ? runNotifyDispatcher(context, o.notifyReconcileInterval)
          : runPollDispatcher(context, o.dispatcherInterval)).catch(fail),
        this.#heartbeat(signal, fail),
        keepListening(
          { clock: o.clock, logger: o.logger, signal, what: "coordination listener" },
          (onClose) =>
            coordinator.openChangeListener((change) => {
              syncWakeup.signal();
              if (change === "membership") leaderWakeup.signal();
            }, onClose),
          () => {
            syncWakeup.signal();
            leaderWakeup.signal();
          },
        ).catch(fail),
      );
      const leader = new LeaderLoop({
        election: coordinator.leaderElection(this.id, {
          strategy: o.leaderStrategy,
          leaseMs: o.heartbeatTimeout,
          heartbeatTimeoutMs: o.heartbeatTimeout,
          rebalanceLockTimeoutMs: Math.min(2_147_483_647, 2 * o.batchTimeout),
        }),
        options: o,
        wakeup: leaderWakeup,
        signal,
        onRebalanced: () => syncWakeup.signal(),
      });
      const sync = new AssignmentSync<Tx>({
        coordinator,
        consumers: this.#runnable,
        options: o,
        events,
        wakeup: syncWakeup,
        signal,
        onLoopExit: (name, exit) => this.#loopEnded(name, exit, fail),
        onLoopError: fail,
      });
      this.#leader = leader;
      this.#sync = sync;
      tasks.push(leader.run().catch(fail), sync.run().catch(fail));
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener("abort", () => resolve(), { once: true });
      });
    } catch (error) {
      fail(error);
    } finally {
      control.abort();
      // Every step of a stop is bounded: a batch the server cannot cancel, or a connection that
      // hangs, must not keep a stopped worker alive. Whatever is still running is left to roll
      // back (its batch is closed: it can commit nothing), and a registration left behind expires
      // with its heartbeat.
      await within(
        o.clock,
        o.batchTimeout + o.heartbeatTimeout,
        Promise.allSettled(tasks),
        () =>
          safely(() =>
            o.logger.error?.("consumer batches still running at stop; leaving them to roll back", {
              workerId: this.id,
            })
          ),
      );
      this.#leader = null;
      this.#sync = null;
      if (registered) {
        await within(
          o.clock,
          o.heartbeatTimeout,
          coordinator.unregisterWorker(this.id).catch((error) =>
            safely(() =>
              o.logger.error?.("could not remove the worker registration", {
                error: errorText(error),
              })
            )
          ),
          () =>
            safely(() =>
              o.logger.error?.("removing the worker registration took too long; it will expire", {
                workerId: this.id,
              })
            ),
        );
      }
      await within(o.clock, o.heartbeatTimeout, coordinator.close().catch(() => {}), () => {});
      safely(() =>
        o.logger.info?.("worker stopped", {
          workerId: this.id,
          error: fatal === null ? null : errorText(fatal),
        })
      );
    }
    if (fatal !== null) throw fatal;
  }

  /**
   * Checks the schema and registers, retrying what may be transient (a connection lost while
   * starting) with back-off, up to `maxConsecutiveFailures` attempts. A missing schema or a changed
   * partition count is final at once; a worker id in use too, unless an earlier attempt of this
   * start may have registered it (that is waited out once). False when the signal aborted first.
   */
  async #startUp(signal: AbortSignal): Promise<boolean> {
    const o = this.#options;
    // When a registration attempt failed after it was sent, it may have committed with only the
    // answer lost: on the retry the row looks like a live worker with this id. Set to the time of
    // that failure; a refusal within a heartbeat timeout of it is waited out once (the row then
    // ages and the registration takes it over), not taken as another process holding the id.
    let inDoubtSince: number | null = null;
    let registering = false;
    for (let attempt = 1;; attempt++) {
      try {
        registering = false;
        await this.#coordinator.prepare();
        if (signal.aborted) return false;
        await this.#cleanup();
        // A consumer whose partition count changed would start over beside its old rows.
        checkPartitionShapes(this.#consumers, await this.#coordinator.consumerNames());
        registering = true;
        await this.#coordinator.registerWorker(
          this.id,
          this.#runnable.map((c) => ({
            name: c.name,
            startFrom: c.startFrom === undefined || c.startFrom === "beginning" ? 0 : c.startFrom,
          })),
          o.heartbeatTimeout,
        );
        return true;
      } catch (error) {
        if (error instanceof WorkerIdInUseError && inDoubtSince !== null && !signal.aborted) {
          // Past the heartbeat timeout (with a margin for clock skew) the row, if ours, is stale.
          const wait = inDoubtSince + o.heartbeatTimeout * 1.1 + 1_000 - o.clock.now();
          inDoubtSince = null;
          safely(() =>
            o.logger.info?.("worker id looks taken after an uncertain registration; waiting", {
              workerId: this.id,
              waitMs: Math.max(0, Math.round(wait)),
            })
          );
          if (!await pause(o.clock, Math.max(0, wait), signal)) return false;
          continue;
        }
        const final = error instanceof WorkerSetupError || error instanceof WorkerIdInUseError ||
          error instanceof TypeError || attempt >= o.maxConsecutiveFailures;
        if (final || signal.aborted) throw error;
        if (registering) inDoubtSince = o.clock.now();
        const delay = failureBackoff(attempt, o.pollInterval, o.maxPollInterval);
        safely(() =>
          o.logger.error?.("worker start-up failed; retrying", {
            workerId: this.id,
            attempt,
            retryInMs: delay,
            error: errorText(error),
          })
        );
        if (!await pause(o.clock, delay, signal)) return false;
      }
    }
  }

  /** Start-up cleanup: registrations silent for twice the heartbeat timeout are crashed workers. */
  async #cleanup(): Promise<void> {
    const o = this.#options;
    try {
      const removed = await this.#coordinator.cleanupStaleWorkers(2 * o.heartbeatTimeout);
      if (removed > 0) {
        safely(() =>
          o.logger.info?.("removed stale worker registrations", { workerId: this.id, removed })
        );
      }
    } catch (error) {
      safely(() =>
        o.logger.error?.("could not clean up stale worker registrations", {
          error: errorText(error),
        })
      );
    }
  }

  #loopEnded(name: string, exit: ConsumerLoopExit, fail: (error: unknown) => void): void {
    const o = this.#options;
    safely(() => o.observer.consumerStopped?.({ consumer: name, reason: exit.reason }));
    if (exit.reason === "failed") fail(exit.error);
    else if (exit.reason === "ownershipLost") {
      // The fence refused a batch: the consumer belongs to another worker now. The assignment
      // sync starts the loop again if the consumer comes back.
      safely(() =>
        o.logger.info?.("consumer ownership lost; stopping this consumer", {
          consumer: name,
          workerId: this.id,
          owner: exit.owner,
        })
      );
    } else if (exit.reason === "released") {
      safely(() =>
        o.logger.info?.("consumer assigned elsewhere; stopped", {
          consumer: name,
          workerId: this.id,
        })
      );
    }
  }

  /** Heartbeats; a registration missing at two heartbeats in a row stops the worker. */
  async #heartbeat(signal: AbortSignal, fail: (error: unknown) => void): Promise<void> {
    const o = this.#options;
    let misses = 0;
    while (await pause(o.clock, o.heartbeatInterval, signal)) {
      try {
        if (await this.#coordinator.heartbeat(this.id)) {
          misses = 0;
          continue;
        }
        misses++;
        if (signal.aborted) return;
        if (misses >= 2) {
          fail(new WorkerRegistrationLostError(this.id));
          return;
        }
        safely(() =>
          o.logger.error?.("worker registration missing during heartbeat; stopping if it stays", {
            workerId: this.id,
          })
        );
      } catch (error) {
        misses = 0;
        if (!signal.aborted) {
          safely(() =>
            o.logger.error?.("heartbeat failed", { workerId: this.id, error: errorText(error) })
          );
        }
      }
    }
  }
}

/** Waits for `work`, or `ms` on `clock` (then calls `late` and returns); never rejects. */
async function within(
  clock: Clock,
  ms: number,
  work: Promise<unknown>,
  late: () => void,
): Promise<void> {
  let timer: unknown = null;
  const timedOut = new Promise<"late">((resolve) => {
    timer = clock.setTimeout(() => resolve("late"), ms);
  });
  const outcome = await Promise.race([work.then(() => "done", () => "done"), timedOut]);
  clock.clearTimeout(timer);
  if (outcome === "late") late();
}
