/**
 * The worker's typed errors. Each has a stable `name` and the fields an operator or a caller needs.
 *
 * @module
 */
import { ValidationError } from "../store/errors.ts";
import type { PersistedEvent } from "../store/types.ts";

/**
 * A bad worker option or consumer definition, thrown by the constructor before anything touches
 * the database. Extends the store's `ValidationError` (and so `TypeError`).
 *
 * @example
 * ```ts
 * import { WorkerConfigError } from "@eventsalsa/eventsalsa/worker";
 * const error = new WorkerConfigError("batchSize must be a positive integer, got 0");
 * console.log(error instanceof TypeError); // true
 * ```
 */
export class WorkerConfigError extends ValidationError {
  /** Stable error name. */
  override readonly name: string = "WorkerConfigError";
}

/**
 * `start` was called while the worker is already running.
 *
 * @example
 * ```ts
 * import { WorkerAlreadyStartedError } from "@eventsalsa/eventsalsa/worker";
 * console.log(new WorkerAlreadyStartedError("w-1").message);
 * ```
 */
export class WorkerAlreadyStartedError extends Error {
  /** Stable error name. */
  override readonly name: string = "WorkerAlreadyStartedError";
  /** The worker's id. */
  readonly workerId: string;
  /** Creates the error for `workerId`. */
  constructor(workerId: string) {
    super(`worker ${workerId} is already started`);
    this.workerId = workerId;
  }
}

/**
 * The database is not ready for the worker: tables missing, or the position sequence is cached
 * (`CACHE` > 1), which would break the gap rule. Thrown by `start` before any consumer runs.
 *
 * @example
 * ```ts
 * import { WorkerSetupError } from "@eventsalsa/eventsalsa/worker";
 * console.log(new WorkerSetupError("worker tables are missing").name);
 * ```
 */
export class WorkerSetupError extends Error {
  /** Stable error name. */
  override readonly name: string = "WorkerSetupError";
}

/**
 * Another live worker already uses this worker id (its heartbeat is within `heartbeatTimeout`).
 *
 * @example
 * ```ts
 * import { WorkerIdInUseError } from "@eventsalsa/eventsalsa/worker";
 * console.log(new WorkerIdInUseError("w-1").message);
 * ```
 */
export class WorkerIdInUseError extends Error {
  /** Stable error name. */
  override readonly name: string = "WorkerIdInUseError";
  /** The contested id. */
  readonly workerId: string;
  /** Creates the error for `workerId`. */
  constructor(workerId: string) {
    super(`worker id ${workerId} is in use by a live worker (recent heartbeat); pick another id`);
    this.workerId = workerId;
  }
}

/**
 * This worker's registration row disappeared (deleted by hand, or by another worker's start-up
 * cleanup after this one was silent for twice the heartbeat timeout) and stayed gone at two
 * heartbeats in a row. The worker stops rather than run invisibly: `start` rejects with it. The
 * fence had already kept it from committing for consumers it no longer owned.
 *
 * @example
 * ```ts
 * import { WorkerRegistrationLostError } from "@eventsalsa/eventsalsa/worker";
 * console.log(new WorkerRegistrationLostError("w-1").message);
 * ```
 */
export class WorkerRegistrationLostError extends Error {
  /** Stable error name. */
  override readonly name: string = "WorkerRegistrationLostError";
  /** The worker whose row is gone. */
  readonly workerId: string;
  /** Creates the error for `workerId`. */
  constructor(workerId: string) {
    super(
      `the registration of worker ${workerId} is gone (missing at two heartbeats in a row); ` +
        `stopping (restart the worker to register again)`,
    );
    this.workerId = workerId;
  }
}

/**
 * A statement was sent on a batch's `tx` after the batch was over: its signal fired (batch timeout
 * or shutdown), it committed or rolled back, or its connection was lost. The statement was refused
 * and never reached the database, so nothing commits outside the batch. Handlers that outlive
 * their batch (ignoring `context.signal`) see this error.
 */
export class BatchClosedError extends Error {
  /** Stable error name. */
  override readonly name: string = "BatchClosedError";
  /** The consumer whose batch is over. */
  readonly consumer: string;
  /** Creates the error for `consumer`'s batch. */
  constructor(consumer: string) {
    super(
      `the batch transaction of consumer ${consumer} is over (committed, rolled back, timed out, ` +
        `stopped or its connection lost); the statement was refused`,
    );
    this.consumer = consumer;
  }
}

/**
 * A handler (or `handleBatch`) threw. Wraps the original error as `cause` and names the event
 * when the failure can be attributed to one.
 *
 * @example
 * ```ts
 * import { HandlerError } from "@eventsalsa/eventsalsa/worker";
 * const error = new HandlerError("projection", null, new Error("boom"));
 * console.log(error.message);
 * ```
 */
export class HandlerError extends Error {
  /** Stable error name. */
  override readonly name: string = "HandlerError";
  /** The consumer whose handler failed. */
  readonly consumer: string;
  /** The event being handled, or null when a `handleBatch` failure names none. */
  readonly event: PersistedEvent | null;

  /** Creates the error. */
  constructor(consumer: string, event: PersistedEvent | null, cause: unknown) {
    super(
      `consumer ${consumer} failed` +
        (event === null
          ? " on a batch"
          : ` on event ${event.eventId} at position ${event.globalPosition}`) +
        `: ${errorText(cause)}`,
      { cause },
    );
    this.consumer = consumer;
    this.event = event;
  }
}

/**
 * A batch ran longer than `batchTimeout`: its transaction was cancelled and rolled back, and the
 * attempt counts as a failure.
 *
 * @example
 * ```ts
 * import { BatchTimeoutError } from "@eventsalsa/eventsalsa/worker";
 * console.log(new BatchTimeoutError("projection", 30_000).message);
 * ```
 */
export class BatchTimeoutError extends Error {
  /** Stable error name. */
  override readonly name: string = "BatchTimeoutError";
  /** The consumer whose batch timed out. */
  readonly consumer: string;
  /** The limit that was exceeded, in milliseconds. */
  readonly timeoutMs: number;
  /** Creates the error. */
  constructor(consumer: string, timeoutMs: number) {
    super(
      `batch of consumer ${consumer} exceeded batchTimeout (${timeoutMs} ms) and was rolled back`,
    );
    this.consumer = consumer;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A consumer failed `maxConsecutiveFailures` times in a row; `start` rejects with it (the worker
 * stops rather than look healthy while a consumer makes no progress). `cause` is the last failure.
 *
 * @example
 * ```ts
 * import { ConsecutiveFailuresError } from "@eventsalsa/eventsalsa/worker";
 * const error = new ConsecutiveFailuresError("projection", 5, new Error("db down"));
 * console.log(error.failures); // 5
 * ```
 */
export class ConsecutiveFailuresError extends Error {
  /** Stable error name. */
  override readonly name: string = "ConsecutiveFailuresError";
  /** The failing consumer. */
  readonly consumer: string;
  /** How many attempts failed in a row. */
  readonly failures: number;
  /** Creates the error. */
  constructor(consumer: string, failures: number, cause: unknown) {
    super(`consumer ${consumer} failed ${failures} times in a row: ${errorText(cause)}`, { cause });
    this.consumer = consumer;
    this.failures = failures;
  }
}

/**
 * Throw it from a handler to say "this event can never be handled". The worker records the event
 * in the dead-letter table; whether it then skips the event or keeps retrying is the consumer's
 * poison policy (`onPoison`). From `handleBatch`, pass the offending event so the worker knows
 * which one it is.
 *
 * @example
 * ```ts
 * import { PoisonEventError } from "@eventsalsa/eventsalsa/worker";
 * import type { PersistedEvent } from "@eventsalsa/eventsalsa/store";
 * function parse(event: PersistedEvent): unknown {
 *   try {
 *     return JSON.parse(new TextDecoder().decode(event.payload));
 *   } catch (cause) {
 *     throw new PoisonEventError("payload is not JSON", { event, cause });
 *   }
 * }
 * ```
 */
export class PoisonEventError extends Error {
  /** Stable error name. */
  override readonly name: string = "PoisonEventError";
  /** The poison event when the thrower named it (required to attribute a `handleBatch` failure). */
  readonly event: PersistedEvent | null;
  /** Creates the error; `options.event` names the event, `options.cause` the underlying error. */
  constructor(message: string, options: { event?: PersistedEvent; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.event = options.event ?? null;
  }
}

/**
 * `retryDeadLetter` found no dead letter to redrive at that consumer and position (or it was
 * already redriven).
 *
 * @example
 * ```ts
 * import { DeadLetterNotFoundError } from "@eventsalsa/eventsalsa/worker";
 * console.log(new DeadLetterNotFoundError("projection", 42).message);
 * ```
 */
export class DeadLetterNotFoundError extends Error {
  /** Stable error name. */
  override readonly name: string = "DeadLetterNotFoundError";
  /** The consumer asked for. */
  readonly consumer: string;
  /** The position asked for. */
  readonly globalPosition: number;
  /** Creates the error. */
  constructor(consumer: string, globalPosition: number, detail = "") {
    super(
      `no skipped dead letter for consumer ${consumer} at position ${globalPosition}` +
        (detail === "" ? "" : `: ${detail}`),
    );
    this.consumer = consumer;
    this.globalPosition = globalPosition;
  }
}

/** The text recorded for an error (dead letters, logs): message, plus the cause chain. */
export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  let text = `${error.name}: ${error.message}`;
  const cause = (error as { cause?: unknown }).cause;
  if (cause !== undefined && !error.message.includes(String((cause as Error)?.message ?? cause))) {
    text += ` (caused by ${errorText(cause)})`;
  }
  return text;
}

/**
 * `waitForPosition` gave up: its timeout passed before every consumer it waited for had passed the
 * position. `lagging` lists those that had not, with their checkpoints.
 *
 * @example
 * ```ts
 * import { WaitTimeoutError } from "@eventsalsa/eventsalsa/worker";
 * const error = new WaitTimeoutError(42, [{ consumer: "orders", checkpoint: 40 }], 5_000);
 * console.log(error.message);
 * ```
 */
export class WaitTimeoutError extends Error {
  /** Stable error name. */
  override readonly name: string = "WaitTimeoutError";
  /** The position waited for. */
  readonly position: number;
  /** The consumers still behind it, with their checkpoints. */
  readonly lagging: readonly { readonly consumer: string; readonly checkpoint: number }[];
  /** Creates the error. */
  constructor(
    position: number,
    lagging: readonly { readonly consumer: string; readonly checkpoint: number }[],
    timeoutMs: number,
  ) {
    super(
      `waited ${timeoutMs} ms for position ${position}; still behind: ` +
        lagging.map((l) => `${l.consumer} at ${l.checkpoint}`).join(", "),
    );
    this.position = position;
    this.lagging = lagging;
  }
}
