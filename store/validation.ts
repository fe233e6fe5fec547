/**
 * Input checks shared by every store implementation. They run before any SQL, so bad input never
 * writes anything and never aborts the caller's transaction, and the in-memory store rejects
 * exactly what the PostgreSQL store rejects.
 *
 * Every input field is read exactly once into a value the store owns (strings, a plain view of the
 * payload bytes, a copy of the Date, a copy of the metadata tree), and only that copy is validated
 * and written: a getter or Proxy cannot show validation one value and the database another. An
 * exception thrown while reading the input (a throwing getter, a revoked Proxy) becomes a
 * `ValidationError` whose `cause` is the original error.
 *
 * @module
 */
import {
  MAX_TEXT_BYTES as MAX_STORED_TEXT_BYTES,
  storedTextProblem,
  textProblem,
} from "../internal/stored_text.ts";
import { NoEventsError, ValidationError } from "./errors.ts";
import {
  any,
  checkExpectedVersion,
  type ExpectedVersion,
  noStream,
  streamExists,
} from "./expected_version.ts";
import type {
  AppendResult,
  EventFilter,
  JsonObject,
  JsonValue,
  PersistedEvent,
  VersionRange,
} from "./types.ts";

/**
 * Most UTF-8 bytes in `aggregateType`, `aggregateId`, `eventType`, `traceId`, `correlationId` and
 * `causationId`: the rule every component applies to stored text (internal/stored_text.ts). The
 * widest index, `(aggregate_type, aggregate_id, aggregate_version)`, then needs at most 8 + (4 +
 * 1024) + (4 + 1024) + 8 = 2,072 bytes (tuple header, two long varlenas, int8), safely under
 * PostgreSQL's btree limit of 2,704 bytes for 8 kB pages even when the values do not compress.
 */
export const MAX_TEXT_BYTES: number = MAX_STORED_TEXT_BYTES;
/** Deepest metadata nesting: the metadata object itself is level 1. */
export const MAX_METADATA_DEPTH = 100;
/**
 * Earliest `createdAt`: 0100-01-01T00:00:00.000Z. PostgreSQL stores earlier instants (down to
 * 4714-11-24 BC), but postgres.js parses them back wrong (years 1–99 become 19xx/20xx, BC years an
 * Invalid Date), so they could be written but not read.
 */
export const MIN_CREATED_AT_MS: number = Date.UTC(100, 0, 1);
/**
 * Latest `createdAt`: 9999-12-31T23:59:59.999Z, the last instant `Date#toISOString` writes in the
 * four-digit form PostgreSQL parses (its own limit, 294276 AD, is beyond JavaScript's).
 */
export const MAX_CREATED_AT_MS: number = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** An event after validation: defaults applied, every field present, every value owned. */
export interface NormalizedEvent {
  readonly eventId: string;
  readonly eventType: string;
  readonly eventVersion: number;
  /** A plain `Uint8Array` over the caller's bytes (a copy when their buffer can change size). */
  readonly payload: Uint8Array;
  /** A plain copy of the caller's metadata (JSON values only), or null. */
  readonly metadata: JsonObject | null;
  /** `metadata` serialized once, for the database. */
  readonly metadataJson: string | null;
  /** A copy of the caller's Date (or now), within the supported range. */
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

// Intrinsics that read a typed array's or Date's internal slots: they cannot be fooled by a
// subclass overriding `length`, an own `length` property or a Proxy (which has no slots).
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
const intrinsicGetter = (target: object, key: PropertyKey) =>
  Object.getOwnPropertyDescriptor(target, key)?.get as ((this: unknown) => unknown) | undefined;
const typedArrayTag = intrinsicGetter(TypedArrayPrototype, Symbol.toStringTag)!;
const typedArrayLength = intrinsicGetter(TypedArrayPrototype, "length")!;
const typedArrayBuffer = intrinsicGetter(TypedArrayPrototype, "buffer")!;
const typedArrayByteOffset = intrinsicGetter(TypedArrayPrototype, "byteOffset")!;
const arrayBufferDetached = intrinsicGetter(ArrayBuffer.prototype, "detached");
const resizableGetter = intrinsicGetter(ArrayBuffer.prototype, "resizable");
/** False for a plain fixed-length ArrayBuffer; true (or unknown) for anything else. */
const arrayBufferResizable = (buffer: unknown): boolean | undefined => {
  try {
    return resizableGetter === undefined ? false : resizableGetter.call(buffer) as boolean;
  } catch {
    return undefined; // a SharedArrayBuffer
  }
};
const dateTime = Date.prototype.getTime;

/** `event 3: field`, or just `field` outside an append. */
function label(index: number, field: string): string {
  return index < 0 ? field : `event ${index}: ${field}`;
}

/** At most `max` characters of `text`, marking a cut. */
function clip(text: string, max = 60): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** `text` cut to `max` characters, with control characters and lone surrogates escaped. */
function printable(text: string, max = 60): string {
  return JSON.stringify(clip(text, max)).slice(1, -1);
}

/** A short, safe description of a value's type for messages; never throws. */
function typeName(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  try {
    if (Array.isArray(value)) return "array";
    const proto = Object.getPrototypeOf(value);
    if (proto === null) return "object";
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === "string" && name !== "" ? printable(name, 40) : "object";
  } catch {
    return "object";
  }
}

/** A short, safe rendering of a value for messages (huge strings are cut); never throws. */
function preview(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(clip(value, 40));
    case "number":
    case "boolean":
    case "undefined":
      return String(value);
    case "bigint":
      return "a BigInt";
    default:
      return typeName(value);
  }
}

/**
 * A non-empty string PostgreSQL `text` stores unchanged (no NUL character, no lone surrogate) and
 * indexes (at most {@link MAX_TEXT_BYTES} UTF-8 bytes).
 */
function checkText(value: unknown, index: number, field: string): string {
  if (typeof value !== "string") {
    throw new ValidationError(`${label(index, field)} must be a string, got ${preview(value)}`);
  }
  const problem = storedTextProblem(value, MAX_TEXT_BYTES);
  if (problem !== null) throw new ValidationError(`${label(index, field)} ${problem}`);
  return value;
}

function optionalText(value: unknown, index: number, field: string): string | null {
  if (value === undefined || value === null || value === "") return null;
  return checkText(value, index, field);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** The array's length, read once; a Proxy may claim anything. */
function arrayLength(array: readonly unknown[], what: string): number {
  const length = array.length;
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new ValidationError(`${what} has an invalid length ${preview(length)}`);
  }
  return length;
}

/** One level of the metadata walk: the source being read and the copy being built. */
interface Frame {
  readonly source: Record<string, unknown> | readonly unknown[];
  readonly target: Record<string, JsonValue> | JsonValue[];
  /** Own enumerable keys of an object, or null for an array. */
  readonly keys: string[] | null;
  readonly length: number;
  /** This value's key in its parent (null for the root). */
  readonly key: string | number | null;
  next: number;
}

/** `event 0: metadata.a[2].b`, built only for an error message (cut at 200 characters). */
function metadataPath(index: number, stack: readonly Frame[], last: string | number): string {
  let path = label(index, "metadata");
  for (const key of [...stack.map((frame) => frame.key), last]) {
    if (key === null) continue;
    path += typeof key === "number" ? `[${key}]` : `.${printable(key, 40)}`;
    if (path.length > 200) return `${path.slice(0, 200)}…`;
  }
  return path;
}

function newFrame(
  source: Record<string, unknown> | readonly unknown[],
  key: string | number | null,
): Frame {
  if (Array.isArray(source)) {
    const length = arrayLength(source, "a metadata array");
    return { source, target: [], keys: null, length, key, next: 0 };
  }
  const keys = Object.keys(source);
  return { source, target: {}, keys, length: keys.length, key, next: 0 };
}

/**
 * Copies metadata into plain JSON values, checking it on the way: plain objects and arrays only
 * (no holes, no cycles, at most {@link MAX_METADATA_DEPTH} levels), finite numbers, strings and
 * keys without NUL or lone surrogates. Iterative, so no input can overflow the stack; each
 * property is read once, and the copy is what gets serialized and returned.
 */
function copyMetadata(metadata: Record<string, unknown>, index: number): JsonObject {
  const root = newFrame(metadata, null);
  const stack: Frame[] = [root];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1];
    if (frame.next === frame.length) {
      stack.pop();
      continue;
    }
    const i = frame.next++;
    let key: string | number;
    let item: unknown;
    if (frame.keys === null) {
      key = i;
      const source = frame.source as readonly unknown[];
      item = source[i];
      if (item === undefined && !(i in source)) {
        throw new ValidationError(
          `${metadataPath(index, stack, key)} is a hole in a sparse array`,
        );
      }
    } else {
      key = frame.keys[i];
      const problem = textProblem(key);
      if (problem !== null) {
        throw new ValidationError(
          `${metadataPath(index, stack, key)}: the key ${problem}`,
        );
      }
      item = (frame.source as Record<string, unknown>)[key];
    }
    let value: JsonValue;
    switch (typeof item) {
      case "string": {
        const problem = textProblem(item);
        if (problem !== null) {
          throw new ValidationError(`${metadataPath(index, stack, key)} ${problem}`);
        }
        value = item;
        break;
      }
      case "boolean":
        value = item;
        break;
      case "number":
        if (!Number.isFinite(item)) {
          throw new ValidationError(
            `${metadataPath(index, stack, key)} must be a finite number, got ${item}`,
          );
        }
        value = item === 0 ? 0 : item; // -0 is stored as 0
        break;
      case "object": {
        if (item === null) {
          value = null;
          break;
        }
        if (!Array.isArray(item) && !isPlainObject(item)) {
          throw new ValidationError(
            `${metadataPath(index, stack, key)} must be JSON, got ${typeName(item)}`,
          );
        }
        for (const open of stack) {
          if (open.source === item) {
            throw new ValidationError(
              `${metadataPath(index, stack, key)} is a circular reference`,
            );
          }
        }
        if (stack.length >= MAX_METADATA_DEPTH) {
          throw new ValidationError(
            `${label(index, "metadata")} is nested more than ${MAX_METADATA_DEPTH} levels deep`,
          );
        }
        const child = newFrame(item as Record<string, unknown>, key);
        stack.push(child);
        value = child.target;
        break;
      }
      default:
        throw new ValidationError(
          `${metadataPath(index, stack, key)} must be JSON, got ${typeName(item)}`,
        );
    }
    if (frame.keys === null) (frame.target as JsonValue[]).push(value);
    else if (key === "__proto__") {
      // Plain assignment would set the copy's prototype instead of adding the key.
      Object.defineProperty(frame.target, key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else (frame.target as Record<string, JsonValue>)[key as string] = value;
  }
  return root.target as JsonObject;
}

/**
 * The payload as a fresh plain `Uint8Array` view of the caller's bytes: any genuine `Uint8Array`
 * (a `Buffer` too), nothing else. Its type, offset and length come from the typed array's internal
 * slots, so a subclass or an own `length` cannot misreport them; the bytes themselves are not
 * copied (the append path is benchmarked) unless the buffer can shrink or is shared.
 */
function payloadView(value: unknown, index: number): Uint8Array {
  if (typedArrayTag.call(value) !== "Uint8Array") {
    throw new ValidationError(
      `${label(index, "payload")} must be a Uint8Array, got ${typeName(value)}`,
    );
  }
  const view = value as Uint8Array;
  const buffer = typedArrayBuffer.call(view) as ArrayBuffer;
  const length = typedArrayLength.call(view) as number;
  if (length === 0 && arrayBufferDetached !== undefined) {
    let detached = false;
    try {
      detached = arrayBufferDetached.call(buffer) === true;
    } catch {
      // A SharedArrayBuffer cannot be detached.
    }
    if (detached) throw new ValidationError(`${label(index, "payload")}'s buffer is detached`);
  }
  if (arrayBufferResizable(buffer) !== false) {
    // Resizable or shared: the bytes could change length (or change under us) before the write.
    const copy = new Uint8Array(length);
    copy.set(view);
    return copy;
  }
  return new Uint8Array(buffer, typedArrayByteOffset.call(view) as number, length);
}

/** A copy of `createdAt` (now when omitted), within the range PostgreSQL and postgres.js share. */
function copyCreatedAt(value: unknown, index: number): Date {
  if (value === undefined || value === null) return new Date();
  let time: number;
  try {
    time = dateTime.call(value as Date);
  } catch {
    throw new ValidationError(
      `${label(index, "createdAt")} must be a Date, got ${typeName(value)}`,
    );
  }
  if (Number.isNaN(time)) {
    throw new ValidationError(`${label(index, "createdAt")} must be a valid Date`);
  }
  if (time < MIN_CREATED_AT_MS || time > MAX_CREATED_AT_MS) {
    throw new ValidationError(
      `${label(index, "createdAt")} must be from 0100-01-01T00:00:00.000Z to ` +
        `9999-12-31T23:59:59.999Z, got ${new Date(time).toISOString()}`,
    );
  }
  return new Date(time);
}

/** An error thrown while reading the input, as a `ValidationError` (the original is the cause). */
function asValidationError(error: unknown, what: string): ValidationError {
  if (error instanceof ValidationError) return error;
  let detail: string;
  try {
    detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch {
    detail = typeName(error);
  }
  return new ValidationError(`reading ${what} threw ${printable(detail, 200)}`, {
    cause: error,
  });
}

interface CheckedEvent extends NormalizedEvent {
  readonly aggregateType: string;
  readonly aggregateId: string;
}

function checkEvent(raw: unknown, index: number): CheckedEvent {
  if (typeof raw !== "object" || raw === null) {
    throw new ValidationError(`event ${index} must be an object, got ${preview(raw)}`);
  }
  // Each field is read once; only these copies are checked and used.
  const input = raw as Record<string, unknown>;
  const aggregateType = input.aggregateType;
  const aggregateId = input.aggregateId;
  const eventId = input.eventId;
  const eventType = input.eventType;
  const eventVersion = input.eventVersion ?? 1;
  const payload = input.payload;
  const metadata = input.metadata;
  const createdAt = input.createdAt;
  const traceId = input.traceId;
  const correlationId = input.correlationId;
  const causationId = input.causationId;

  let id: string;
  if (eventId === undefined) id = crypto.randomUUID();
  else if (typeof eventId === "string" && eventId.length === 36 && UUID.test(eventId)) {
    id = eventId.toLowerCase();
  } else {
    throw new ValidationError(
      `${label(index, "eventId")} must be a UUID string, got ${preview(eventId)}`,
    );
  }
  if (
    typeof eventVersion !== "number" || !Number.isInteger(eventVersion) || eventVersion < 1 ||
    eventVersion > MAX_INT4
  ) {
    throw new ValidationError(
      `${label(index, "eventVersion")} must be an integer from 1 to ${MAX_INT4}, got ${
        preview(eventVersion)
      }`,
    );
  }
  let copiedMetadata: JsonObject | null = null;
  if (metadata !== undefined && metadata !== null) {
    if (!isPlainObject(metadata)) {
      throw new ValidationError(
        `${label(index, "metadata")} must be a plain JSON object or null, got ${
          typeName(metadata)
        }`,
      );
    }
    copiedMetadata = copyMetadata(metadata, index);
  }
  return {
    aggregateType: checkText(aggregateType, index, "aggregateType"),
    aggregateId: checkText(aggregateId, index, "aggregateId"),
    eventId: id,
    eventType: checkText(eventType, index, "eventType"),
    eventVersion,
    payload: payloadView(payload, index),
    metadata: copiedMetadata,
    metadataJson: copiedMetadata === null ? null : JSON.stringify(copiedMetadata),
    createdAt: copyCreatedAt(createdAt, index),
    traceId: optionalText(traceId, index, "traceId"),
    correlationId: optionalText(correlationId, index, "correlationId"),
    causationId: optionalText(causationId, index, "causationId"),
  };
}

/** The expected version, read once; the shared constants stand for the field-less kinds. */
function snapshotExpected(expected: unknown): unknown {
  if (typeof expected !== "object" || expected === null) return expected;
  const kind = (expected as { kind?: unknown }).kind;
  switch (kind) {
    case "any":
      return any();
    case "noStream":
      return noStream();
    case "streamExists":
      return streamExists();
    case "exact":
      return { kind, version: (expected as { version?: unknown }).version };
    default:
      return { kind };
  }
}

/**
 * Validates an append call and fills in defaults. Throws `NoEventsError` for an empty batch and
 * `ValidationError` for anything else wrong, naming the event and the field. The result holds
 * copies: nothing in it can change after it was checked.
 */
export function normalizeAppend(expected: unknown, events: unknown): NormalizedAppend {
  let checkedExpected: ExpectedVersion;
  let count: number;
  try {
    checkedExpected = checkExpectedVersion(snapshotExpected(expected));
    if (!Array.isArray(events)) {
      throw new ValidationError(`events must be an array, got ${typeName(events)}`);
    }
    count = arrayLength(events, "events");
  } catch (error) {
    throw asValidationError(error, "the append arguments");
  }
  if (count === 0) throw new NoEventsError();
  const list = events as readonly unknown[];
  const normalized: CheckedEvent[] = [];
  let ids: Set<string> | null = null;
  for (let index = 0; index < count; index++) {
    let event: CheckedEvent;
    try {
      const raw = list[index];
      if (raw === undefined && !(index in list)) {
        throw new ValidationError(`events has a hole at index ${index} (sparse array)`);
      }
      event = checkEvent(raw, index);
    } catch (error) {
      throw asValidationError(error, `event ${index}`);
    }
    if (index > 0) {
      const first = normalized[0];
      if (event.aggregateType !== first.aggregateType || event.aggregateId !== first.aggregateId) {
        throw new ValidationError(
          `event ${index} is for ${clip(event.aggregateType)}/${
            clip(event.aggregateId)
          } but event 0 is for ${clip(first.aggregateType)}/${
            clip(first.aggregateId)
          }: one append writes to one aggregate`,
        );
      }
    }
    if (count > 1) {
      ids ??= new Set();
      if (ids.has(event.eventId)) {
        throw new ValidationError(
          `event ${index}: eventId ${event.eventId} repeats within the batch`,
        );
      }
      ids.add(event.eventId);
    }
    normalized.push(event);
  }
  const { aggregateType, aggregateId } = normalized[0];
  return { aggregateType, aggregateId, expected: checkedExpected, events: normalized };
}

function checkNonNegativeInteger(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ValidationError(`${what} must be a non-negative integer, got ${preview(value)}`);
  }
  return value;
}

/** Validates `readStream` arguments. */
export function checkReadStream(
  aggregateType: unknown,
  aggregateId: unknown,
  range: VersionRange | undefined,
): { aggregateType: string; aggregateId: string; fromVersion: number; toVersion: number } {
  try {
    const from = range?.fromVersion;
    const to = range?.toVersion;
    return {
      aggregateType: checkText(aggregateType, -1, "aggregateType"),
      aggregateId: checkText(aggregateId, -1, "aggregateId"),
      fromVersion: from === undefined ? 0 : checkNonNegativeInteger(from, "fromVersion"),
      toVersion: to === undefined
        ? Number.MAX_SAFE_INTEGER
        : checkNonNegativeInteger(to, "toVersion"),
    };
  } catch (error) {
    throw asValidationError(error, "the readStream arguments");
  }
}

/** Validates `headVersion` arguments. */
export function checkAggregate(
  aggregateType: unknown,
  aggregateId: unknown,
): { aggregateType: string; aggregateId: string } {
  return {
    aggregateType: checkText(aggregateType, -1, "aggregateType"),
    aggregateId: checkText(aggregateId, -1, "aggregateId"),
  };
}

/** A copy of an aggregate type filter: null for none (omitted or empty). */
function checkAggregateTypes(types: unknown): string[] | null {
  if (types === undefined) return null;
  if (!Array.isArray(types)) {
    throw new ValidationError(`aggregateTypes must be an array of strings, got ${typeName(types)}`);
  }
  const length = arrayLength(types, "aggregateTypes");
  if (length === 0) return null;
  const copy: string[] = [];
  for (let i = 0; i < length; i++) {
    const type = types[i];
    if (type === undefined && !(i in types)) {
      throw new ValidationError(`aggregateTypes has a hole at index ${i} (sparse array)`);
    }
    copy.push(checkText(type, -1, `aggregateTypes[${i}]`));
  }
  return copy;
}

/** Validates `readEvents` arguments; an empty type list means no filter. */
export function checkReadEvents(
  afterPosition: unknown,
  limit: unknown,
  filter: EventFilter | undefined,
): { afterPosition: number; limit: number; aggregateTypes: readonly string[] | null } {
  try {
    const types = filter?.aggregateTypes;
    return {
      afterPosition: checkNonNegativeInteger(afterPosition, "afterPosition"),
      limit: checkNonNegativeInteger(limit, "limit"),
      aggregateTypes: checkAggregateTypes(types),
    };
  } catch (error) {
    throw asValidationError(error, "the readEvents arguments");
  }
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
  try {
    // Each option is read once.
    const afterPosition = options.afterPosition ?? 0;
    const toPosition = options.toPosition;
    const pageSize = options.pageSize ?? 500;
    const aggregateTypes = options.aggregateTypes;
    if (typeof pageSize !== "number" || !Number.isSafeInteger(pageSize) || pageSize < 1) {
      throw new ValidationError(`pageSize must be a positive integer, got ${preview(pageSize)}`);
    }
    const checked = checkReadEvents(afterPosition, pageSize, { aggregateTypes });
    return {
      afterPosition: checked.afterPosition,
      toPosition: toPosition === undefined
        ? Number.MAX_SAFE_INTEGER
        : checkNonNegativeInteger(toPosition, "toPosition"),
      pageSize,
      filter: { aggregateTypes: checked.aggregateTypes ?? undefined },
    };
  } catch (error) {
    throw asValidationError(error, "the iteration options");
  }
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
