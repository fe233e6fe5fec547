/**
 * Events-table rows, as postgres.js returns them in array mode, turned into `PersistedEvent`s.
 * Shared by every statement that reads the events table's columns in their usual order.
 *
 * The payload is read as hex text (`encode(payload, 'hex')`), not as `bytea`: a batch's payloads
 * then decode into one buffer, each event's payload a view of it (see ../internal/hex.ts).
 *
 * @module
 */
import { bytesFromHex } from "../internal/hex.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import type { JsonObject, PersistedEvent } from "./types.ts";

/** The events table's columns in the order {@link eventsFromRows} reads them. */
export const EVENT_COLUMNS =
  "global_position, aggregate_type, aggregate_id, aggregate_version, event_id, event_type, " +
  "event_version, encode(payload, 'hex') AS payload, metadata, created_at, trace_id, " +
  "correlation_id, causation_id";

/**
 * The event in each of `rows`, read from `row[offset]` … `row[offset + 12]`: global_position,
 * aggregate_type, aggregate_id, aggregate_version, event_id, event_type, event_version, payload
 * (hex text), metadata, created_at, trace_id, correlation_id, causation_id.
 */
export function eventsFromRows(
  rows: readonly (readonly unknown[])[],
  offset = 0,
): PersistedEvent[] {
  const o = offset;
  const payloads = bytesFromHex(rows.map((row) => row[o + 7] as string));
  return rows.map((row, i): PersistedEvent => {
    const metadata = row[o + 8];
    return {
      globalPosition: toSafeNumber(row[o], "global_position"),
      aggregateType: row[o + 1] as string,
      aggregateId: row[o + 2] as string,
      aggregateVersion: toSafeNumber(row[o + 3], "aggregate_version"),
      eventId: row[o + 4] as string,
      eventType: row[o + 5] as string,
      eventVersion: row[o + 6] as number,
      payload: payloads[i],
      metadata: typeof metadata === "string"
        ? JSON.parse(metadata)
        : (metadata as JsonObject | null),
      createdAt: row[o + 9] as Date,
      traceId: row[o + 10] as string | null,
      correlationId: row[o + 11] as string | null,
      causationId: row[o + 12] as string | null,
    };
  });
}
