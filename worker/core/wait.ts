/**
 * Read-your-writes: wait until consumers' checkpoints have reached a position. The checkpoint is
 * the right thing to watch: a consumer's checkpoint at or past `position` means every event up to
 * it was handled (or, for events it does not subscribe to, passed), by the gap rule.
 *
 * @module
 */
import type { Clock } from "../../internal/clock.ts";
import { WaitTimeoutError, WorkerConfigError } from "../errors.ts";
import { nextPollInterval } from "./backoff.ts";
import { pause } from "./wakeup.ts";

/**
 * Options of `waitForPosition`.
 *
 * @example
 * ```ts
 * import type { WaitForPositionOptions } from "@eventsalsa/eventsalsa/worker";
 * const options: WaitForPositionOptions = { consumers: ["orders"], timeout: 5_000 };
 * ```
 */
export interface WaitForPositionOptions {
  /** The consumers to wait for (by name). Required for the standalone function. */
  consumers?: readonly string[];
  /** Give up after this many milliseconds with a `WaitTimeoutError`; default 30000. */
  timeout?: number;
  /** Stop waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** First and longest pause between two reads of the checkpoints (ms). */
const FIRST_PAUSE = 5;
const LONGEST_PAUSE = 100;

/**
 * Polls `read` (checkpoint per consumer; a missing name is an unknown consumer) until every
 * consumer is at or past `position`, backing off from 5 to 100 ms.
 */
export async function waitForCheckpoints(
  read: (consumers: readonly string[]) => Promise<Map<string, number>>,
  clock: Clock,
  position: number,
  consumers: readonly string[],
  options: WaitForPositionOptions = {},
): Promise<void> {
  if (!Number.isSafeInteger(position) || position < 0) {
    throw new WorkerConfigError(`position must be a non-negative integer, got ${position}`);
  }
  if (consumers.length === 0) {
    throw new WorkerConfigError("waitForPosition needs at least one consumer name");
  }
  const timeout = options.timeout ?? 30_000;
  if (!Number.isFinite(timeout) || timeout < 0) {
    throw new WorkerConfigError(`timeout must be a non-negative number of ms, got ${timeout}`);
  }
  const signal = options.signal ?? new AbortController().signal;
  const deadline = clock.now() + timeout;
  let wait = FIRST_PAUSE;
  for (;;) {
    if (signal.aborted) throw signal.reason;
    const checkpoints = await read(consumers);
    const unknown = consumers.filter((name) => !checkpoints.has(name));
    if (unknown.length > 0) {
      throw new WorkerConfigError(
        `no consumer named ${unknown.join(", ")} (it has no checkpoint: never registered)`,
      );
    }
    const lagging = consumers
      .map((consumer) => ({ consumer, checkpoint: checkpoints.get(consumer)! }))
      .filter((c) => c.checkpoint < position);
    if (lagging.length === 0) return;
    const left = deadline - clock.now();
    if (left <= 0) throw new WaitTimeoutError(position, lagging, timeout);
    if (!await pause(clock, Math.min(wait, left), signal)) throw signal.reason;
    wait = nextPollInterval(wait, LONGEST_PAUSE, FIRST_PAUSE);
  }
}
