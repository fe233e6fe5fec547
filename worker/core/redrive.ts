/**
 * Redriving a skipped dead letter through its consumer, on any coordinator.
 *
 * @module
 */
import type { PersistedEvent } from "../../store/types.ts";
import { DeadLetterNotFoundError, HandlerError } from "../errors.ts";
import type { AnyConsumer, HandlerContext } from "../types.ts";
import type { Coordinator } from "./coordination.ts";
import { callOne } from "./handlers.ts";
import { partitionCount, partitionIndex, partitionName } from "./partitions.ts";

/**
 * Handles the skipped dead letter of `consumer` at `position` now (out of order: later events
 * were handled already) in one transaction with marking it redriven. The handler's error is
 * rethrown as `HandlerError` and the dead letter stays. For a partitioned consumer the dead letter
 * is its partition's: the one the event's aggregate hashes to.
 *
 * A detached consumer's handler runs with no transaction open: the dead letter is checked and its
 * event read in one short transaction, the handler called, and the dead letter marked redriven in
 * a second one (at least once: a crash in between, or a concurrent redrive, runs it again).
 */
export async function redriveWith<Tx>(
  coordinator: Coordinator<Tx>,
  consumer: AnyConsumer<Tx>,
  position: number,
  workerId: string,
): Promise<PersistedEvent> {
  if (!Number.isSafeInteger(position) || position < 1) {
    throw new RangeError(`position must be a positive integer, got ${position}`);
  }
  let name = consumer.name;
  let partition: { index: number; count: number } | null = null;
  const count = partitionCount(consumer);
  if (count > 1) {
    const read = await coordinator.readWindow(
      { after: position - 1, limit: 1, scan: 1, filter: null, pendingToken: null },
      new AbortController().signal,
    );
    const found = read.events.find((e) => e.globalPosition === position);
    if (found === undefined) {
      throw new DeadLetterNotFoundError(name, position, "the event is not in the store");
    }
    const index = partitionIndex(found.aggregateType, found.aggregateId, count);
    name = partitionName(consumer.name, index, count);
    partition = { index, count };
  }
  const context: HandlerContext = {
    signal: new AbortController().signal,
    consumer: name,
    workerId,
    attempt: 1,
    ...(partition === null ? {} : { partition }),
  };
  if (consumer.mode === "detached") {
    const event = await coordinator.readDeadLetter(name, position);
    try {
      await callOne(consumer, null, event, context);
    } catch (error) {
      throw new HandlerError(name, event, error);
    }
    await coordinator.redriveDeadLetter(name, position, () => Promise.resolve());
    return event;
  }
  return await coordinator.redriveDeadLetter(name, position, async (tx, event) => {
    try {
      await callOne(consumer, tx, event, context);
    } catch (error) {
      throw new HandlerError(name, event, error);
    }
    return event;
  });
}
