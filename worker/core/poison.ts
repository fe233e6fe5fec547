/**
 * Poison policies: what a handler failure means for the event (see `PoisonDecision`).
 *
 * @module
 */
import { PoisonEventError } from "../errors.ts";
import type { HandlerFailure, PoisonDecision, PoisonPolicy } from "../types.ts";

/**
 * The default: a `PoisonEventError` is recorded as a dead letter and the consumer stays at the
 * event (retrying with back-off, so `maxConsecutiveFailures` eventually stops the worker); any
 * other error is an ordinary retry. Nothing is ever skipped unless a policy says so.
 *
 * @example
 * ```ts
 * import { defaultPoisonPolicy } from "@eventsalsa/eventsalsa/worker";
 * const consumer = { name: "p", handle() {}, onPoison: defaultPoisonPolicy };
 * ```
 */
export const defaultPoisonPolicy: PoisonPolicy = (failure: HandlerFailure): PoisonDecision =>
  failure.error instanceof PoisonEventError ? "deadLetter" : "retry";

/**
 * A policy that skips poison events: a `PoisonEventError` at once, any other error after
 * `afterAttempts` consecutive failures at the same event (never, when omitted). Skipped events go
 * to the dead-letter table, from which `retryDeadLetter` can redrive them.
 *
 * @example
 * ```ts
 * import { skipPoisonEvents } from "@eventsalsa/eventsalsa/worker";
 * const consumer = { name: "mailer", handle() {}, onPoison: skipPoisonEvents({ afterAttempts: 3 }) };
 * ```
 */
export function skipPoisonEvents(options: { afterAttempts?: number } = {}): PoisonPolicy {
  const after = options.afterAttempts;
  if (after !== undefined && (!Number.isSafeInteger(after) || after < 1)) {
    throw new RangeError(`afterAttempts must be a positive integer, got ${after}`);
  }
  return (failure: HandlerFailure): PoisonDecision =>
    failure.error instanceof PoisonEventError || (after !== undefined && failure.attempts >= after)
      ? "skip"
      : "retry";
}
