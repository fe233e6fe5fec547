/**
 * One events-table row, as postgres.js returns it in array mode, turned into a `PersistedEvent`.
 * Shared by every statement that reads the events table's columns in their usual order.
 *
 * @module
 */
import { toSafeNumber } from "../internal/safe_number.ts";
import type { JsonObject, PersistedEvent } from "./types.ts";

/** The events table's columns in the order {@link eventFromRow} reads them. */
export const EVENT_COLUMNS =
  "global_position, aggregate_type, aggregate_id, aggregate_version, event_id, event_type, " +
  "event_version, payload, metadata, created_at, trace_id, correlation_id, causation_id";

/** A plain `Uint8Array` view over postgres.js's `Buffer`: no copy, and deepEqual-friendly. */
export function plainBytes(value: unknown): Uint8Array {
  const bytes = value as Uint8Array;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The event in `row[offset]` … `row[offset + 12]`: global_position, aggregate_type,
 * aggregate_id, aggregate_version, event_id, event_type, event_version, payload, metadata,
 * created_at, trace_id, correlation_id, causation_id.
 */
export function eventFromRow(row: readonly unknown[], offset = 0): PersistedEvent {
  const o = offset;
  const metadata = row[o + 8];
  return {
    globalPosition: toSafeNumber(row[o], "global_position"),
    aggregateType: row[o + 1] as string,
    aggregateId: row[o + 2] as string,
    aggregateVersion: toSafeNumber(row[o + 3], "aggregate_version"),
    eventId: row[o + 4] as string,
    eventType: row[o + 5] as string,
    eventVersion: row[o + 6] as number,
    payload: plainBytes(row[o + 7]),
    metadata: typeof metadata === "string" ? JSON.parse(metadata) : (metadata as JsonObject | null),
    createdAt: row[o + 9] as Date,
    traceId: row[o + 10] as string | null,
    correlationId: row[o + 11] as string | null,
    causationId: row[o + 12] as string | null,
  };
}
