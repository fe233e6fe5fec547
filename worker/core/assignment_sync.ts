/**
 * Assignment sync: every worker reads the consumers assigned to it — at start, on every change
 * notification, and every `assignmentPollInterval` anyway — and starts a {@link ConsumerLoop}
 * for each one it runs that is not running yet, and releases the loops of consumers assigned
 * elsewhere (they stop between batches). At most one loop per consumer runs in a worker at any
 * time: a released loop must end before its consumer can start again.
 *
 * @module
 */
import { errorText } from "../errors.ts";
import type { ResolvedRuntimeOptions } from "../options.ts";
import type { AnyConsumer } from "../types.ts";
import type { Coordinator } from "./coordination.ts";
import { ConsumerLoop, type ConsumerLoopExit, safely } from "./consumer_loop.ts";
import { SharedWindows } from "./shared_windows.ts";
import { workerTelemetry } from "./telemetry.ts";
import type { Wakeup } from "./wakeup.ts";

/** Inputs of an {@link AssignmentSync}. */
export interface AssignmentSyncContext<Tx> {
  readonly coordinator: Coordinator<Tx>;
  readonly consumers: readonly AnyConsumer<Tx>[];
  readonly options: ResolvedRuntimeOptions;
  /** The dispatcher's wakeup, shared by every consumer loop. */
  readonly events: Wakeup;
  /** Signalled on change notifications (and by the local leader): sync now. */
  readonly wakeup: Wakeup;
  /** Shutdown. */
  readonly signal: AbortSignal;
  /** Called when a consumer loop ends (the runtime turns `failed` into a fatal error). */
  readonly onLoopExit: (consumer: string, exit: ConsumerLoopExit) => void;
  /** Called when a consumer loop throws (a bug): the runtime stops with it. */
  readonly onLoopError: (error: unknown) => void;
}

/** Full windows kept for loops that read them later, per consumer the worker runs (at most 64). */
const WINDOWS_PER_CONSUMER = 2;
const MAX_WINDOWS = 64;
/** Events the kept windows hold at most (a few tens of megabytes whatever `batchSize` is). */
const MAX_KEPT_EVENTS = 50_000;

interface Running<Tx> {
  readonly loop: ConsumerLoop<Tx>;
  readonly release: AbortController;
  readonly done: Promise<void>;
}

/**
 * Keeps the set of running consumer loops equal to this worker's assignments.
 */
export class AssignmentSync<Tx> {
  readonly #c: AssignmentSyncContext<Tx>;
  readonly #byName: Map<string, AnyConsumer<Tx>>;
  readonly #running = new Map<string, Running<Tx>>();
  /** The loops' shared window reads, when there are several consumers to share them. */
  readonly #windows: SharedWindows | undefined;

  /** Creates the sync; nothing runs until {@link AssignmentSync.run}. */
  constructor(context: AssignmentSyncContext<Tx>) {
    this.#c = context;
    this.#byName = new Map(context.consumers.map((c) => [c.name, c]));
    const count = context.consumers.length;
    this.#windows = count > 1
      ? new SharedWindows(Math.min(MAX_WINDOWS, WINDOWS_PER_CONSUMER * count), MAX_KEPT_EVENTS)
      : undefined;
  }

  /** The consumers with a running loop in this worker (releasing ones included). */
  get running(): string[] {
    return [...this.#running.keys()];
  }

  /** The checkpoints of the running loops that have read theirs. */
  get checkpoints(): Map<string, number> {
    const checkpoints = new Map<string, number>();
    for (const [name, running] of this.#running) {
      const checkpoint = running.loop.checkpoint;
      if (checkpoint !== null) checkpoints.set(name, checkpoint);
    }
    return checkpoints;
  }

  /** Syncs until shutdown, then waits for every loop to end. */
  async run(): Promise<void> {
    const { coordinator, options: o, wakeup, signal } = this.#c;
    // The consumer lag gauge reports the loops of this worker while it runs.
    const stopLag = workerTelemetry(o.telemetry)?.watchLag(
      () => coordinator.latestPosition(),
      () => this.checkpoints,
    );
    try {
      while (!signal.aborted) {
        const seen = wakeup.generation;
        await this.sync();
        const woke = await wakeup.wait(seen, o.assignmentPollInterval, o.clock, signal);
        if (woke === "aborted") break;
      }
    } finally {
      stopLag?.();
      await Promise.allSettled([...this.#running.values()].map((r) => r.done));
    }
  }

  /** Reads the assignments once and starts or releases loops accordingly. */
  async sync(): Promise<void> {
    const { coordinator, options: o, signal } = this.#c;
    let assigned: Map<string, number>;
    try {
      assigned = await coordinator.assignedConsumers(o.workerId);
    } catch (error) {
      if (!signal.aborted) {
        safely(() =>
          o.logger.error?.("could not read this worker's assignments", {
            workerId: o.workerId,
            error: errorText(error),
          })
        );
      }
      return;
    }
    if (signal.aborted) return;
    const mine = new Set([...assigned.keys()].filter((name) => this.#byName.has(name)));
    let stale = false;
    for (const [name, running] of this.#running) {
      if (!mine.has(name) && !running.release.signal.aborted) running.release.abort();
      // A checkpoint moved by someone else (a reset): the loop reads it again before its next
      // batch instead of probing after what it remembers. (A batch committing meanwhile looks the
      // same: that costs the loop a re-read of its checkpoint and dead letters and its gap
      // tracker's memory, never a wrong position.)
      const stored = assigned.get(name);
      const believed = running.loop.checkpoint;
      if (stored !== undefined && believed !== null && stored !== believed) {
        running.loop.markStale();
        stale = true;
      }
    }
    if (stale) this.#c.events.signal();
    for (const name of mine) {
      if (!this.#running.has(name)) this.#start(this.#byName.get(name)!);
    }
  }

  #start(consumer: AnyConsumer<Tx>): void {
    const { coordinator, options: o, events, signal, wakeup, onLoopExit, onLoopError } = this.#c;
    const release = new AbortController();
    const loop = new ConsumerLoop<Tx>({
      consumer,
      coordinator,
      options: o,
      wakeup: events,
      signal,
      release: release.signal,
      windows: this.#windows,
    });
    safely(() =>
      o.logger.info?.("starting consumer", { consumer: consumer.name, workerId: o.workerId })
    );
    safely(() => o.observer.consumerStarted?.({ consumer: consumer.name, workerId: o.workerId }));
    const done = loop.run().then((exit) => {
      this.#running.delete(consumer.name);
      onLoopExit(consumer.name, exit);
      // A consumer released while it was assigned back starts again on the next sync.
      if (exit.reason === "released") wakeup.signal();
    }, (error) => {
      // The loop handles its own failures; anything escaping it is a bug worth stopping for.
      this.#running.delete(consumer.name);
      onLoopError(error);
    });
    this.#running.set(consumer.name, { loop, release, done });
  }
}
