/**
 * Calling a consumer's handlers, transactional or detached, `handle` or `handleBatch`: the one
 * place that knows the four shapes (the consumer loop and redrive call through it).
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import type { AnyConsumer, HandlerContext } from "../types.ts";

/**
 * Calls `handleBatch`: with the batch transaction, or (a detached consumer) without one. `tx` is
 * null only for a detached consumer.
 */
export function callBatch<Tx>(
  consumer: AnyConsumer<Tx>,
  tx: Tx | null,
  events: readonly PersistedEvent[],
  context: HandlerContext,
): void | Promise<void> {
  if (consumer.mode === "detached") return consumer.handleBatch!(events, context);
  return consumer.handleBatch!(tx as Tx, events, context);
}

/** Calls `handle` (else `handleBatch` with one event), as {@link callBatch} does. */
export function callOne<Tx>(
  consumer: AnyConsumer<Tx>,
  tx: Tx | null,
  event: PersistedEvent,
  context: HandlerContext,
): void | Promise<void> {
  if (consumer.mode === "detached") {
    return consumer.handle !== undefined
      ? consumer.handle(event, context)
      : consumer.handleBatch!([event], context);
  }
  return consumer.handle !== undefined
    ? consumer.handle(tx as Tx, event, context)
    : consumer.handleBatch!(tx as Tx, [event], context);
}
