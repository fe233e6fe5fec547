/**
 * Partitioned consumers: a consumer declared with `partitions: N` (N > 1) runs as N internal
 * consumers, `name#0ofN` … `name#<N-1>ofN`. To the protocol and the leader's planner each is an
 * ordinary consumer, with a checkpoint and an assignment row of its own, so the leader spreads
 * the partitions over the fleet's workers. Each partition's loop reads the whole window (the gap
 * rule needs every position) and hands its handlers only the events whose aggregate hashes to it
 * ({@link partitionIndex}); the checkpoint moves past the others, as past events a type filter
 * excludes. All events of one aggregate go to one partition, in global-position order, so
 * per-aggregate order is kept.
 *
 * The hash is part of the stored state (each partition's checkpoint covers only its aggregates),
 * so it never changes: FNV-1a, 32-bit, over the UTF-8 bytes of `aggregateType + "\u0000" +
 * aggregateId`, modulo the partition count. Stored text never contains NUL, so the separator is
 * unambiguous.
 *
 * @module
 */
import { WorkerConfigError, WorkerSetupError } from "../errors.ts";
import type { AnyConsumer, Consumer } from "../types.ts";

/** A partition of a consumer: its index (0-based) of `count`, and the consumer's own name. */
export interface ConsumerPartition {
  /** The declared consumer's name. */
  readonly consumer: string;
  /** 0 … count − 1. */
  readonly index: number;
  /** The consumer's `partitions`. */
  readonly count: number;
}

/** `name#<index>of<count>`: canonical decimals, index below count, count above 1. */
const PARTITION_NAME = /^([\s\S]*)#(0|[1-9][0-9]*)of([1-9][0-9]*)$/;

/** A name that ends like a partition's (`#<digits>of<digits>`): reserved for partitions. */
const RESERVED_SUFFIX = /#[0-9]+of[0-9]+$/;

/**
 * The name of partition `index` of `count` of consumer `consumer`: `orders#2of4`.
 *
 * @example
 * ```ts ignore
 * partitionName("orders", 2, 4); // "orders#2of4"
 * ```
 */
export function partitionName(consumer: string, index: number, count: number): string {
  return `${consumer}#${index}of${count}`;
}

/**
 * The partition a name stands for, or null when it is no partition's name. A user's consumer
 * name never parses (the suffix is reserved), so partition names cannot collide with them.
 */
export function parsePartitionName(name: string): ConsumerPartition | null {
  const match = PARTITION_NAME.exec(name);
  if (match === null || match[1] === "") return null;
  const index = Number(match[2]);
  const count = Number(match[3]);
  if (!Number.isSafeInteger(count) || count < 2 || index >= count) return null;
  return { consumer: match[1], index, count };
}

/**
 * FNV-1a, 32-bit, over the UTF-8 encoding of `text` (a lone surrogate encodes as U+FFFD, as
 * `TextEncoder` does). Unsigned.
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  const byte = (b: number) => {
    hash = Math.imul(hash ^ b, 0x01000193);
  };
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      byte(c);
      continue;
    }
    if (c < 0x800) {
      byte(0xc0 | (c >> 6));
      byte(0x80 | (c & 0x3f));
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const point = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        byte(0xf0 | (point >> 18));
        byte(0x80 | ((point >> 12) & 0x3f));
        byte(0x80 | ((point >> 6) & 0x3f));
        byte(0x80 | (point & 0x3f));
        continue;
      }
      c = 0xfffd;
    }
    byte(0xe0 | (c >> 12));
    byte(0x80 | ((c >> 6) & 0x3f));
    byte(0x80 | (c & 0x3f));
  }
  return hash >>> 0;
}

/**
 * The partition (0 … count − 1) of an aggregate: FNV-1a 32-bit over the UTF-8 bytes of
 * `aggregateType + "\u0000" + aggregateId`, modulo `count`. Stable forever: checkpoints depend on
 * it.
 *
 * @example
 * ```ts ignore
 * partitionIndex("Order", "o-1", 4); // 0 (FNV-1a of "Order\u0000o-1" is 0x30180d78)
 * ```
 */
export function partitionIndex(aggregateType: string, aggregateId: string, count: number): number {
  return fnv1a32(`${aggregateType}\u0000${aggregateId}`) % count;
}

/** The partition an expanded consumer runs, by the object the runtime made for it. */
const partitions = new WeakMap<object, ConsumerPartition>();

/** The partition `consumer` runs, or null for an unpartitioned consumer. */
export function partitionOf(consumer: object): ConsumerPartition | null {
  return partitions.get(consumer) ?? null;
}

/** Whether an event belongs to `partition` (see {@link partitionIndex}). */
export function inPartition(
  event: { readonly aggregateType: string; readonly aggregateId: string },
  partition: ConsumerPartition,
): boolean {
  return partitionIndex(event.aggregateType, event.aggregateId, partition.count) ===
    partition.index;
}

/** The declared partition count of a consumer: its `partitions`, 1 when absent. */
export function partitionCount(consumer: { readonly partitions?: number }): number {
  return consumer.partitions ?? 1;
}

/** The names a declared consumer runs under: its own, or one per partition. */
export function runningNames(
  consumer: { readonly name: string; readonly partitions?: number },
): string[] {
  const count = partitionCount(consumer);
  if (count === 1) return [consumer.name];
  return Array.from({ length: count }, (_, i) => partitionName(consumer.name, i, count));
}

/**
 * Refuses a consumer name that ends like a partition's (`#<digits>of<digits>`): those are
 * reserved, so that no consumer can be mistaken for a partition of another.
 */
function checkNotPartitionName(name: string): void {
  if (RESERVED_SUFFIX.test(name)) {
    throw new WorkerConfigError(
      `consumer name ${JSON.stringify(name)} ends like a partition's name (#<index>of<count>), ` +
        `which the worker reserves for partitioned consumers`,
    );
  }
}

/**
 * The partition `index` of `consumer`, as a consumer of its own: named `name#<index>of<count>`,
 * everything else read from the declared consumer at each use (the loop reads the filters when it
 * starts; handlers run with the declared consumer as `this`).
 */
function partitionConsumer<Tx>(
  consumer: AnyConsumer<Tx>,
  index: number,
  count: number,
): AnyConsumer<Tx> {
  const name = partitionName(consumer.name, index, count);
  const bound = new Map<unknown, unknown>();
  // An empty target: the proxy's answers are not bound by the declared object's own properties
  // (a frozen consumer's `name` could not be answered differently otherwise).
  const proxy = new Proxy({} as AnyConsumer<Tx>, {
    get(_target, key) {
      if (key === "name") return name;
      if (key === "partitions") return undefined;
      const value: unknown = Reflect.get(consumer, key, consumer);
      if (typeof value !== "function") return value;
      // Methods keep the declared consumer as `this` (its fields, private ones included, are
      // shared by every partition).
      let fn = bound.get(value);
      if (fn === undefined) {
        fn = (value as (...args: unknown[]) => unknown).bind(consumer);
        bound.set(value, fn);
      }
      return fn;
    },
    has(_target, key) {
      return key === "name" || (key !== "partitions" && Reflect.has(consumer, key));
    },
  });
  partitions.set(proxy, { consumer: consumer.name, index, count });
  return proxy;
}

/**
 * The consumers a worker runs for `consumers` (already checked): each unpartitioned consumer as
 * itself, each consumer with `partitions: N > 1` as its N partitions, in order. Refuses names that
 * end like a partition's.
 */
export function expandPartitions<Tx>(consumers: readonly Consumer<Tx>[]): Consumer<Tx>[];
/** Detached consumers too (see the overload above). */
export function expandPartitions<Tx>(consumers: readonly AnyConsumer<Tx>[]): AnyConsumer<Tx>[];
export function expandPartitions<Tx>(consumers: readonly AnyConsumer<Tx>[]): AnyConsumer<Tx>[] {
  const expanded: AnyConsumer<Tx>[] = [];
  for (const consumer of consumers) {
    checkNotPartitionName(consumer.name);
    const count = partitionCount(consumer);
    if (count === 1) expanded.push(consumer);
    else for (let i = 0; i < count; i++) expanded.push(partitionConsumer(consumer, i, count));
  }
  return expanded;
}

/**
 * Compares the declared partition counts with the consumers the worker tables already hold
 * (`existing`: every consumer name with rows). A consumer whose rows are of another shape — run
 * before with another partition count, or unpartitioned and now partitioned, or the reverse — is
 * a `WorkerSetupError`: its new rows would start over (each partition's checkpoint covers its own
 * aggregates only) while the old ones still say how far the read model is, so events would be
 * handled twice or missed. The message says how to move on.
 */
export function checkPartitionShapes(
  consumers: readonly { readonly name: string; readonly partitions?: number }[],
  existing: Iterable<string>,
): void {
  const shapes = new Map<string, Set<number>>();
  for (const name of existing) {
    const partition = parsePartitionName(name);
    const base = partition?.consumer ?? name;
    const count = partition?.count ?? 1;
    let counts = shapes.get(base);
    if (counts === undefined) shapes.set(base, counts = new Set());
    counts.add(count);
  }
  for (const consumer of consumers) {
    const count = partitionCount(consumer);
    const other = [...(shapes.get(consumer.name) ?? [])].filter((c) => c !== count).sort((a, b) =>
      a - b
    );
    if (other.length === 0) continue;
    const was = other.map((c) => c === 1 ? "unpartitioned" : `${c} partitions`).join(" and ");
    const now = count === 1 ? "unpartitioned" : `with ${count} partitions`;
    throw new WorkerSetupError(
      `consumer ${JSON.stringify(consumer.name)} is declared ${now}, but the worker tables hold ` +
        `its checkpoints ${other.length === 1 ? "as" : "both as"} ${was}. Each partition's ` +
        `checkpoint covers only its own aggregates, so the partition count of a consumer cannot ` +
        `change under a running read model: stop every worker running it, then either go back ` +
        `to the old count, or delete the old rows and rebuild (see "Partitioned consumers" in ` +
        `docs/worker.md)`,
    );
  }
}

/**
 * The checkpoints of `names` from stored rows (name → checkpoint), for `waitForPosition` without
 * the consumers' declarations: a name with a row of its own has that checkpoint; a name without
 * one whose partitions have rows (`name#<i>of<N>`) has the lowest of theirs (it has passed a
 * position when every partition has). A name with neither is left out (unknown). Partitions of
 * several counts, or an incomplete set, are a `WorkerConfigError`.
 */
export function checkpointsByName(
  names: readonly string[],
  rows: ReadonlyMap<string, number>,
): Map<string, number> {
  const partitioned = new Map<string, Map<number, Map<number, number>>>();
  for (const [name, checkpoint] of rows) {
    const partition = parsePartitionName(name);
    if (partition === null) continue;
    let counts = partitioned.get(partition.consumer);
    if (counts === undefined) partitioned.set(partition.consumer, counts = new Map());
    let parts = counts.get(partition.count);
    if (parts === undefined) counts.set(partition.count, parts = new Map());
    parts.set(partition.index, checkpoint);
  }
  const result = new Map<string, number>();
  for (const name of names) {
    const own = rows.get(name);
    if (own !== undefined) {
      result.set(name, own);
      continue;
    }
    const counts = partitioned.get(name);
    if (counts === undefined) continue;
    if (counts.size > 1) {
      throw new WorkerConfigError(
        `consumer ${JSON.stringify(name)} has checkpoints of several partition counts ` +
          `(${[...counts.keys()].sort((a, b) => a - b).join(", ")}); delete the stale ones`,
      );
    }
    const [[count, parts]] = counts;
    const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !parts.has(i));
    if (missing.length > 0) {
      throw new WorkerConfigError(
        `consumer ${JSON.stringify(name)} has ${count} partitions but no checkpoint for ` +
          missing.map((i) => partitionName(name, i, count)).join(", "),
      );
    }
    result.set(name, Math.min(...parts.values()));
  }
  return result;
}

/** Most events one window of a partition holds (see {@link windowSize}). */
const MAX_PARTITION_WINDOW = 10_000;

/**
 * How many events (of its types) a consumer's window holds: `batchSize`; for a partition
 * `batchSize × count` (at most 10,000, and never below `batchSize`), so that its batches hold
 * about `batchSize` of its
 * own events, as an unpartitioned consumer's do, rather than a `count`-th of that at the same cost
 * per batch (a transaction, a fence, a commit).
 */
export function windowSize(batchSize: number, partition: ConsumerPartition | null): number {
  if (partition === null) return batchSize;
  return Math.max(batchSize, Math.min(batchSize * partition.count, MAX_PARTITION_WINDOW));
}
