/**
 * What a reset of a declared consumer does, for every entry point (the worker's
 * `resetConsumer`, the standalone `resetConsumer` over PostgreSQL, the CLI through it).
 *
 * @module
 */
import type { AnyConsumer } from "../types.ts";
import { runningNames } from "./partitions.ts";

/**
 * The rows a reset of `consumer` to `toPosition` moves (one per partition: they move back
 * together) and its `reset` hook, called once with the declared consumer as `this`, or null.
 */
export function resetOf<Tx>(
  consumer: AnyConsumer<Tx>,
  toPosition: number,
): { names: string[]; hook: ((tx: Tx) => Promise<void>) | null } {
  const reset = consumer.reset;
  return {
    names: runningNames(consumer),
    hook: reset === undefined
      ? null
      : async (tx: Tx) => await reset.call(consumer, tx, { consumer: consumer.name, toPosition }),
  };
}
