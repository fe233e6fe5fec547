/**
 * The worker runtime: lifecycle (`start`/`stop`), registration and heartbeat, the dispatcher, and
 * one {@link ConsumerLoop} per consumer. Runtime-agnostic: the PostgreSQL `Worker` and the
 * in-memory worker of `@eventsalsa/eventsalsa/testing` are this class on different adapters.
 *
 * @module
 */
import { errorText, WorkerAlreadyStartedError } from "../errors.ts";
import {
  checkConsumers,
  type ResolvedRuntimeOptions,
  resolveRuntimeOptions,
  type WorkerRuntimeOptions,
} from "../options.ts";
import type { Consumer } from "../types.ts";
import type { Coordinator } from "./coordination.ts";
import { ConsumerLoop, type ConsumerLoopExit, safely } from "./consumer_loop.ts";
import { type DispatcherContext, runNotifyDispatcher, runPollDispatcher } from "./dispatcher.ts";
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
      await coordinator.prepare();
      if (signal.aborted) return;
      await coordinator.registerWorker(this.id, names, o.heartbeatTimeout);
      registered = true;
      await coordinator.claimConsumers(this.id, names);
      safely(() => o.logger.info?.("worker started", { workerId: this.id, consumers: names }));
      const wakeup = new Wakeup();
      const context: DispatcherContext = {
        coordinator: coordinator as Coordinator<unknown>,
        clock: o.clock,
        wakeup,
        logger: o.logger,
        signal,
      };
      tasks.push(
        (o.dispatcher === "notify"
          ? runNotifyDispatcher(context, o.notifyReconcileInterval)
          : runPollDispatcher(context, o.dispatcherInterval)).catch(fail),
        this.#heartbeat(signal),
      );
      for (const consumer of this.#consumers) {
        const loop = new ConsumerLoop<Tx>({ consumer, coordinator, options: o, wakeup, signal });
        tasks.push(loop.run().then((exit) => this.#loopEnded(consumer.name, exit, fail), fail));
      }
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener("abort", () => resolve(), { once: true });
      });
    } catch (error) {
      fail(error);
    } finally {
      control.abort();
      await Promise.allSettled(tasks);
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

  #loopEnded(name: string, exit: ConsumerLoopExit, fail: (error: unknown) => void): void {
    const o = this.#options;
    safely(() => o.observer.consumerStopped?.({ consumer: name, reason: exit.reason }));
    if (exit.reason === "failed") fail(exit.error);
    else if (exit.reason === "ownershipLost") {
      // Single-process mode: someone else took the consumer. The fence stopped this worker from
      // committing; issue 4's assignment sync restarts the loop if the consumer comes back.
      safely(() =>
        o.logger.error?.("consumer ownership lost; stopping this consumer", {
          consumer: name,
          workerId: this.id,
          owner: exit.owner,
        })
      );
    }
  }

  async #heartbeat(signal: AbortSignal): Promise<void> {
    const o = this.#options;
    while (await pause(o.clock, o.heartbeatInterval, signal)) {
      try {
        if (!await this.#coordinator.heartbeat(this.id)) {
          safely(() =>
            o.logger.error?.("worker registration missing during heartbeat", { workerId: this.id })
          );
        }
      } catch (error) {
        if (!signal.aborted) {
          safely(() =>
            o.logger.error?.("heartbeat failed", { workerId: this.id, error: errorText(error) })
          );
        }
      }
    }
  }
}
