/**
 * Appends to several streams in one statement: the SQL, its parameters and the reading of its
 * rows. `PostgresStore.appendMany` (all or nothing) and the write batcher (each stream on its own)
 * share it.
 *
 * The statement locks the existing heads of every stream (in key order: two callers never
 * deadlock on them), checks each stream's expectation against them, and writes only when the
 * checks allow: all of them (all or nothing) or each passing stream (each on its own). A failed
 * check writes nothing for its stream, raises no SQL error and draws no position. A stream created
 * concurrently between the check and the write (`noStream`) fails the statement with a unique
 * violation, reported as a conflict.
 *
 * @module
 */
import { textArrayLiteral, toHex } from "../internal/postgres_array.ts";
import { literal } from "../internal/sql_identifier.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import { ConcurrencyError, NoEventsError, ValidationError } from "./errors.ts";
import type { AppendResult } from "./types.ts";
import { appendResult, normalizeAppend, type NormalizedAppend } from "./validation.ts";

/** Validates every stream's append, and that no aggregate appears twice. */
export function normalizeAppends(appends: unknown): NormalizedAppend[] {
  if (!Array.isArray(appends)) {
    throw new ValidationError(`appends must be an array, got ${typeof appends}`);
  }
  if (appends.length === 0) throw new NoEventsError();
  const seen = new Set<string>();
  return appends.map((append: unknown, i) => {
    if (append === null || typeof append !== "object") {
      throw new ValidationError(`appends[${i}] must be an object { expected, events }`);
    }
    const { expected, events } = append as { expected?: unknown; events?: unknown };
    const batch = normalizeAppend(expected, events);
    const key = `${batch.aggregateType}\u0000${batch.aggregateId}`;
    if (seen.has(key)) {
      throw new ValidationError(
        `appends[${i}] is a second append to ${batch.aggregateType}/${batch.aggregateId}; ` +
          `put all of one aggregate's events in one entry`,
      );
    }
    seen.add(key);
    return batch;
  });
}

/** The statement over the quoted events and heads tables, notifying `channel` when given. */
export function appendManySql(events: string, heads: string, channel: string | null): string {
  const notify = channel === null
    ? "NULL"
    : `(SELECT pg_notify(${literal(channel)}, max(global_position)::text) FROM ins)`;
  return `WITH input AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::int8[])
        WITH ORDINALITY AS s(aggregate_type, aggregate_id, n, kind, expected, stream)
    ),
    cur AS (
      SELECT h.aggregate_type, h.aggregate_id, h.aggregate_version FROM ${heads} h
      WHERE (h.aggregate_type, h.aggregate_id) IN (SELECT aggregate_type, aggregate_id FROM input)
      ORDER BY h.aggregate_type COLLATE "C", h.aggregate_id COLLATE "C"
      FOR UPDATE OF h
    ),
    checked AS (
      SELECT i.*, c.aggregate_version AS current, coalesce(CASE i.kind
          WHEN 'noStream' THEN c.aggregate_version IS NULL
          WHEN 'exact' THEN c.aggregate_version = i.expected
          WHEN 'streamExists' THEN c.aggregate_version IS NOT NULL
          ELSE true END, false) AS ok
      FROM input i LEFT JOIN cur c
        ON c.aggregate_type = i.aggregate_type AND c.aggregate_id = i.aggregate_id
    ),
    go AS (
      SELECT * FROM checked
      WHERE ok AND NOT ($17::boolean AND EXISTS (SELECT 1 FROM checked WHERE NOT ok))
    ),
    updated AS (
      UPDATE ${heads} h SET aggregate_version = h.aggregate_version + g.n, updated_at = now()
      FROM go g
      WHERE g.current IS NOT NULL
        AND h.aggregate_type = g.aggregate_type AND h.aggregate_id = g.aggregate_id
      RETURNING h.aggregate_type, h.aggregate_id, h.aggregate_version
    ),
    created_any AS (
      INSERT INTO ${heads} AS h (aggregate_type, aggregate_id, aggregate_version)
      SELECT aggregate_type, aggregate_id, n FROM go WHERE current IS NULL AND kind = 'any'
      ORDER BY aggregate_type COLLATE "C", aggregate_id COLLATE "C"
      ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
        SET aggregate_version = h.aggregate_version + excluded.aggregate_version, updated_at = now()
      RETURNING h.aggregate_type, h.aggregate_id, h.aggregate_version
    ),
    created AS (
      INSERT INTO ${heads} (aggregate_type, aggregate_id, aggregate_version)
      SELECT aggregate_type, aggregate_id, n FROM go WHERE current IS NULL AND kind <> 'any'
      ORDER BY aggregate_type COLLATE "C", aggregate_id COLLATE "C"
      RETURNING aggregate_type, aggregate_id, aggregate_version
    ),
    head AS (
      SELECT g.stream, g.aggregate_type, g.aggregate_id, g.n, x.aggregate_version
      FROM go g JOIN (
        SELECT * FROM updated UNION ALL SELECT * FROM created_any UNION ALL SELECT * FROM created
      ) x ON x.aggregate_type = g.aggregate_type AND x.aggregate_id = g.aggregate_id
    ),
    ins AS (
      INSERT INTO ${events} (aggregate_type, aggregate_id, aggregate_version, event_id, event_type,
        event_version, payload, metadata, created_at, trace_id, correlation_id, causation_id)
      SELECT h.aggregate_type, h.aggregate_id, h.aggregate_version - h.n + e.ordinal, e.event_id,
        e.event_type, e.event_version, decode(e.payload, 'hex'), e.metadata::jsonb, e.created_at,
        e.trace_id, e.correlation_id, e.causation_id
      FROM head h JOIN (
        SELECT unnest($6::int8[]) AS stream, unnest($7::int8[]) AS ordinal,
          unnest($8::uuid[]) AS event_id, unnest($9::text[]) AS event_type,
          unnest($10::int4[]) AS event_version, unnest($11::text[]) AS payload,
          unnest($12::text[]) AS metadata, unnest($13::timestamptz[]) AS created_at,
          unnest($14::text[]) AS trace_id, unnest($15::text[]) AS correlation_id,
          unnest($16::text[]) AS causation_id
      ) e ON e.stream = h.stream
      ORDER BY h.stream, e.ordinal
      RETURNING global_position, aggregate_type, aggregate_id, aggregate_version
    )
    SELECT true, global_position, aggregate_type, aggregate_id, aggregate_version, ${notify}
    FROM ins
    UNION ALL
    SELECT false, stream, aggregate_type, aggregate_id, current, NULL FROM checked WHERE NOT ok`;
}

/** The statement's parameters for `batches`. */
export function appendManyParams(
  batches: readonly NormalizedAppend[],
  allOrNothing: boolean,
): unknown[] {
  const all = batches.flatMap((batch, s) =>
    batch.events.map((event, i) => ({ event, stream: s + 1, ordinal: i + 1 }))
  );
  const column = (values: readonly (string | null)[]) => textArrayLiteral(values);
  return [
    column(batches.map((b) => b.aggregateType)),
    column(batches.map((b) => b.aggregateId)),
    column(batches.map((b) => String(b.events.length))),
    column(batches.map((b) => b.expected.kind)),
    column(batches.map((b) => b.expected.kind === "exact" ? String(b.expected.version) : null)),
    column(all.map((e) => String(e.stream))),
    column(all.map((e) => String(e.ordinal))),
    column(all.map((e) => e.event.eventId)),
    column(all.map((e) => e.event.eventType)),
    column(all.map((e) => String(e.event.eventVersion))),
    column(all.map((e) => toHex(e.event.payload))),
    column(all.map((e) => e.event.metadataJson)),
    column(all.map((e) => e.event.createdAt.toISOString())),
    column(all.map((e) => e.event.traceId)),
    column(all.map((e) => e.event.correlationId)),
    column(all.map((e) => e.event.causationId)),
    allOrNothing,
  ];
}

/** Each stream's result, or its conflict, from the statement's rows. */
export function readAppendManyRows(
  batches: readonly NormalizedAppend[],
  rows: readonly (readonly unknown[])[],
): Array<AppendResult | ConcurrencyError | null> {
  const index = new Map(batches.map((b, i) => [`${b.aggregateType}\u0000${b.aggregateId}`, i]));
  const appended = batches.map(() => [] as { position: number; version: number }[]);
  const outcome: Array<AppendResult | ConcurrencyError | null> = batches.map(() => null);
  for (const row of rows) {
    if (row[0] === true) {
      const i = index.get(`${row[2]}\u0000${row[3]}`)!;
      appended[i].push({
        position: toSafeNumber(row[1], "global_position"),
        version: toSafeNumber(row[4], "aggregate_version"),
      });
    } else {
      const i = toSafeNumber(row[1], "stream") - 1;
      const b = batches[i];
      const actual = row[4] === null ? 0 : toSafeNumber(row[4], "aggregate_version");
      outcome[i] = new ConcurrencyError(b.aggregateType, b.aggregateId, b.expected, actual);
    }
  }
  appended.forEach((list, i) => {
    if (list.length === 0) return;
    list.sort((a, b) => a.version - b.version);
    outcome[i] = appendResult(batches[i], list[0].version - 1, list.map((e) => e.position));
  });
  // null: the stream passed its check but was not written (another stream failed, all or nothing).
  return outcome;
}
