import type { ExpectedVersion } from "./expected_version.ts";

/**
 * Any JSON value.
 *
 * @example
 * ```ts
 * import type { JsonValue } from "@eventsalsa/eventsalsa/store";
 * const value: JsonValue = { tags: ["a", "b"], count: 2, ok: true, note: null };
 * ```
 */
export type JsonValue = null | boolean | number | string | JsonValue[] | {
  [key: string]: JsonValue;
};

/**
 * A JSON object: what event metadata must be.
 *
 * @example
 * ```ts
 * import type { JsonObject } from "@eventsalsa/eventsalsa/store";
 * const metadata: JsonObject = { tenant: "acme", source: { app: "web", version: 3 } };
 * ```
 */
export type JsonObject = { [key: string]: JsonValue };

/**
 * An event to append. The store assigns `aggregateVersion` and `globalPosition`; everything else
 * is yours. `payload` is opaque bytes (JSON, protobuf, ciphertext).
 *
 * @example
 * ```ts
 * import type { Event } from "@eventsalsa/eventsalsa/store";
 * const event: Event = {
 *   aggregateType: "Order",
 *   aggregateId: "order-1",
 *   eventType: "OrderPlaced",
 *   payload: new TextEncoder().encode(JSON.stringify({ total: 42 })),
 *   metadata: { userId: "u-7" },
 * };
 * ```
 */
export interface Event {
  /** The aggregate's category, e.g. `"Order"`. Non-empty, at most 1,024 UTF-8 bytes. */
  aggregateType: string;
  /** The aggregate's identity within its type. Non-empty, at most 1,024 UTF-8 bytes. */
  aggregateId: string;
  /** A UUID identifying this event; generated (v4) when omitted. Unique across the log. */
  eventId?: string;
  /** The discriminator, e.g. `"OrderPlaced"`. Non-empty, at most 1,024 UTF-8 bytes. */
  eventType: string;
  /** The payload's schema version, a positive integer; 1 when omitted. */
  eventVersion?: number;
  /** The event's body, as bytes (any `Uint8Array`, a `Buffer` too). */
  payload: Uint8Array;
  /** A plain JSON object at most 100 levels deep, or null/omitted for none. */
  metadata?: JsonObject | null;
  /** When the event happened, from 0100-01-01 to 9999-12-31 (UTC); now when omitted. */
  createdAt?: Date;
  /** Optional tracing id, at most 1,024 UTF-8 bytes; `""` is stored as null. */
  traceId?: string | null;
  /** Optional correlation id, at most 1,024 UTF-8 bytes; `""` is stored as null. */
  correlationId?: string | null;
  /** Optional causation id, at most 1,024 UTF-8 bytes; `""` is stored as null. */
  causationId?: string | null;
}

/**
 * An event as stored: every field filled in, plus the version within its aggregate and the position
 * in the global log.
 *
 * @example
 * ```ts
 * import type { PersistedEvent } from "@eventsalsa/eventsalsa/store";
 * function describe(event: PersistedEvent): string {
 *   return `${event.globalPosition}: ${event.aggregateType}/${event.aggregateId} v${event.aggregateVersion}`;
 * }
 * ```
 */
export interface PersistedEvent {
  /** Position in the global log: unique and increasing, but not commit-ordered and not gap-free. */
  readonly globalPosition: number;
  /** The aggregate's category. */
  readonly aggregateType: string;
  /** The aggregate's identity. */
  readonly aggregateId: string;
  /** 1-based, contiguous version within the aggregate. */
  readonly aggregateVersion: number;
  /** The event's UUID. */
  readonly eventId: string;
  /** The discriminator. */
  readonly eventType: string;
  /** The payload's schema version. */
  readonly eventVersion: number;
  /**
   * The event's body. Read from PostgreSQL, it is a view of a buffer shared by the events of the
   * same read: copy it (`payload.slice()`) to keep it alone for long.
   */
  readonly payload: Uint8Array;
  /** JSON object metadata, or null. */
  readonly metadata: JsonObject | null;
  /** When the event happened (millisecond precision in JavaScript). */
  readonly createdAt: Date;
  /** Tracing id or null. */
  readonly traceId: string | null;
  /** Correlation id or null. */
  readonly correlationId: string | null;
  /** Causation id or null. */
  readonly causationId: string | null;
}

/**
 * The result of `readStream`: the aggregate's events in version order.
 *
 * @example
 * ```ts
 * import type { Stream } from "@eventsalsa/eventsalsa/store";
 * function isNew(stream: Stream): boolean {
 *   return stream.events.length === 0;
 * }
 * ```
 */
export interface Stream {
  /** Echo of the requested aggregate type. */
  readonly aggregateType: string;
  /** Echo of the requested aggregate id. */
  readonly aggregateId: string;
  /** The events, ordered by `aggregateVersion`. */
  readonly events: readonly PersistedEvent[];
  /**
   * The version of the last returned event, or 0 when none. With a `toVersion` window this is not
   * the head: use `headVersion` for that.
   */
  readonly version: number;
}

/**
 * What `append` returns.
 *
 * @example
 * ```ts
 * import type { AppendResult } from "@eventsalsa/eventsalsa/store";
 * function summary(result: AppendResult): string {
 *   return `versions ${result.fromVersion + 1}..${result.toVersion} at ${result.globalPositions}`;
 * }
 * ```
 */
export interface AppendResult {
  /** The appended events, in input order, with version and position assigned. */
  readonly events: readonly PersistedEvent[];
  /** Their global positions, in input order (strictly increasing). */
  readonly globalPositions: readonly number[];
  /** The head version before the append. */
  readonly fromVersion: number;
  /** The head version after the append. */
  readonly toVersion: number;
}

/**
 * One stream's part of `appendMany`: its expectation and its events (all for one aggregate).
 *
 * @example
 * ```ts
 * import { exact, noStream, type StreamAppend } from "@eventsalsa/eventsalsa/store";
 * const payload = new Uint8Array([1]);
 * const transfer: StreamAppend[] = [
 *   { expected: exact(3), events: [{ aggregateType: "Account", aggregateId: "a", eventType: "Debited", payload }] },
 *   { expected: noStream(), events: [{ aggregateType: "Account", aggregateId: "b", eventType: "Opened", payload }] },
 * ];
 * ```
 */
export interface StreamAppend {
  /** The expectation on this stream's head. */
  readonly expected: ExpectedVersion;
  /** The events, all for one aggregate. */
  readonly events: readonly Event[];
}

/**
 * An inclusive window of versions for `readStream`.
 *
 * @example
 * ```ts
 * import type { VersionRange } from "@eventsalsa/eventsalsa/store";
 * const lastTen: VersionRange = { fromVersion: 91, toVersion: 100 };
 * ```
 */
export interface VersionRange {
  /** First version to return (inclusive). */
  fromVersion?: number;
  /** Last version to return (inclusive). */
  toVersion?: number;
}

/**
 * Narrows `readEvents` to some aggregate types. Omitted or empty means every type.
 *
 * @example
 * ```ts
 * import type { EventFilter } from "@eventsalsa/eventsalsa/store";
 * const ordersOnly: EventFilter = { aggregateTypes: ["Order"] };
 * ```
 */
export interface EventFilter {
  /** Only events of these aggregate types. */
  aggregateTypes?: readonly string[];
}

/**
 * Options for iterating over a long range of the global log page by page.
 *
 * @example
 * ```ts
 * import type { IterateEventsOptions } from "@eventsalsa/eventsalsa/store";
 * const options: IterateEventsOptions = { afterPosition: 0, pageSize: 1000 };
 * ```
 */
export interface IterateEventsOptions extends EventFilter {
  /** Start after this position (exclusive); 0 = from the beginning. */
  afterPosition?: number;
  /** Stop after this position (inclusive); unbounded when omitted. */
  toPosition?: number;
  /** Events fetched per round trip; 500 when omitted. */
  pageSize?: number;
}

/**
 * The store port: what the PostgreSQL store and the in-memory store both implement, and what the
 * contract suite checks. `Tx` is the implementation's transaction handle.
 *
 * @example
 * ```ts
 * import type { EventStore } from "@eventsalsa/eventsalsa/store";
 * async function countOrders<Tx>(store: EventStore<Tx>, tx: Tx): Promise<number> {
 *   return (await store.readEvents(tx, 0, 1000, { aggregateTypes: ["Order"] })).length;
 * }
 * ```
 */
export interface EventStore<Tx> {
  /** Appends events to one aggregate if `expected` holds. */
  append(tx: Tx, expected: ExpectedVersion, events: readonly Event[]): Promise<AppendResult>;
  /**
   * Appends to several aggregates at once, all or nothing: each stream's expectation is checked,
   * and one that fails is a `ConcurrencyError` with nothing written. Results in input order.
   */
  appendMany(tx: Tx, appends: readonly StreamAppend[]): Promise<AppendResult[]>;
  /** Reads one aggregate's events in version order, optionally within an inclusive window. */
  readStream(
    tx: Tx,
    aggregateType: string,
    aggregateId: string,
    range?: VersionRange,
  ): Promise<Stream>;
  /** Reads up to `limit` events with position greater than `afterPosition`, ascending. */
  readEvents(
    tx: Tx,
    afterPosition: number,
    limit: number,
    filter?: EventFilter,
  ): Promise<PersistedEvent[]>;
  /** The highest visible position, or 0 when the log is empty. Not a safe checkpoint. */
  latestPosition(tx: Tx): Promise<number>;
  /** The aggregate's head version, or 0 when it does not exist. */
  headVersion(tx: Tx, aggregateType: string, aggregateId: string): Promise<number>;
  /** Iterates the global log page by page, never holding more than one page in memory. */
  iterateEvents(tx: Tx, options?: IterateEventsOptions): AsyncIterable<PersistedEvent>;
}
