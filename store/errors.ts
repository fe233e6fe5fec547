import type { ExpectedVersion } from "./expected_version.ts";
import { describeExpectedVersion } from "./expected_version.ts";

/**
 * Bad input: thrown before any SQL runs, so nothing was written and the caller's transaction is
 * still usable. It extends `TypeError`, so code that checks for `TypeError` catches it too.
 *
 * @example
 * ```ts
 * import { exact, ValidationError } from "@eventsalsa/eventsalsa/store";
 * try {
 *   exact(-1);
 * } catch (error) {
 *   console.log(error instanceof ValidationError); // true
 * }
 * ```
 */
export class ValidationError extends TypeError {
  /** Stable error name, safe to compare across realms and bundles. */
  override readonly name: string = "ValidationError";
}

/**
 * `append` was called with an empty batch. A `ValidationError`, thrown before any SQL runs.
 *
 * @example
 * ```ts
 * import { any, NoEventsError, PostgresStore } from "@eventsalsa/eventsalsa/store";
 * declare const sql: import("postgres").Sql;
 * await new PostgresStore().append(sql, any(), []).catch((e) => e instanceof NoEventsError);
 * ```
 */
export class NoEventsError extends ValidationError {
  /** Stable error name. */
  override readonly name: string = "NoEventsError";
  /** Creates the error with its fixed message. */
  constructor() {
    super("no events to append: append needs at least one event");
  }
}

/**
 * The expected version did not match the aggregate's head. Nothing was written, no position was
 * drawn, and the transaction is still usable: reload the aggregate and retry, or report the conflict.
 *
 * @example
 * ```ts
 * import { ConcurrencyError, exact, PostgresStore } from "@eventsalsa/eventsalsa/store";
 * declare const sql: import("postgres").Sql;
 * const store = new PostgresStore();
 * try {
 *   await store.append(sql, exact(3), []);
 * } catch (error) {
 *   if (error instanceof ConcurrencyError) console.log(error.actualVersion);
 * }
 * ```
 */
export class ConcurrencyError extends Error {
  /** Stable error name. */
  override readonly name: string = "ConcurrencyError";
  /** The aggregate's type. */
  readonly aggregateType: string;
  /** The aggregate's id. */
  readonly aggregateId: string;
  /** What the caller expected. */
  readonly expected: ExpectedVersion;
  /** The head version found after the conflict (0 = no stream), or `null` when unknown. */
  readonly actualVersion: number | null;

  /** Creates the error; the message names the aggregate and both versions. */
  constructor(
    aggregateType: string,
    aggregateId: string,
    expected: ExpectedVersion,
    actualVersion: number | null,
  ) {
    super(
      `concurrency conflict on ${aggregateType}/${aggregateId}: expected ` +
        `${describeExpectedVersion(expected)}, head is ` +
        (actualVersion === null ? "unknown" : actualVersion === 0 ? "no stream" : actualVersion),
    );
    this.aggregateType = aggregateType;
    this.aggregateId = aggregateId;
    this.expected = expected;
    this.actualVersion = actualVersion;
  }
}

/**
 * An event with this `eventId` already exists. Distinct from a version conflict: retrying the same
 * batch will never succeed. PostgreSQL raised a unique violation, so the transaction is aborted and
 * must be rolled back.
 *
 * @example
 * ```ts
 * import { DuplicateEventIdError } from "@eventsalsa/eventsalsa/store";
 * const error = new DuplicateEventIdError("Order", "o-1", "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6f");
 * console.log(error.eventId);
 * ```
 */
export class DuplicateEventIdError extends Error {
  /** Stable error name. */
  override readonly name: string = "DuplicateEventIdError";
  /** The aggregate type of the batch that collided. */
  readonly aggregateType: string;
  /** The aggregate id of the batch that collided. */
  readonly aggregateId: string;
  /** The duplicated event id, when the database reported it. */
  readonly eventId: string | null;

  /** Creates the error. */
  constructor(aggregateType: string, aggregateId: string, eventId: string | null) {
    super(
      `duplicate event id${eventId === null ? "" : ` ${eventId}`} appending to ` +
        `${aggregateType}/${aggregateId}: an event with this id is already stored`,
    );
    this.aggregateType = aggregateType;
    this.aggregateId = aggregateId;
    this.eventId = eventId;
  }
}
