/**
 * Dispatchers: what wakes idle consumers early. Both watch the latest position and signal the
 * shared {@link Wakeup} when it advances; consumers treat a wakeup as a hint only (their own
 * polling keeps them correct without it).
 *
 * - poll: checks the latest position every `dispatcherInterval`;
 * - notify: checks it on every notification from a dedicated LISTEN connection, plus every
 *   `notifyReconcileInterval` anyway, and reconnects the listener with back-off (1 s doubling to
 *   30 s) when it is lost.
 *
 * @module
 */
import type { Clock } from "../../internal/clock.ts";
import type { Logger } from "../../store/logger.ts";
import { errorText } from "../errors.ts";
import type { Coordinator, ListenerHandle } from "./coordination.ts";
import { failureBackoff } from "./backoff.ts";
import { safely } from "./consumer_loop.ts";
import { pause, type Wakeup } from "./wakeup.ts";

/** Inputs of the dispatchers. */
export interface DispatcherContext {
  readonly coordinator: Coordinator<unknown>;
  readonly clock: Clock;
  readonly wakeup: Wakeup;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

const LISTENER_BACKOFF_MIN = 1_000;
const LISTENER_BACKOFF_MAX = 30_000;

/** Watches the latest position and signals when it grows; one check at a time. */
class PositionWatch {
  #last: number;
  #running: Promise<void> | null = null;
  #again = false;
  readonly context: DispatcherContext;

  constructor(context: DispatcherContext, initial: number) {
    this.context = context;
    this.#last = initial;
  }

  /** Checks now (coalescing calls that arrive while a check runs into one more check). */
  check(): Promise<void> {
    if (this.#running !== null) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          const position = await this.context.coordinator.latestPosition();
          if (position > this.#last) {
            this.#last = position;
            this.context.wakeup.signal();
          }
        } catch (error) {
          if (!this.context.signal.aborted) {
            this.context.logger.error?.("dispatcher could not read the latest position", {
              error: errorText(error),
            });
          }
        }
      } while (this.#again && !this.context.signal.aborted);
      this.#running = null;
    })();
    return this.#running;
  }
}

/**
 * The position to watch from. A failed read (a connection lost while starting) is retried with
 * back-off until it succeeds or the worker stops (-1: stopped); the consumers poll on their own
 * meanwhile, so nothing waits for it.
 */
async function initialPosition(context: DispatcherContext, kind: string): Promise<number> {
  for (let attempt = 1;; attempt++) {
    try {
      return await context.coordinator.latestPosition();
    } catch (error) {
      if (context.signal.aborted) return -1;
      const delay = failureBackoff(attempt, 200, 30_000);
      safely(() =>
        context.logger.error?.(`${kind} dispatcher could not read the initial position; retrying`, {
          retryInMs: delay,
          error: errorText(error),
        })
      );
      if (!await pause(context.clock, delay, context.signal)) return -1;
    }
  }
}

/**
 * Runs the poll dispatcher until the signal aborts; never rejects (failed reads are retried).
 */
export async function runPollDispatcher(
  context: DispatcherContext,
  interval: number,
): Promise<void> {
  const watch = new PositionWatch(context, await initialPosition(context, "poll"));
  while (await pause(context.clock, interval, context.signal)) await watch.check();
}

/**
 * Runs the notify dispatcher until the signal aborts; never rejects (failed reads are retried);
 * listener failures are logged and retried with back-off while the reconciliation poll goes on.
 */
export async function runNotifyDispatcher(
  context: DispatcherContext,
  reconcileInterval: number,
): Promise<void> {
  const watch = new PositionWatch(context, await initialPosition(context, "notify"));
  const reconcile = (async () => {
    while (await pause(context.clock, reconcileInterval, context.signal)) await watch.check();
  })();
  await Promise.all([reconcile, listen(context, watch)]);
}

async function listen(context: DispatcherContext, watch: PositionWatch): Promise<void> {
  await keepListening(
    { ...context, what: "notify dispatcher" },
    (onClose) => context.coordinator.openListener(() => void watch.check(), onClose),
    // Anything appended while not listening is picked up now rather than at the next reconcile.
    () => void watch.check(),
  );
}

/** What {@link keepListening} needs. */
export interface ListeningContext {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Names the listener in log records. */
  readonly what: string;
}

/**
 * Keeps a listener open until the signal aborts: reopens it at once when its connection is lost,
 * and backs off from 1 s to 30 s while opening fails. `onConnected` runs after every (re)open, to
 * catch up on what happened while not listening. Returns at once when `open` resolves null (not
 * configured).
 */
export async function keepListening(
  context: ListeningContext,
  open: (onClose: (error: unknown) => void) => Promise<ListenerHandle | null>,
  onConnected: () => void,
): Promise<void> {
  const { signal, logger, clock, what } = context;
  let backoff = LISTENER_BACKOFF_MIN;
  const aborted = new Promise<null>((resolve) =>
    signal.addEventListener("abort", () => resolve(null), { once: true })
  );
  while (!signal.aborted) {
    let handle: ListenerHandle | null;
    let lost!: (error: unknown) => void;
    const closed = new Promise<unknown>((resolve) => (lost = resolve));
    const opening = open((error) => lost(error));
    try {
      // Opening may wait for a connection indefinitely (e.g. a one-session embedded server).
      handle = await Promise.race([opening, aborted]);
      if (handle === null && signal.aborted) {
        void opening.then((late) => late?.close(), () => {});
        return;
      }
    } catch (error) {
      if (signal.aborted) return;
      logger.error?.(`${what} could not listen; retrying`, {
        error: errorText(error),
        retryInMs: backoff,
      });
      if (!await pause(clock, backoff, signal)) return;
      backoff = Math.min(backoff * 2, LISTENER_BACKOFF_MAX);
      continue;
    }
    if (handle === null) return;
    backoff = LISTENER_BACKOFF_MIN;
    logger.debug?.(`${what} listening`, {});
    onConnected();
    const reason = await Promise.race([closed, aborted]);
    await handle.close().catch(() => {});
    if (signal.aborted) return;
    logger.error?.(`${what} connection lost; reconnecting`, { error: errorText(reason) });
  }
}
