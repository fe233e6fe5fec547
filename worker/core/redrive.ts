/**
 * Redriving a skipped dead letter through its consumer, on any coordinator.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import { HandlerError } from "../errors.ts";
import type { Consumer, HandlerContext } from "../types.ts";
import type { Coordinator } from "./coordination.ts";

/**
 * Handles the skipped dead letter of `consumer` at `position` now (out of order: later events
 * were handled already) in one transaction with marking it redriven. The handler's error is
 * rethrown as `HandlerError` and the dead letter stays.
 */
export function redriveWith<Tx>(
  coordinator: Coordinator<Tx>,
  consumer: Consumer<Tx>,
  position: number,
  workerId: string,
): Promise<PersistedEvent> {
  if (!Number.isSafeInteger(position) || position < 1) {
    return Promise.reject(new RangeError(`position must be a positive integer, got ${position}`));
  }
  return coordinator.redriveDeadLetter(consumer.name, position, async (tx, event) => {
    const context: HandlerContext = {
      signal: new AbortController().signal,
      consumer: consumer.name,
      workerId,
      attempt: 1,
    };
    try {
      if (consumer.handle !== undefined) await consumer.handle(tx, event, context);
      else await consumer.handleBatch!(tx, [event], context);
    } catch (error) {
      throw new HandlerError(consumer.name, event, error);
    }
    return event;
  });
}
