import { IdentifierError, literal, parseIdentifier } from "../internal/sql_identifier.ts";
import { toSafeNumber } from "../internal/safe_number.ts";
import { textArrayLiteral, toHex } from "../internal/postgres_array.ts";
import type { SqlExecutor } from "../internal/postgres_client.ts";
import { run } from "../internal/postgres_query.ts";
import {
  checkTelemetry,
  inSpan,
  type Telemetry,
  type TelemetryAttributes,
  type TelemetryTracer,
  traceIdOf,
} from "../internal/telemetry.ts";
import { ConcurrencyError, DuplicateEventIdError, ValidationError } from "./errors.ts";
import { describeExpectedVersion, type ExpectedVersion } from "./expected_version.ts";
import { iteratePages } from "./iterate.ts";
import type { Logger } from "./logger.ts";
import { storeTables } from "./migration.ts";
import type {
  AppendResult,
  Event,
  EventFilter,
  EventStore,
  IterateEventsOptions,
  PersistedEvent,
  Stream,
  StreamAppend,
  VersionRange,
} from "./types.ts";
import {
  appendResult,
  checkAggregate,
  checkReadEvents,
  checkReadStream,
  normalizeAppend,
  type NormalizedAppend,
  type NormalizedEvent,
} from "./validation.ts";
import { EVENT_COLUMNS, eventsFromRows } from "./event_row.ts";
import {
  appendManyParams,
  appendManySql,
  normalizeAppends,
  readAppendManyRows,
} from "./append_many.ts";

export type { SqlExecutor };

/**
 * Options for {@link PostgresStore}.
 *
 * @example
 * ```ts
 * import { PostgresStore, type PostgresStoreOptions } from "@eventsalsa/eventsalsa/store";
 * const options: PostgresStoreOptions = { eventsTable: "app.events", notifyChannel: "events" };
 * const store = new PostgresStore(options);
 * ```
 */
export interface PostgresStoreOptions {
  /** Events table, optionally schema-qualified; `events` when omitted. */
  eventsTable?: string;
  /** Aggregate heads table, optionally schema-qualified; `aggregate_heads` when omitted. */
  headsTable?: string;
  /** When set, every append sends `NOTIFY <channel>, '<last position>'`, delivered on commit. */
  notifyChannel?: string | null;
  /** Receives debug/info/error records; no logging when omitted. */
  logger?: Logger;
  /**
   * OpenTelemetry: with a `tracer`, spans for `append`, `readStream` and `readEvents`, and an
   * append fills each event's `traceId` it was not given from the active trace. The store records
   * no metrics (a `meter` is ignored). No telemetry when omitted.
   */
  telemetry?: Telemetry;
}

type Row = unknown[];

/** `{1,2,…,n}`: the ordinals of a batch, as an `int8[]` literal. */
function ordinals(count: number): string {
  let out = "{1";
  for (let i = 2; i <= count; i++) out += "," + i;
  return out + "}";
}

/** The batch with `traceId` set on every event that has none (the same batch when all have one). */
function withTraceId(batch: NormalizedAppend, traceId: string): NormalizedAppend {
  if (batch.events.every((event) => event.traceId !== null)) return batch;
  const events = batch.events.map((event) =>
    event.traceId === null ? { ...event, traceId } : event
  );
  return { ...batch, events };
}

interface PostgresErrorLike {
  code?: string;
  constraint_name?: string;
  detail?: string;
}

/** The multi-stream statement of a store (set once the class is defined). */
let appendManySqlOf: (store: PostgresStore) => string;

/**
 * The PostgreSQL event store. Stateless apart from its configuration, so one instance serves every
 * connection. Every method takes the caller's postgres.js transaction (`sql.begin(tx => ...)`) and
 * never commits it. Given the pool instead, an append is sent alone: one statement is atomic by
 * itself, so it needs no BEGIN and COMMIT (one round trip, not three).
 *
 * An append is one statement and one round trip: it reserves the version range on the heads table
 * and inserts every event from arrays, so a version conflict writes nothing, raises no SQL error
 * (the transaction stays usable) and draws no position.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { exact, noStream, PostgresStore } from "@eventsalsa/eventsalsa/store";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * const store = new PostgresStore();
 * const payload = new TextEncoder().encode('{"total":42}');
 * await sql.begin(async (tx) => {
 *   await store.append(tx, noStream(), [
 *     { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderPlaced", payload },
 *   ]);
 * });
 * const stream = await store.readStream(sql, "Order", "o-1");
 * await sql.begin((tx) =>
 *   store.append(tx, exact(stream.version), [
 *     { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderShipped", payload },
 *   ])
 * );
 * ```
 */
export class PostgresStore implements EventStore<SqlExecutor> {
  /** The events table as configured (unquoted text). */
  readonly eventsTable: string;
  /** The heads table as configured (unquoted text). */
  readonly headsTable: string;
  /** The NOTIFY channel, or null when notifications are off. */
  readonly notifyChannel: string | null;
  readonly #logger: Logger | undefined;
  readonly #tracer: TelemetryTracer | null;
  readonly #appendSql: Record<ExpectedVersion["kind"], string>;
  readonly #appendSingleSql: Record<ExpectedVersion["kind"], string>;
  readonly #headSql: string;
  readonly #appendManySql: string;

  static {
    appendManySqlOf = (store) => store.#appendManySql;
  }
  readonly #readStreamSql: string;
  readonly #readEventsSql: string;
  readonly #readEventsFilteredSql: string;
  readonly #latestPositionSql: string;

  /** Validates the options (table and channel names) and prepares the SQL text once. */
  constructor(options: PostgresStoreOptions = {}) {
    const { events, heads } = storeTables(options);
    let channel: string | null = null;
    if (options.notifyChannel !== undefined && options.notifyChannel !== null) {
      try {
        channel = parseIdentifier(options.notifyChannel, "notifyChannel", { allowSchema: false })
          .name;
      } catch (error) {
        throw error instanceof IdentifierError ? new ValidationError(error.message) : error;
      }
    }
    this.eventsTable = events.text;
    this.headsTable = heads.text;
    this.notifyChannel = channel;
    this.#logger = options.logger;
    this.#tracer =
      checkTelemetry(options.telemetry, (message) => new ValidationError(message))?.tracer ?? null;

    const E = events.quoted;
    const H = heads.quoted;
    const key = "aggregate_type = $1 AND aggregate_id = $2";
    // $13 is the expected version of `exact`; a batch also sends its ordinals (1..n) after it.
    const headWrites: Record<ExpectedVersion["kind"], string> = {
      noStream:
        `INSERT INTO ${H} (aggregate_type, aggregate_id, aggregate_version) VALUES ($1, $2, $3)
        ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING`,
      exact: `UPDATE ${H} SET aggregate_version = aggregate_version + $3, updated_at = now()
        WHERE ${key} AND aggregate_version = $13`,
      any:
        `INSERT INTO ${H} AS h (aggregate_type, aggregate_id, aggregate_version) VALUES ($1, $2, $3)
        ON CONFLICT (aggregate_type, aggregate_id)
        DO UPDATE SET aggregate_version = h.aggregate_version + excluded.aggregate_version, updated_at = now()`,
      streamExists: `UPDATE ${H} SET aggregate_version = aggregate_version + $3, updated_at = now()
        WHERE ${key}`,
    };
    // The heads write comes first and the insert reads its output, so the transaction has an xid
    // before any position is drawn (the gap rule's P1, docs/design.md), and a conflict (no head
    // row) draws none.
    // The last event (its version is the new head) sends the one notification of the append.
    const notify = channel === null ? "" : `,
        CASE WHEN aggregate_version = (SELECT aggregate_version FROM head)
          THEN pg_notify(${literal(channel)}, global_position::text) END`;
    // A batch travels as arrays (one statement text for every size), expanded by set-returning
    // functions in a select list. Measured on PostgreSQL 15 (bench/README.md): the equivalent
    // `FROM unnest(...) WITH ORDINALITY` costs ~30 % more server CPU at 8 connections, and a
    // `generate_series(1, $3)` ordinal makes the planner (which then guesses 1,000 rows for the
    // generic plan) replan every execution; an `unnest` of a sent array is guessed at 10 rows like
    // the others, so the prepared statement keeps its generic plan. Rows leave the select list in
    // array order and a clause-less join with the one head row can only be a nested loop, so
    // positions are drawn in version order without a sort.
    const batchInput = (ordinals: number) =>
      `LATERAL (SELECT unnest($${ordinals}::int8[]) AS ordinal,
          unnest($4::uuid[]) AS event_id, unnest($5::text[]) AS event_type,
          unnest($6::int4[]) AS event_version, unnest($7::text[]) AS payload,
          unnest($8::text[]) AS metadata, unnest($9::timestamptz[]) AS created_at,
          unnest($10::text[]) AS trace_id, unnest($11::text[]) AS correlation_id,
          unnest($12::text[]) AS causation_id) AS input`;
    // A single event, the common case, as scalars: no arrays to parse.
    const singleInput = `(SELECT $4::uuid AS event_id, $5::text AS event_type,
          $6::int4 AS event_version, $7::text AS payload, $8::text AS metadata,
          $9::timestamptz AS created_at, $10::text AS trace_id, $11::text AS correlation_id,
          $12::text AS causation_id, 1::bigint AS ordinal) AS input`;
    // One statement: the heads write is the CTE the insert reads from, so a conflict (no head row)
    // inserts nothing and raises nothing; the returned rows are the appended events.
    const appendSql = (headWrite: string, input: string) =>
      `WITH head AS (${headWrite} RETURNING aggregate_version)
      INSERT INTO ${E} (aggregate_type, aggregate_id, aggregate_version, event_id, event_type,
        event_version, payload, metadata, created_at, trace_id, correlation_id, causation_id)
      SELECT $1, $2, head.aggregate_version - $3 + input.ordinal, input.event_id, input.event_type,
        input.event_version, decode(input.payload, 'hex'), input.metadata::jsonb, input.created_at,
        input.trace_id, input.correlation_id, input.causation_id
      FROM head CROSS JOIN ${input}
      RETURNING global_position, aggregate_version${notify}`;
    const variants = (input: (kind: ExpectedVersion["kind"]) => string) => ({
      noStream: appendSql(headWrites.noStream, input("noStream")),
      exact: appendSql(headWrites.exact, input("exact")),
      any: appendSql(headWrites.any, input("any")),
      streamExists: appendSql(headWrites.streamExists, input("streamExists")),
    });
    this.#appendSql = variants((kind) => batchInput(kind === "exact" ? 14 : 13));
    this.#appendSingleSql = variants(() => singleInput);
    this.#headSql = `SELECT aggregate_version FROM ${H} WHERE ${key}`;
    this.#appendManySql = appendManySql(E, H, channel);
    this.#readStreamSql = `SELECT ${EVENT_COLUMNS} FROM ${E} WHERE ${key}
      AND aggregate_version BETWEEN $3 AND $4 ORDER BY aggregate_version`;
    this.#readEventsSql = `SELECT ${EVENT_COLUMNS} FROM ${E} WHERE global_position > $1
      ORDER BY global_position LIMIT $2`;
    this.#readEventsFilteredSql = `SELECT ${EVENT_COLUMNS} FROM ${E} WHERE global_position > $1
      AND aggregate_type = ANY($3::text[]) ORDER BY global_position LIMIT $2`;
    this.#latestPositionSql =
      `SELECT global_position FROM ${E} ORDER BY global_position DESC LIMIT 1`;
  }

  /**
   * Appends `events` (all for one aggregate) if `expected` holds for its head. Throws
   * `ValidationError`/`NoEventsError` before any SQL for bad input, `ConcurrencyError` when the
   * expectation fails (nothing written, transaction still usable), `DuplicateEventIdError` when an
   * event id already exists (transaction aborted by PostgreSQL).
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { any, PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const result = await sql.begin((tx) =>
   *   new PostgresStore().append(tx, any(), [
   *     { aggregateType: "Cart", aggregateId: "c-1", eventType: "ItemAdded", payload: new Uint8Array([1]) },
   *   ])
   * );
   * console.log(result.toVersion, result.globalPositions);
   * ```
   */
  append(
    tx: SqlExecutor,
    expected: ExpectedVersion,
    events: readonly Event[],
  ): Promise<AppendResult> {
    let batch: NormalizedAppend;
    try {
      batch = normalizeAppend(expected, events);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#tracer !== null) return this.#tracedAppend(this.#tracer, tx, batch);
    // One statement: given the pool it runs alone, atomic by itself, with no BEGIN and COMMIT
    // around it (one round trip instead of three).
    return this.#append(tx, batch);
  }

  /**
   * Appends to several aggregates in one statement, all or nothing: every stream's expectation is
   * checked under lock, and if one fails nothing is written, no position is drawn, and the first
   * failing stream's `ConcurrencyError` is thrown (the transaction stays usable). Results come in
   * input order. One aggregate may appear once. Given the pool, it is sent alone (one round trip).
   *
   * A `noStream()` stream created by someone else between the check and the write fails the
   * statement (PostgreSQL's unique violation): that is a `ConcurrencyError` too, but, as with a
   * duplicate event id, the transaction is aborted.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { exact, noStream, PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const store = new PostgresStore();
   * const payload = new TextEncoder().encode('{"amount":10}');
   * const [debit, open] = await store.appendMany(sql, [
   *   { expected: exact(3), events: [{ aggregateType: "Account", aggregateId: "a", eventType: "Debited", payload }] },
   *   { expected: noStream(), events: [{ aggregateType: "Account", aggregateId: "b", eventType: "Opened", payload }] },
   * ]);
   * console.log(debit.toVersion, open.toVersion);
   * ```
   */
  async appendMany(tx: SqlExecutor, appends: readonly StreamAppend[]): Promise<AppendResult[]> {
    const batches = normalizeAppends(appends);
    const outcomes = await appendStreams(this, tx, batches, true);
    const failed = outcomes.find((o) => o instanceof Error);
    if (failed !== undefined) throw failed;
    return outcomes as AppendResult[];
  }

  /** What every store span carries. */
  #spanAttributes(): TelemetryAttributes {
    return { "db.system.name": "postgresql", "db.collection.name": this.eventsTable };
  }

  /**
   * `append` in a span, a child of the caller's active span. Events given no `traceId` get the
   * span's: the caller's active trace, or the append's own new trace when none is active.
   */
  #tracedAppend(
    tracer: TelemetryTracer,
    tx: SqlExecutor,
    batch: NormalizedAppend,
  ): Promise<AppendResult> {
    const attributes = this.#spanAttributes();
    attributes["eventsalsa.aggregate_type"] = batch.aggregateType;
    attributes["eventsalsa.aggregate_id"] = batch.aggregateId;
    attributes["eventsalsa.event_count"] = batch.events.length;
    attributes["eventsalsa.expected_version"] = describeExpectedVersion(batch.expected);
    return inSpan(tracer, "eventsalsa.store.append", attributes, async (span) => {
      const traceId = traceIdOf(span);
      const filled = traceId === null ? batch : withTraceId(batch, traceId);
      const result = await this.#append(tx, filled);
      const positions = result.globalPositions;
      span.setAttribute("eventsalsa.from_version", result.fromVersion);
      span.setAttribute("eventsalsa.to_version", result.toVersion);
      span.setAttribute("eventsalsa.first_position", positions[0]);
      span.setAttribute("eventsalsa.last_position", positions[positions.length - 1]);
      return result;
    });
  }

  async #append(tx: SqlExecutor, batch: NormalizedAppend): Promise<AppendResult> {
    const { aggregateType, aggregateId, expected, events } = batch;
    const log = this.#logger;
    log?.debug?.("append starting", {
      aggregateType,
      aggregateId,
      eventCount: events.length,
      expected: describeExpectedVersion(expected),
    });
    const single = events.length === 1;
    const column = <T>(pick: (event: NormalizedEvent) => T, text: (value: T) => string | null) =>
      single ? text(pick(events[0])) : textArrayLiteral(events.map((e) => text(pick(e))));
    const same = (value: string | null) => value;
    const params: unknown[] = [
      aggregateType,
      aggregateId,
      events.length,
      column((e) => e.eventId, same),
      column((e) => e.eventType, same),
      column((e) => e.eventVersion, String),
      column((e) => e.payload, toHex),
      column((e) => e.metadataJson, same),
      column((e) => e.createdAt, (date) => date.toISOString()),
      column((e) => e.traceId, same),
      column((e) => e.correlationId, same),
      column((e) => e.causationId, same),
    ];
    if (expected.kind === "exact") params.push(expected.version);
    if (!single) params.push(ordinals(events.length));
    let rows: Row[];
    try {
      const text = (single ? this.#appendSingleSql : this.#appendSql)[expected.kind];
      rows = await run(tx, text, params);
    } catch (error) {
      const pgError = error as PostgresErrorLike;
      if (pgError.code === "23505") {
        if (
          pgError.constraint_name?.endsWith("event_id_key") ||
          pgError.detail?.includes("(event_id)")
        ) {
          const eventId = /\(event_id\)=\(([^)]+)\)/.exec(pgError.detail ?? "")?.[1] ?? null;
          log?.error?.("duplicate event id", { aggregateType, aggregateId, eventId });
          throw new DuplicateEventIdError(aggregateType, aggregateId, eventId);
        }
        // A version collision in the events table: the heads table was out of step with it.
        log?.error?.("concurrency conflict", { aggregateType, aggregateId });
        throw new ConcurrencyError(aggregateType, aggregateId, expected, null);
      }
      throw error;
    }
    if (rows.length === 0) {
      // Conflict: nothing was written. A fresh statement sees the winner's committed head.
      const actual = await this.headVersion(tx, aggregateType, aggregateId);
      log?.error?.("concurrency conflict", {
        aggregateType,
        aggregateId,
        expected: describeExpectedVersion(expected),
        actualVersion: actual,
      });
      throw new ConcurrencyError(aggregateType, aggregateId, expected, actual);
    }
    // Rows come back in insertion order; order by version anyway rather than rely on it.
    const appended = rows.map((row) => ({
      position: toSafeNumber(row[0], "global_position"),
      version: toSafeNumber(row[1], "aggregate_version"),
    })).sort((a, b) => a.version - b.version);
    const fromVersion = appended[0].version - 1;
    const globalPositions = appended.map((row) => row.position);
    const result = appendResult(batch, fromVersion, globalPositions);
    log?.info?.("events appended", {
      aggregateType,
      aggregateId,
      eventCount: events.length,
      fromVersion,
      toVersion: result.toVersion,
      globalPositions,
    });
    return result;
  }

  /**
   * Reads an aggregate's events in version order; `fromVersion`/`toVersion` are inclusive. A missing
   * aggregate or an empty window gives an empty stream with version 0.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const stream = await new PostgresStore().readStream(sql, "Order", "o-1", { fromVersion: 2 });
   * ```
   */
  readStream(
    tx: SqlExecutor,
    aggregateType: string,
    aggregateId: string,
    range?: VersionRange,
  ): Promise<Stream> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#readStream(tx, aggregateType, aggregateId, range);
    return inSpan(tracer, "eventsalsa.store.read_stream", this.#spanAttributes(), async (span) => {
      const stream = await this.#readStream(tx, aggregateType, aggregateId, range);
      span.setAttribute("eventsalsa.aggregate_type", stream.aggregateType);
      span.setAttribute("eventsalsa.aggregate_id", stream.aggregateId);
      span.setAttribute("eventsalsa.event_count", stream.events.length);
      span.setAttribute("eventsalsa.stream_version", stream.version);
      return stream;
    });
  }

  async #readStream(
    tx: SqlExecutor,
    aggregateType: string,
    aggregateId: string,
    range: VersionRange | undefined,
  ): Promise<Stream> {
    const args = checkReadStream(aggregateType, aggregateId, range);
    this.#logger?.debug?.("reading stream", args);
    const rows = await run(tx, this.#readStreamSql, [
      args.aggregateType,
      args.aggregateId,
      args.fromVersion,
      args.toVersion,
    ]);
    const events = eventsFromRows(rows);
    return {
      aggregateType: args.aggregateType,
      aggregateId: args.aggregateId,
      events,
      version: events.length === 0 ? 0 : events[events.length - 1].aggregateVersion,
    };
  }

  /**
   * Reads up to `limit` events with `globalPosition > afterPosition`, in position order. Positions
   * are not commit-ordered: the highest position read is not a safe checkpoint (the worker's gap
   * rule handles that).
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const page = await new PostgresStore().readEvents(sql, 0, 100, { aggregateTypes: ["Order"] });
   * ```
   */
  readEvents(
    tx: SqlExecutor,
    afterPosition: number,
    limit: number,
    filter?: EventFilter,
  ): Promise<PersistedEvent[]> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#readEvents(tx, afterPosition, limit, filter);
    return inSpan(tracer, "eventsalsa.store.read_events", this.#spanAttributes(), async (span) => {
      const events = await this.#readEvents(tx, afterPosition, limit, filter);
      span.setAttribute("eventsalsa.after_position", afterPosition);
      span.setAttribute("eventsalsa.limit", limit);
      const types = filter?.aggregateTypes;
      if (types !== undefined && types.length > 0) {
        span.setAttribute("eventsalsa.aggregate_types", types.join(","));
      }
      span.setAttribute("eventsalsa.event_count", events.length);
      if (events.length > 0) {
        span.setAttribute("eventsalsa.last_position", events[events.length - 1].globalPosition);
      }
      return events;
    });
  }

  async #readEvents(
    tx: SqlExecutor,
    afterPosition: number,
    limit: number,
    filter: EventFilter | undefined,
  ): Promise<PersistedEvent[]> {
    const args = checkReadEvents(afterPosition, limit, filter);
    if (args.limit === 0) return [];
    this.#logger?.debug?.("reading events", args);
    const rows = args.aggregateTypes === null
      ? await run(tx, this.#readEventsSql, [args.afterPosition, args.limit])
      : await run(tx, this.#readEventsFilteredSql, [
        args.afterPosition,
        args.limit,
        textArrayLiteral(args.aggregateTypes),
      ]);
    return eventsFromRows(rows);
  }

  /**
   * The highest visible global position, or 0 for an empty log.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const position = await new PostgresStore().latestPosition(postgres(process.env.DATABASE_URL!));
   * ```
   */
  async latestPosition(tx: SqlExecutor): Promise<number> {
    const rows = await run(tx, this.#latestPositionSql, []);
    return rows.length === 0 ? 0 : toSafeNumber(rows[0][0], "global_position");
  }

  /**
   * The aggregate's head version (0 when it does not exist), as the caller's transaction sees it.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * const version = await new PostgresStore().headVersion(sql, "Order", "o-1");
   * ```
   */
  async headVersion(tx: SqlExecutor, aggregateType: string, aggregateId: string): Promise<number> {
    const args = checkAggregate(aggregateType, aggregateId);
    const rows = await run(tx, this.#headSql, [args.aggregateType, args.aggregateId]);
    return rows.length === 0 ? 0 : toSafeNumber(rows[0][0], "aggregate_version");
  }

  /**
   * Iterates the global log in pages (`pageSize`, default 500), so a replay of millions of events
   * holds one page in memory at a time.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const sql = postgres(process.env.DATABASE_URL!);
   * for await (const event of new PostgresStore().iterateEvents(sql, { pageSize: 1000 })) {
   *   console.log(event.globalPosition);
   * }
   * ```
   */
  iterateEvents(tx: SqlExecutor, options?: IterateEventsOptions): AsyncIterable<PersistedEvent> {
    return iteratePages(
      (after, limit, filter) => this.readEvents(tx, after, limit, filter),
      options,
    );
  }
}

/**
 * The statement behind `appendMany` and the write batcher: each stream's result, or its
 * `ConcurrencyError`; with `allOrNothing` a stream that passed its check but was not written
 * (another failed) is null. Throws `DuplicateEventIdError` when the whole statement failed on an
 * event id. Internal: validated input only.
 */
export async function appendStreams(
  store: PostgresStore,
  tx: SqlExecutor,
  batches: readonly NormalizedAppend[],
  allOrNothing: boolean,
): Promise<Array<AppendResult | ConcurrencyError | null>> {
  let rows: unknown[][];
  try {
    rows = await run(tx, appendManySqlOf(store), appendManyParams(batches, allOrNothing));
  } catch (error) {
    const pgError = error as PostgresErrorLike;
    if (pgError.code !== "23505") throw error;
    const detail = pgError.detail ?? "";
    const eventId = /\(event_id\)=\(([^)]+)\)/.exec(detail)?.[1];
    if (eventId !== undefined || pgError.constraint_name?.endsWith("event_id_key")) {
      const owner = batches.find((b) => b.events.some((e) => e.eventId === eventId)) ??
        batches[0];
      throw new DuplicateEventIdError(owner.aggregateType, owner.aggregateId, eventId ?? null);
    }
    // A head created concurrently: a conflict on the stream the key names.
    const key = /\(aggregate_type, aggregate_id\)=\((.*)\)/.exec(detail)?.[1] ?? "";
    const hit = batches.find((b) => key === `${b.aggregateType}, ${b.aggregateId}`) ?? batches[0];
    throw new ConcurrencyError(hit.aggregateType, hit.aggregateId, hit.expected, null);
  }
  return readAppendManyRows(batches, rows);
}
