/**
 * Input checks shared by every store implementation. They run before any SQL, so bad input never
 * writes anything and never aborts the caller's transaction.
 *
 * @module
 */
import { NoEventsError, ValidationError } from "./errors.ts";
import { checkExpectedVersion, type ExpectedVersion } from "./expected_version.ts";
import type {
  AppendResult,
  Event,
  EventFilter,
  JsonObject,
  PersistedEvent,
  VersionRange,
} from "./types.ts";

/** An event after validation: defaults applied, every field present. */
export interface NormalizedEvent {
  readonly eventId: string;
  readonly eventType: string;
  readonly eventVersion: number;
  readonly payload: Uint8Array;
  readonly metadata: JsonObject | null;
  /** `metadata` serialized once, for the database. */
  readonly metadataJson: string | null;
  readonly createdAt: Date;
  readonly traceId: string | null;
  readonly correlationId: string | null;
  readonly causationId: string | null;
}

/** A validated append call. */
export interface NormalizedAppend {
  readonly aggregateType: string;
  readonly aggregateId: string;
  readonly expected: ExpectedVersion;
  readonly events: readonly NormalizedEvent[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_INT4 = 2147483647;

/** A string PostgreSQL `text` stores unchanged: no NUL character, no lone surrogate. */
function checkText(value: unknown, what: string, allowEmpty = false): string {
  if (typeof value !== "string") {
    throw new ValidationError(`${what} must be a string, got ${typeName(value)}`);
  }
  if (!allowEmpty && value.length === 0) throw new ValidationError(`${what} must not be empty`);
  if (value.includes("\u0000")) throw new ValidationError(`${what} must not contain NUL (\\u0000)`);
  if (!value.isWellFormed()) {
    throw new ValidationError(`${what} contains a lone UTF-16 surrogate`);
  }
  return value;
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof Uint8Array) return "Uint8Array";
  return typeof value === "object" ? (value.constructor?.name ?? "object") : typeof value;
}

function optionalText(value: unknown, what: string): string | null {
  if (value === undefined || value === null || value === "") return null;
  return checkText(value, what);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Checks that `value` is JSON that jsonb stores without loss or error. */
function checkJson(value: unknown, path: string, seen: Set<object>): void {
  switch (typeof value) {
    case "string":
      checkText(value, path, true);
      return;
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw new ValidationError(`${path} must be a finite number`);
      return;
    case "object":
      if (value === null) return;
      if (seen.has(value)) throw new ValidationError(`${path} is a circular reference`);
      seen.add(value);
      if (Array.isArray(value)) {
        value.forEach((item, i) => checkJson(item, `${path}[${i}]`, seen));
      } else if (isPlainObject(value)) {
        for (const [key, item] of Object.entries(value)) {
          checkText(key, `${path} key`, true);
          checkJson(item, `${path}.${key}`, seen);
        }
      } else {
        throw new ValidationError(`${path} must be JSON, got ${typeName(value)}`);
      }
      seen.delete(value);
      return;
    default:
      throw new ValidationError(`${path} must be JSON, got ${typeof value}`);
  }
}

/** Checks one event's metadata: a plain JSON object, or null/undefined for none. */
export function checkMetadata(metadata: unknown, what: string): JsonObject | null {
  if (metadata === undefined || metadata === null) return null;
  if (!isPlainObject(metadata)) {
    throw new ValidationError(
      `${what} must be a plain JSON object or null, got ${typeName(metadata)}`,
    );
  }
  checkJson(metadata, what, new Set());
  return metadata as JsonObject;
}

function checkEvent(raw: unknown, index: number): NormalizedEvent & {
  aggregateType: string;
  aggregateId: string;
} {
  const where = `event ${index}`;
  if (typeof raw !== "object" || raw === null) {
    throw new ValidationError(`${where} must be an object, got ${typeName(raw)}`);
  }
  const event = raw as Event;
  const aggregateType = checkText(event.aggregateType, `${where}: aggregateType`);
  const aggregateId = checkText(event.aggregateId, `${where}: aggregateId`);
  const eventType = checkText(event.eventType, `${where}: eventType`);
  let eventId: string;
  if (event.eventId === undefined) eventId = crypto.randomUUID();
  else if (typeof event.eventId === "string" && UUID.test(event.eventId)) {
    eventId = event.eventId.toLowerCase();
  } else {
    throw new ValidationError(
      `${where}: eventId must be a UUID string, got ${String(event.eventId)}`,
    );
  }
  const eventVersion = event.eventVersion ?? 1;
  if (!Number.isInteger(eventVersion) || eventVersion < 1 || eventVersion > MAX_INT4) {
    throw new ValidationError(
      `${where}: eventVersion must be an integer from 1 to ${MAX_INT4}, got ${
        String(eventVersion)
      }`,
    );
  }
  if (!(event.payload instanceof Uint8Array)) {
    throw new ValidationError(
      `${where}: payload must be a Uint8Array, got ${typeName(event.payload)}`,
    );
  }
  const metadata = checkMetadata(event.metadata, `${where}: metadata`);
  const createdAt = event.createdAt ?? new Date();
  if (!(createdAt instanceof Date) || Number.isNaN(createdAt.getTime())) {
    throw new ValidationError(`${where}: createdAt must be a valid Date`);
  }
  return {
    aggregateType,
    aggregateId,
    eventId,
    eventType,
    eventVersion,
    payload: event.payload,
    metadata,
    metadataJson: metadata === null ? null : JSON.stringify(metadata),
    createdAt,
    traceId: optionalText(event.traceId, `${where}: traceId`),
    correlationId: optionalText(event.correlationId, `${where}: correlationId`),
    causationId: optionalText(event.causationId, `${where}: causationId`),
  };
}

/**
 * Validates an append call and fills in defaults. Throws `NoEventsError` for an empty batch and
 * `ValidationError` for anything else wrong, naming the event and the field.
 */
export function normalizeAppend(expected: unknown, events: unknown): NormalizedAppend {
  const checkedExpected = checkExpectedVersion(expected);
  if (!Array.isArray(events)) {
    throw new ValidationError(`events must be an array, got ${typeName(events)}`);
  }
  if (events.length === 0) throw new NoEventsError();
  const normalized = events.map(checkEvent);
  const { aggregateType, aggregateId } = normalized[0];
  const ids = new Set<string>();
  normalized.forEach((event, index) => {
    if (event.aggregateType !== aggregateType || event.aggregateId !== aggregateId) {
      throw new ValidationError(
        `event ${index} is for ${event.aggregateType}/${event.aggregateId} but event 0 is for ` +
          `${aggregateType}/${aggregateId}: one append writes to one aggregate`,
      );
    }
    if (ids.has(event.eventId)) {
      throw new ValidationError(
        `event ${index}: eventId ${event.eventId} repeats within the batch`,
      );
    }
    ids.add(event.eventId);
  });
  return { aggregateType, aggregateId, expected: checkedExpected, events: normalized };
}

function checkNonNegativeInteger(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ValidationError(`${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** Validates `readStream` arguments. */
export function checkReadStream(
  aggregateType: unknown,
  aggregateId: unknown,
  range: VersionRange | undefined,
): { aggregateType: string; aggregateId: string; fromVersion: number; toVersion: number } {
  return {
    aggregateType: checkText(aggregateType, "aggregateType"),
    aggregateId: checkText(aggregateId, "aggregateId"),
    fromVersion: range?.fromVersion === undefined
      ? 0
      : checkNonNegativeInteger(range.fromVersion, "fromVersion"),
    toVersion: range?.toVersion === undefined
      ? Number.MAX_SAFE_INTEGER
      : checkNonNegativeInteger(range.toVersion, "toVersion"),
  };
}

/** Validates `headVersion` arguments. */
export function checkAggregate(
  aggregateType: unknown,
  aggregateId: unknown,
): { aggregateType: string; aggregateId: string } {
  return {
    aggregateType: checkText(aggregateType, "aggregateType"),
    aggregateId: checkText(aggregateId, "aggregateId"),
  };
}

/** Validates `readEvents` arguments; an empty type list means no filter. */
export function checkReadEvents(
  afterPosition: unknown,
  limit: unknown,
  filter: EventFilter | undefined,
): { afterPosition: number; limit: number; aggregateTypes: readonly string[] | null } {
  const types = filter?.aggregateTypes;
  if (types !== undefined && !Array.isArray(types)) {
    throw new ValidationError("aggregateTypes must be an array of strings");
  }
  return {
    afterPosition: checkNonNegativeInteger(afterPosition, "afterPosition"),
    limit: checkNonNegativeInteger(limit, "limit"),
    aggregateTypes: types === undefined || types.length === 0
      ? null
      : types.map((type, i) => checkText(type, `aggregateTypes[${i}]`)),
  };
}

/** Validates iteration options and fills in defaults. */
export function checkIterateOptions(
  options: {
    afterPosition?: number;
    toPosition?: number;
    pageSize?: number;
    aggregateTypes?: readonly string[];
  } = {},
): { afterPosition: number; toPosition: number; pageSize: number; filter: EventFilter } {
  const pageSize = options.pageSize ?? 500;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
    throw new ValidationError(`pageSize must be a positive integer, got ${String(pageSize)}`);
  }
  const checked = checkReadEvents(options.afterPosition ?? 0, pageSize, options);
  return {
    afterPosition: checked.afterPosition,
    toPosition: options.toPosition === undefined
      ? Number.MAX_SAFE_INTEGER
      : checkNonNegativeInteger(options.toPosition, "toPosition"),
    pageSize,
    filter: { aggregateTypes: checked.aggregateTypes ?? undefined },
  };
}

/**
 * The result of a successful append, built from the validated input, the version the aggregate
 * was at, and the positions drawn (in input order). Shared by every store implementation.
 */
export function appendResult(
  batch: NormalizedAppend,
  fromVersion: number,
  globalPositions: readonly number[],
): AppendResult {
  const { aggregateType, aggregateId } = batch;
  const events = batch.events.map((event, i): PersistedEvent => ({
    globalPosition: globalPositions[i],
    aggregateType,
    aggregateId,
    aggregateVersion: fromVersion + i + 1,
    eventId: event.eventId,
    eventType: event.eventType,
    eventVersion: event.eventVersion,
    payload: event.payload,
    metadata: event.metadata,
    createdAt: event.createdAt,
    traceId: event.traceId,
    correlationId: event.correlationId,
    causationId: event.causationId,
  }));
  return { events, globalPositions, fromVersion, toVersion: fromVersion + events.length };
}
