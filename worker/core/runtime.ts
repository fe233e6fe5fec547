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
import { failureBackoff } from "./backoff.ts";
import {
  checkConsumers,
  type ResolvedRuntimeOptions,
  resolveRuntimeOptions,
  type WorkerRuntimeOptions,
} from "../options.ts";
import type { Consumer } from "../types.ts";
import type { Coordinator } from "./coordination.ts";
import { AssignmentSync } from "./assignment_sync.ts";
import { type ConsumerLoopExit, safely } from "./consumer_loop.ts";
import {
  type DispatcherContext,
  keepListening,
  runNotifyDispatcher,
  runPollDispatcher,
} from "./dispatcher.ts";
import { waitForCheckpoints, type WaitForPositionOptions } from "./wait.ts";
import { LeaderLoop } from "./leadership.ts";
import { pause, Wakeup } from "./wakeup.ts";

/**
 * Runs consumers against any {@link Coordinator}. Construct it with validated consumers and
 * options (a bad one throws `WorkerConfigError` here); `start` runs until `stop`, the signal, or a
 * fatal error.
 *
 * @example
 * ```ts
 * import { WorkerRuntime, type Coordinator } from "@eventsalsa/eventsalsa/worker";
 * declare const coordinator: Coordinator<unknown>;
 * const runtime = new WorkerRuntime(coordinator, [{ name: "audit", handle() {} }], { pollInterval: 500 });
 * const running = runtime.start();
 * runtime.stop();
 * await running;
 * ```
 */
export class WorkerRuntime<Tx> {
  /** This worker's id. */
  readonly id: string;
  readonly #coordinator: Coordinator<Tx>;
  readonly #consumers: readonly Consumer<Tx>[];
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
    consumers: readonly Consumer<Tx>[],
    options: WorkerRuntimeOptions = {},
    extraOptionKeys: readonly string[] = [],
  ) {
    this.#consumers = checkConsumers<Tx>(consumers);
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
   */
  waitForPosition(position: number, options: WaitForPositionOptions = {}): Promise<void> {
    const names = this.#consumers.map((c) => c.name);
    const wanted = options.consumers ?? names;
    const foreign = wanted.filter((name) => !names.includes(name));
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
          consumers.map(async (name) =>
            [name, await this.#coordinator.readCheckpoint(name)] as const
          ),
        ),
      );
    return waitForCheckpoints(read, this.#options.clock, position, wanted, options);
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
    const names = this.#consumers.map((c) => c.name);
    let fatal: unknown = null;
    const fail = (error: unknown) => {
      if (fatal === null) fatal = error;
      control.abort(error);
    };
    let registered = false;
    const tasks: Promise<unknown>[] = [];
    try {
      if (!await this.#startUp(names, signal)) return;
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
        consumers: this.#consumers,
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
      await Promise.allSettled(tasks);
      this.#leader = null;
      this.#sync = null;
      if (registered) {
        await coordinator.unregisterWorker(this.id).catch((error) =>
          safely(() =>
            o.logger.error?.("could not remove the worker registration", {
              error: errorText(error),
            })
          )
        );
      }
      await coordinator.close().catch(() => {});
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
   * starting) with back-off, up to `maxConsecutiveFailures` attempts. A missing schema or a worker
   * id in use is final at once. False when the signal aborted first.
   */
  async #startUp(names: readonly string[], signal: AbortSignal): Promise<boolean> {
    const o = this.#options;
    for (let attempt = 1;; attempt++) {
      try {
        await this.#coordinator.prepare();
        if (signal.aborted) return false;
        await this.#cleanup();
        await this.#coordinator.registerWorker(this.id, names, o.heartbeatTimeout);
        return true;
      } catch (error) {
        const final = error instanceof WorkerSetupError || error instanceof WorkerIdInUseError ||
          error instanceof TypeError || attempt >= o.maxConsecutiveFailures;
        if (final || signal.aborted) throw error;
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
