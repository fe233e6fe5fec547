/**
 * Hostile input against both stores: every case must be a `ValidationError` before any SQL is
 * sent (counted through postgres.js's `debug` hook), write nothing, and leave the caller's
 * transaction usable; the largest accepted values must be accepted by both stores and read back
 * unchanged; and input that changes between reads must be read once, so what was checked is what
 * is written.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type postgres from "postgres";
import { InMemoryEventStore, type InMemoryTransaction } from "../testing/in_memory_store.ts";
import { SeededRandom } from "../testing/seeded_random.ts";
import { type TestDatabase, testDatabase } from "../testing/test_database.ts";
import { ValidationError } from "./errors.ts";
import { any, type ExpectedVersion, noStream } from "./expected_version.ts";
import { migrate } from "./migration.ts";
import { PostgresStore, type SqlExecutor } from "./postgres_store.ts";
import type {
  Event,
  EventFilter,
  EventStore,
  IterateEventsOptions,
  VersionRange,
} from "./types.ts";
import {
  MAX_CREATED_AT_MS,
  MAX_METADATA_DEPTH,
  MAX_TEXT_BYTES,
  MIN_CREATED_AT_MS,
} from "./validation.ts";

// ---------------------------------------------------------------------------------------------
// Inputs

const TYPE = "Hostile";
const ID = "h-1";
const bytes = () => new Uint8Array([1, 2, 3]);
const event = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  aggregateType: TYPE,
  aggregateId: ID,
  eventType: "Happened",
  payload: bytes(),
  ...extra,
});
const utf8 = (text: string) => new TextEncoder().encode(text).length;

/** Text of exactly `size` UTF-8 bytes of random 1- to 4-byte characters: it does not compress. */
function randomText(size: number, seed: number): string {
  const random = new SeededRandom(seed);
  let text = "";
  let used = 0;
  while (used < size) {
    const width = Math.min(size - used, random.int(1, 4));
    let codePoint: number;
    if (width === 1) codePoint = random.int(0x21, 0x7e);
    else if (width === 2) codePoint = random.int(0x80, 0x7ff);
    else if (width === 3) {
      codePoint = random.int(0x800, 0xfffd - 0x800);
      if (codePoint >= 0xd800) codePoint += 0x800; // skip the surrogate range
    } else codePoint = random.int(0x10000, 0x10ffff);
    text += String.fromCodePoint(codePoint);
    used += width;
  }
  return text;
}

/** Metadata nested `levels` deep (the object itself is level 1), through objects or arrays. */
function deep(levels: number, arrays = false): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let current: Record<string, unknown> | unknown[] = root;
  for (let level = 2; level <= levels; level++) {
    const child: Record<string, unknown> | unknown[] = arrays ? [] : {};
    if (Array.isArray(current)) current.push(child);
    else current.child = child;
    current = child;
  }
  if (Array.isArray(current)) current.push("leaf");
  else current.leaf = true;
  return root;
}

/** A getter that returns `first` on the first read and `later` on every read after it. */
function flipping<T>(first: T, later: unknown): { reads: number; get(): unknown } {
  const state = {
    reads: 0,
    get(): unknown {
      return state.reads++ === 0 ? first : later;
    },
  };
  return state;
}

/** `target` behind a Proxy that counts reads per property. */
function counted<T extends object>(target: T): { proxy: T; reads: Map<PropertyKey, number> } {
  const reads = new Map<PropertyKey, number>();
  const proxy = new Proxy(target, {
    get(object, key, receiver) {
      reads.set(key, (reads.get(key) ?? 0) + 1);
      return Reflect.get(object, key, receiver);
    },
  });
  return { proxy, reads };
}

function detachedBytes(): Uint8Array {
  const buffer = new ArrayBuffer(4);
  const view = new Uint8Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

/** An array of `length` with only the given indexes set: the others are holes. */
function sparse(length: number, values: Record<number, unknown>): unknown[] {
  const array = new Array(length);
  for (const [index, value] of Object.entries(values)) array[Number(index)] = value;
  return array;
}

function revoked<T extends object>(target: T): T {
  const { proxy, revoke } = Proxy.revocable(target, {});
  revoke();
  return proxy;
}

const throwing = <T extends object>(target: T): T =>
  new Proxy(target, {
    get() {
      throw new Error("getter exploded");
    },
  });

// ---------------------------------------------------------------------------------------------
// Cases

type Run = <Tx>(store: EventStore<Tx>, tx: Tx) => Promise<unknown>;

interface HostileCase {
  readonly name: string;
  readonly run: Run;
  /** What the message must say (the field), when checked. */
  readonly message?: RegExp;
  /** Checks the error beyond its type and message. */
  readonly check?: (error: ValidationError) => void;
}

const cases: HostileCase[] = [];

function appendCase(
  name: string,
  events: () => unknown,
  message?: RegExp,
  expected: () => unknown = any,
  check?: (error: ValidationError) => void,
) {
  cases.push({
    name: `append: ${name}`,
    run: (store, tx) => store.append(tx, expected() as ExpectedVersion, events() as Event[]),
    message,
    check,
  });
}

function eventCase(
  name: string,
  extra: () => Record<string, unknown>,
  message?: RegExp,
  check?: (error: ValidationError) => void,
) {
  appendCase(name, () => [event(extra())], message, any, check);
}

const causedByGetter = (error: ValidationError) => {
  assert.ok(error.cause instanceof Error, "the original error is the cause");
  assert.match((error.cause as Error).message, /getter exploded/);
};

// Text fields: too long (in bytes, not characters), NUL, lone surrogates, wrong types.
const requiredText = ["aggregateType", "aggregateId", "eventType"];
const optionalText = ["traceId", "correlationId", "causationId"];
const indexed = ["aggregateType", "aggregateId"];
for (const field of [...requiredText, ...optionalText]) {
  const named = new RegExp(`event 0: ${field}`);
  const tooLong = new RegExp(`${field} must be at most ${MAX_TEXT_BYTES} UTF-8 bytes`);
  eventCase(`${field} of 1,025 ASCII bytes`, () => ({ [field]: "x".repeat(1025) }), tooLong);
  eventCase(
    `${field} of 1,025 UTF-8 bytes in 1,023 characters`,
    () => ({ [field]: "x".repeat(1022) + "€" }),
    tooLong,
  );
  eventCase(
    `${field} of 3,000 incompressible bytes${
      indexed.includes(field) ? " (PostgreSQL: 54000)" : ""
    }`,
    () => ({ [field]: randomText(3000, 7) }),
    tooLong,
  );
  eventCase(`${field} of 10 MB`, () => ({ [field]: "y".repeat(10_000_000) }), tooLong);
  eventCase(`${field} containing NUL`, () => ({ [field]: "a\u0000b" }), /NUL/);
  eventCase(`${field} with a lone high surrogate`, () => ({ [field]: "a\ud800b" }), named);
  eventCase(`${field} with a lone low surrogate`, () => ({ [field]: "\udc00" }), named);
  eventCase(`${field} as a number`, () => ({ [field]: 42 }), named);
  eventCase(`${field} as an object`, () => ({ [field]: { toString: () => "X" } }), named);
  eventCase(`${field} as a BigInt`, () => ({ [field]: 10n ** 400n }), named);
}
eventCase("aggregateId of 257 emoji (1,028 bytes, 514 code units)", () => ({
  aggregateId: "😀".repeat(257),
}), /aggregateId must be at most 1024 UTF-8 bytes, got 1028/);
for (const field of requiredText) {
  eventCase(`${field} missing`, () => ({ [field]: undefined }), new RegExp(field));
  eventCase(`${field} null`, () => ({ [field]: null }), new RegExp(field));
}

// createdAt: invalid, outside PostgreSQL's range, or inside it but unreadable through postgres.js.
const iso = (time: number) => new Date(time);
eventCase("createdAt invalid", () => ({ createdAt: new Date("nope") }), /createdAt/);
eventCase("createdAt at JavaScript's minimum (271821 BC)", () => ({
  createdAt: iso(-8.64e15),
}), /createdAt/);
eventCase("createdAt at JavaScript's maximum (275760 AD)", () => ({
  createdAt: iso(8.64e15),
}), /createdAt/);
eventCase("createdAt 5000 BC (PostgreSQL: 22008)", () => ({
  createdAt: iso(Date.UTC(-4999, 0, 1)),
}), /createdAt/);
eventCase("createdAt 4714-11-24 BC (stored, but read back as Invalid Date)", () => ({
  createdAt: iso(Date.UTC(-4713, 10, 24)),
}), /createdAt/);
eventCase("createdAt 1 BC (ISO year 0000: PostgreSQL 22008)", () => ({
  createdAt: new Date("0000-06-01T00:00:00.000Z"),
}), /createdAt/);
eventCase("createdAt 0050-06-15 (read back as 1950)", () => ({
  createdAt: new Date("0050-06-15T00:00:00.000Z"),
}), /createdAt/);
eventCase("createdAt one millisecond before 0100-01-01", () => ({
  createdAt: iso(MIN_CREATED_AT_MS - 1),
}), /createdAt/);
eventCase("createdAt one millisecond after 9999-12-31T23:59:59.999Z", () => ({
  createdAt: iso(MAX_CREATED_AT_MS + 1),
}), /createdAt/);
eventCase("createdAt in year 10000 (toISOString's +010000 form: PostgreSQL 22009)", () => ({
  createdAt: new Date("+010000-01-01T00:00:00.000Z"),
}), /createdAt/);
eventCase("createdAt as an ISO string", () => ({ createdAt: "2024-01-01T00:00:00Z" }), /createdAt/);
eventCase("createdAt as a number", () => ({ createdAt: Date.now() }), /createdAt/);
eventCase("createdAt as a Date-like object", () => ({
  createdAt: { getTime: () => Date.now(), toISOString: () => "2024-01-01T00:00:00Z" },
}), /createdAt/);
eventCase("createdAt as a Proxy of a Date", () => ({
  createdAt: new Proxy(new Date(), {}),
}), /createdAt/);
eventCase("createdAt as a Date subclass lying about an out-of-range time", () => {
  class Liar extends Date {
    override getTime() {
      return Date.now();
    }
    override toISOString() {
      return new Date().toISOString();
    }
  }
  return { createdAt: new Liar(Date.UTC(-4999, 0, 1)) };
}, /createdAt/);

// Payloads: only a genuine Uint8Array (or subclass, copied) is bytes.
for (
  const [name, value] of [
    ["an ArrayBuffer", () => new ArrayBuffer(3)],
    ["a DataView", () => new DataView(new ArrayBuffer(3))],
    ["an Int8Array", () => new Int8Array(3)],
    ["a Uint8ClampedArray", () => new Uint8ClampedArray(3)],
    ["a Uint16Array", () => new Uint16Array(3)],
    ["an array of numbers", () => [1, 2, 3]],
    ["a string", () => "bytes"],
    ["null", () => null],
    ["missing", () => undefined],
    ["a Proxy of a Uint8Array", () => new Proxy(new Uint8Array(3), {})],
    ["an object inheriting from Uint8Array.prototype", () => Object.create(Uint8Array.prototype)],
    ["a Uint8Array over a detached buffer", detachedBytes],
  ] as const
) {
  eventCase(`payload ${name}`, () => ({ payload: value() }), /event 0: payload/);
}

// Metadata: depth, cycles, holes, non-JSON values, bad strings and keys.
eventCase("metadata nested 5,000 objects deep", () => ({ metadata: deep(5000) }), /100 levels/);
eventCase(
  "metadata nested 5,000 arrays deep",
  () => ({ metadata: deep(5000, true) }),
  /100 levels/,
);
eventCase(
  `metadata nested ${MAX_METADATA_DEPTH + 1} levels deep`,
  () => ({ metadata: deep(MAX_METADATA_DEPTH + 1) }),
  /nested more than 100 levels/,
);
eventCase("metadata that contains itself", () => {
  const metadata: Record<string, unknown> = { a: 1 };
  metadata.self = metadata;
  return { metadata };
}, /metadata\.self is a circular reference/);
eventCase("metadata with a cycle through an array", () => {
  const list: unknown[] = [1];
  list.push({ back: list });
  return { metadata: { list } };
}, /circular reference/);
eventCase(
  "metadata with a sparse array",
  () => ({ metadata: { list: sparse(3, { 0: 1, 2: 3 }) } }),
  /hole/,
);
eventCase("metadata NaN", () => ({ metadata: { n: NaN } }), /metadata\.n must be a finite/);
eventCase("metadata Infinity", () => ({ metadata: { n: Infinity } }), /finite/);
eventCase("metadata -Infinity in an array", () => ({ metadata: { l: [-Infinity] } }), /l\[0\]/);
eventCase("metadata BigInt", () => ({ metadata: { n: 1n } }), /metadata\.n must be JSON/);
eventCase("metadata undefined value", () => ({ metadata: { u: undefined } }), /metadata\.u/);
eventCase("metadata function", () => ({ metadata: { f: () => 1 } }), /metadata\.f/);
eventCase("metadata Symbol", () => ({ metadata: { s: Symbol("s") } }), /metadata\.s/);
eventCase("metadata Date", () => ({ metadata: { at: new Date() } }), /metadata\.at must be JSON/);
eventCase("metadata Map", () => ({ metadata: { m: new Map() } }), /Map/);
eventCase("metadata Uint8Array", () => ({ metadata: { b: new Uint8Array(1) } }), /metadata\.b/);
eventCase("metadata class instance", () => {
  class Thing {
    x = 1;
  }
  return { metadata: new Thing() };
}, /plain JSON object/);
eventCase("metadata top-level array", () => ({ metadata: [1] }), /plain JSON object/);
eventCase("metadata top-level string", () => ({ metadata: '{"a":1}' }), /plain JSON object/);
eventCase("metadata string with NUL", () => ({ metadata: { s: "a\u0000" } }), /metadata\.s/);
eventCase("metadata nested string with NUL", () => ({
  metadata: { a: [{ b: "\u0000" }] },
}), /metadata\.a\[0\]\.b must not contain NUL/);
eventCase("metadata key with NUL", () => ({ metadata: { "k\u0000": 1 } }), /key must not/);
eventCase("metadata string with a lone surrogate", () => ({
  metadata: { s: "\ud83d" },
}), /lone UTF-16 surrogate/);
eventCase("metadata key with a lone surrogate", () => ({
  metadata: { ["\udead"]: 1 },
}), /key contains a lone/);
eventCase(
  "metadata whose getter throws",
  () => ({
    metadata: throwing({ a: 1 }),
  }),
  /event 0/,
  causedByGetter,
);
eventCase("metadata as a revoked Proxy", () => ({ metadata: revoked({}) }), /event 0/);
eventCase("metadata with a huge key (message stays short)", () => ({
  metadata: { ["k".repeat(100_000)]: NaN },
}), /finite/);

// Ids and versions.
eventCase("eventId not a UUID", () => ({ eventId: "not-a-uuid" }), /eventId/);
eventCase("eventId of 1 MB (message stays short)", () => ({
  eventId: "0".repeat(1_000_000),
}), /eventId/);
eventCase("eventId a UUID with NUL", () => ({
  eventId: "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6\u0000",
}), /eventId/);
eventCase("eventId null", () => ({ eventId: null }), /eventId/);
eventCase("eventId a number", () => ({ eventId: 7 }), /eventId/);
eventCase("eventVersion 2^31", () => ({ eventVersion: 2 ** 31 }), /eventVersion/);
eventCase("eventVersion NaN", () => ({ eventVersion: NaN }), /eventVersion/);
eventCase("eventVersion as a string", () => ({ eventVersion: "1" }), /eventVersion/);
eventCase("eventVersion as a BigInt", () => ({ eventVersion: 1n }), /eventVersion/);

// The events list itself.
appendCase(
  "events with a hole first: [, event]",
  () => sparse(2, { 1: event() }),
  /hole at index 0/,
);
appendCase(
  "events with a hole in the middle",
  () => sparse(3, { 0: event(), 2: event() }),
  /hole at index 1/,
);
appendCase("events = new Array(3)", () => new Array(3), /hole at index 0/);
appendCase("events containing undefined", () => [event(), undefined], /event 1/);
appendCase("events containing null", () => [null], /event 0/);
appendCase("events containing a number", () => [42], /event 0/);
appendCase("events not an array", () => ({ 0: event(), length: 1 }), /events must be an array/);
appendCase("events a Set", () => new Set([event()]), /events must be an array/);
appendCase("events null", () => null, /events must be an array/);
appendCase("events whose length claims -1", () =>
  new Proxy([event()], {
    get: (target, key) => key === "length" ? -1 : Reflect.get(target, key),
  }), /length/);
appendCase("events whose length claims 2^60", () =>
  new Proxy([event()], {
    get: (target, key) => key === "length" ? 2 ** 60 : Reflect.get(target, key),
  }), /length/);
appendCase("events as a revoked Proxy", () => revoked([event()]), /append arguments/);
appendCase(
  "an event whose getter throws",
  () => [throwing(event())],
  /event 0/,
  any,
  causedByGetter,
);
appendCase("an event as a revoked Proxy", () => [revoked(event())], /event 0/);
appendCase(
  "mixed aggregates with long ids (message stays short)",
  () => [event(), event({ aggregateId: "z".repeat(1000) })],
  /one append writes to one aggregate/,
);

// The expected version.
appendCase("expected null", () => [event()], /expected version/, () => null);
appendCase("expected of an unknown kind", () => [event()], /expected version/, () => ({
  kind: "whatever",
}));
appendCase("expected exact(2^60)", () => [event()], /expected version/, () => ({
  kind: "exact",
  version: 2 ** 60,
}));
appendCase("expected exact(-1)", () => [event()], /expected version/, () => ({
  kind: "exact",
  version: -1,
}));
appendCase(
  "expected whose getter throws",
  () => [event()],
  /append arguments/,
  () => throwing({ kind: "any" }),
  causedByGetter,
);

// Reads.
function readCase(name: string, run: Run, message?: RegExp, check?: HostileCase["check"]) {
  cases.push({ name, run, message, check });
}
const readStream = (type: unknown, id: unknown, range?: unknown): Run => (store, tx) =>
  store.readStream(tx, type as string, id as string, range as VersionRange);
const headVersion = (type: unknown, id: unknown): Run => (store, tx) =>
  store.headVersion(tx, type as string, id as string);
const readEvents = (after: unknown, limit: unknown, filter?: unknown): Run => (store, tx) =>
  store.readEvents(tx, after as number, limit as number, filter as EventFilter);
const iterate = (options: unknown): Run => async (store, tx) => {
  for await (const _ of store.iterateEvents(tx, options as IterateEventsOptions)) {
    // draining
  }
};
readCase("readStream: aggregateType of 1,025 bytes", readStream("x".repeat(1025), ID), /bytes/);
readCase("readStream: aggregateId of 3,000 bytes", readStream(TYPE, randomText(3000, 1)), /bytes/);
readCase("readStream: aggregateId with NUL", readStream(TYPE, "a\u0000"), /NUL/);
readCase("readStream: aggregateType with a lone surrogate", readStream("\ud800", ID), /surrogate/);
readCase("readStream: aggregateId a number", readStream(TYPE, 1), /aggregateId/);
readCase("readStream: fromVersion NaN", readStream(TYPE, ID, { fromVersion: NaN }), /fromVersion/);
readCase("readStream: toVersion 2^60", readStream(TYPE, ID, { toVersion: 2 ** 60 }), /toVersion/);
readCase(
  "readStream: a range whose getter throws",
  readStream(TYPE, ID, throwing({})),
  /readStream/,
  causedByGetter,
);
readCase("headVersion: aggregateId of 2,000 bytes", headVersion(TYPE, "i".repeat(2000)), /bytes/);
readCase("headVersion: aggregateType with NUL", headVersion("\u0000", ID), /NUL/);
readCase("headVersion: aggregateType null", headVersion(null, ID), /aggregateType/);
readCase(
  "readEvents: aggregateTypes with a hole",
  readEvents(0, 10, { aggregateTypes: sparse(2, { 1: TYPE }) }),
  /hole at index 0/,
);
readCase(
  "readEvents: aggregateTypes = new Array(2)",
  readEvents(0, 10, { aggregateTypes: new Array(2) }),
  /hole/,
);
readCase(
  "readEvents: an aggregate type of 1,025 bytes",
  readEvents(0, 10, { aggregateTypes: [TYPE, "t".repeat(1025)] }),
  /aggregateTypes\[1\]/,
);
readCase(
  "readEvents: an aggregate type with NUL",
  readEvents(0, 10, { aggregateTypes: ["\u0000"] }),
  /NUL/,
);
readCase(
  "readEvents: an aggregate type that is not a string",
  readEvents(0, 10, { aggregateTypes: [1] }),
  /aggregateTypes\[0\]/,
);
readCase(
  "readEvents: aggregateTypes a string",
  readEvents(0, 10, { aggregateTypes: TYPE }),
  /aggregateTypes/,
);
readCase(
  "readEvents: aggregateTypes whose length claims -1",
  readEvents(0, 10, {
    aggregateTypes: new Proxy([TYPE], {
      get: (target, key) => key === "length" ? -1 : Reflect.get(target, key),
    }),
  }),
  /length/,
);
readCase(
  "readEvents: a filter whose getter throws",
  readEvents(0, 10, throwing({})),
  /readEvents/,
  causedByGetter,
);
readCase("readEvents: afterPosition Infinity", readEvents(Infinity, 10), /afterPosition/);
readCase("readEvents: afterPosition as a string", readEvents("5", 10), /afterPosition/);
readCase("readEvents: limit 2^60", readEvents(0, 2 ** 60), /limit/);
readCase(
  "iterateEvents: aggregateTypes with a hole",
  iterate({ aggregateTypes: sparse(3, { 0: TYPE, 2: TYPE }) }),
  /hole at index 1/,
);
readCase("iterateEvents: pageSize 0", iterate({ pageSize: 0 }), /pageSize/);
readCase("iterateEvents: pageSize Infinity", iterate({ pageSize: Infinity }), /pageSize/);
readCase("iterateEvents: toPosition -1", iterate({ toPosition: -1 }), /toPosition/);
readCase(
  "iterateEvents: options whose getter throws",
  iterate(throwing({})),
  /iteration options/,
  causedByGetter,
);

// ---------------------------------------------------------------------------------------------
// Stores

interface Target<Tx> {
  readonly store: EventStore<Tx>;
  /** Runs `work` in a caller's transaction and commits. */
  transaction(work: (tx: Tx) => Promise<void>): Promise<void>;
  /** What a method takes to open its own transaction: the pool, or the store itself. */
  readonly autoCommit: Tx;
  /** Statements sent to the database so far (none in memory). */
  sent(): number;
  /** Throws unless `tx` can still run statements. */
  stillUsable(tx: Tx): Promise<void>;
  /** Events and heads stored. */
  storedRows(): Promise<number>;
  close(): Promise<void>;
}

async function postgresTarget(partitioned = false): Promise<Target<SqlExecutor>> {
  const db: TestDatabase = await testDatabase();
  let sent = 0;
  const sql = db.connect({
    debug: () => void sent++,
    // postgres.js parses timestamps with `new Date(text)`: only UTC output reads back every year.
    ...(db.kind === "pglite" ? {} : { connection: { TimeZone: "UTC" } }),
  });
  await migrate(sql, partitioned ? { partitioning: { strategy: "native" } } : {});
  return {
    store: new PostgresStore(),
    transaction: async (work) => {
      await sql.begin((tx) => work(tx));
    },
    autoCommit: sql,
    sent: () => sent,
    async stillUsable(tx) {
      const rows = await (tx as postgres.TransactionSql)`SELECT 1 AS one`;
      assert.equal(rows[0].one, 1);
    },
    async storedRows() {
      const [row] = await sql`SELECT (SELECT count(*) FROM events)::int
        + (SELECT count(*) FROM aggregate_heads)::int AS n`;
      return row.n as number;
    },
    close: () => db.close(),
  };
}

function inMemoryTarget(): Promise<Target<InMemoryTransaction | InMemoryEventStore>> {
  const store = new InMemoryEventStore();
  return Promise.resolve({
    store,
    transaction: async (work) => {
      await store.transaction(work);
    },
    autoCommit: store,
    sent: () => 0,
    stillUsable: async (tx) => {
      (tx as InMemoryTransaction).assertUsable();
      assert.equal(await store.headVersion(tx, TYPE, ID), 0);
    },
    storedRows: async () =>
      (await store.readEvents(store, 0, 1000)).length + (await store.latestPosition(store)) +
      store.inFlightPositions().length,
    close: () => Promise.resolve(),
  });
}

function expectValidationError(c: HostileCase): (error: unknown) => boolean {
  return (error) => {
    assert.ok(
      error instanceof ValidationError,
      `expected a ValidationError, got ${String(error).slice(0, 300)}`,
    );
    assert.ok(
      error.message.length <= 400,
      `the message echoes too much (${error.message.length} characters)`,
    );
    if (c.message) assert.match(error.message, c.message);
    c.check?.(error);
    return true;
  };
}

function hostileSuite<Tx>(name: string, open: () => Promise<Target<Tx>>) {
  describe(`hostile input: ${name}`, () => {
    let target: Target<Tx>;
    before(async () => {
      target = await open();
    });
    after(() => target.close());

    for (const c of cases) {
      it(c.name, async () => {
        // In the caller's transaction: no SQL sent, the transaction still usable.
        await target.transaction(async (tx) => {
          const sentBefore = target.sent();
          await assert.rejects(c.run(target.store, tx), expectValidationError(c));
          assert.equal(target.sent(), sentBefore, "no SQL was sent");
          await target.stillUsable(tx);
        });
        // Given the pool (or the store): rejected before even opening a transaction.
        const sentBefore = target.sent();
        await assert.rejects(c.run(target.store, target.autoCommit), expectValidationError(c));
        assert.equal(target.sent(), sentBefore, "no SQL (not even BEGIN) was sent");
        assert.equal(await target.storedRows(), 0, "nothing was written");
      });
    }

    it("no rejected input drew a position: the first valid append gets position 1", async () => {
      const result = await target.store.append(target.autoCommit, noStream(), [
        event() as unknown as Event,
      ]);
      assert.deepEqual(result.globalPositions, [1]);
    });
  });

  describe(`largest accepted values: ${name}`, () => {
    let target: Target<Tx>;
    before(async () => {
      target = await open();
    });
    after(() => target.close());

    const read = async (type: string, id: string) =>
      (await target.store.readStream(target.autoCommit, type, id)).events;

    it(`${MAX_TEXT_BYTES}-byte incompressible ids, type and trace ids are stored and read back`, async () => {
      const texts = Array.from({ length: 6 }, (_, i) => randomText(MAX_TEXT_BYTES, 100 + i));
      texts.forEach((text) => assert.equal(utf8(text), MAX_TEXT_BYTES));
      const [aggregateType, aggregateId, eventType, traceId, correlationId, causationId] = texts;
      const input = { aggregateType, aggregateId, eventType, traceId, correlationId, causationId };
      await target.transaction(async (tx) => {
        await target.store.append(tx, noStream(), [{ ...input, payload: bytes() }]);
      });
      const [stored] = await read(aggregateType, aggregateId);
      assert.deepEqual(
        {
          aggregateType: stored.aggregateType,
          aggregateId: stored.aggregateId,
          eventType: stored.eventType,
          traceId: stored.traceId,
          correlationId: stored.correlationId,
          causationId: stored.causationId,
        },
        input,
      );
      assert.equal(
        await target.store.headVersion(target.autoCommit, aggregateType, aggregateId),
        1,
      );
      const filtered = await target.store.readEvents(target.autoCommit, 0, 10, {
        aggregateTypes: [aggregateType],
      });
      assert.equal(filtered.length, 1);
    });

    it("1,024 bytes in fewer characters (multi-byte, emoji) is the limit, not the length", async () => {
      const ids = ["x".repeat(1021) + "€", "😀".repeat(256), "é".repeat(512)];
      for (const id of ids) {
        assert.equal(utf8(id), MAX_TEXT_BYTES);
        await target.store.append(target.autoCommit, noStream(), [
          { aggregateType: TYPE, aggregateId: id, eventType: "E", payload: bytes() },
        ]);
        assert.equal((await read(TYPE, id)).length, 1);
      }
    });

    it("the earliest and latest createdAt are stored and read back to the millisecond", async () => {
      for (const time of [MIN_CREATED_AT_MS, MAX_CREATED_AT_MS]) {
        const id = `t-${time}`;
        await target.store.append(target.autoCommit, noStream(), [
          {
            aggregateType: TYPE,
            aggregateId: id,
            eventType: "E",
            payload: bytes(),
            createdAt: new Date(time),
          },
        ]);
        const [stored] = await read(TYPE, id);
        assert.equal(stored.createdAt.getTime(), time, new Date(time).toISOString());
      }
    });

    it(`metadata ${MAX_METADATA_DEPTH} levels deep, "__proto__" keys and -0 round-trip`, async () => {
      const samples: Record<string, unknown>[] = [
        deep(MAX_METADATA_DEPTH),
        deep(MAX_METADATA_DEPTH, true),
        JSON.parse('{"__proto__": {"polluted": true}, "list": [{"__proto__": 1}]}'),
      ];
      for (const [i, metadata] of samples.entries()) {
        const id = `m-${i}`;
        await target.store.append(target.autoCommit, noStream(), [
          {
            aggregateType: TYPE,
            aggregateId: id,
            eventType: "E",
            payload: bytes(),
            metadata: metadata as Event["metadata"],
          },
        ]);
        const [stored] = await read(TYPE, id);
        assert.deepEqual(stored.metadata, metadata);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      const result = await target.store.append(target.autoCommit, noStream(), [
        {
          aggregateType: TYPE,
          aggregateId: "zero",
          eventType: "E",
          payload: bytes(),
          metadata: { z: -0 },
        },
      ]);
      assert.ok(Object.is(result.events[0].metadata!.z, 0), "the echo says 0, as stored");
      const [stored] = await read(TYPE, "zero");
      assert.ok(Object.is(stored.metadata!.z, 0));
    });
  });

  describe(`input is read once: ${name}`, () => {
    let target: Target<Tx>;
    before(async () => {
      target = await open();
    });
    after(() => target.close());

    const read = async (id: string) =>
      (await target.store.readStream(target.autoCommit, TYPE, id)).events;

    it("each event field is read exactly once, through a Proxy", async () => {
      const { proxy, reads } = counted(event({ aggregateId: "proxy", metadata: { a: 1 } }));
      await target.store.append(target.autoCommit, noStream(), [proxy as unknown as Event]);
      for (const [key, count] of reads) {
        assert.equal(count, 1, `${String(key)} read ${count} times`);
      }
      assert.equal((await read("proxy")).length, 1);
    });

    it("a getter that turns hostile after the first read: the first value is written", async () => {
      const id = flipping("flip", "x".repeat(5000));
      const payload = flipping(new Uint8Array([7, 7]), "not bytes");
      const note = flipping("ok", "\u0000");
      const input = event();
      Object.defineProperty(input, "aggregateId", { get: id.get, enumerable: true });
      Object.defineProperty(input, "payload", { get: payload.get, enumerable: true });
      const metadata = {};
      Object.defineProperty(metadata, "note", { get: note.get, enumerable: true });
      input.metadata = metadata;
      const result = await target.store.append(target.autoCommit, noStream(), [
        input as unknown as Event,
      ]);
      assert.deepEqual([id.reads, payload.reads, note.reads], [1, 1, 1]);
      for (const stored of [result.events[0], (await read("flip"))[0]]) {
        assert.equal(stored.aggregateId, "flip");
        assert.deepEqual(stored.payload, new Uint8Array([7, 7]));
        assert.deepEqual(stored.metadata, { note: "ok" });
      }
    });

    it("an events list behind a Proxy: length and each index read once", async () => {
      const { proxy, reads } = counted([
        event({ aggregateId: "list" }),
        event({ aggregateId: "list" }),
      ]);
      await target.store.append(target.autoCommit, noStream(), proxy as unknown as Event[]);
      assert.equal(reads.get("length"), 1);
      assert.equal(reads.get("0"), 1);
      assert.equal(reads.get("1"), 1);
      assert.equal((await read("list")).length, 2);
    });

    it("Dates and metadata changed after append() was called are written as they were", async () => {
      const createdAt = new Date("2026-01-02T03:04:05.678Z");
      const metadata = { n: 1, list: ["a"] };
      const pending = target.store.append(target.autoCommit, noStream(), [
        event({ aggregateId: "late", createdAt, metadata }) as unknown as Event,
      ]);
      // On the pool the statement is built after BEGIN's round trip: these must not reach it.
      createdAt.setTime(NaN);
      metadata.n = NaN;
      metadata.list.push("\u0000");
      const [echo] = (await pending).events;
      const [stored] = await read("late");
      for (const e of [echo, stored]) {
        assert.equal(e.createdAt.getTime(), Date.parse("2026-01-02T03:04:05.678Z"));
        assert.deepEqual(e.metadata, { n: 1, list: ["a"] });
      }
    });

    it("a Uint8Array subclass (Buffer, or one lying about its length) is taken as its bytes", async () => {
      class Lying extends Uint8Array {
        override get length() {
          return 1_000_000;
        }
      }
      const cases: Array<[string, Uint8Array]> = [
        ["buffer", Buffer.from([4, 5, 6])],
        ["lying", new Lying([4, 5, 6])],
      ];
      for (const [id, payload] of cases) {
        const [echo] = (await target.store.append(target.autoCommit, noStream(), [
          event({ aggregateId: id, payload }) as unknown as Event,
        ])).events;
        const [stored] = await read(id);
        for (const e of [echo, stored]) {
          assert.equal(Object.getPrototypeOf(e.payload), Uint8Array.prototype);
          assert.deepEqual(e.payload, new Uint8Array([4, 5, 6]));
        }
      }
    });

    it("a payload whose resizable buffer shrinks after append() was called is written whole", async () => {
      const buffer = new ArrayBuffer(3, { maxByteLength: 16 });
      const payload = new Uint8Array(buffer);
      payload.set([4, 5, 6]);
      const pending = target.store.append(target.autoCommit, noStream(), [
        event({ aggregateId: "resizable", payload }) as unknown as Event,
      ]);
      buffer.resize(0);
      const [echo] = (await pending).events;
      const [stored] = await read("resizable");
      for (const e of [echo, stored]) assert.deepEqual(e.payload, new Uint8Array([4, 5, 6]));
    });

    it("a Date subclass is read through Date's own slot, not its overrides", async () => {
      class Liar extends Date {
        override getTime() {
          return 0;
        }
      }
      const time = Date.parse("2025-05-05T05:05:05.005Z");
      await target.store.append(target.autoCommit, noStream(), [
        event({ aggregateId: "date", createdAt: new Liar(time) }) as unknown as Event,
      ]);
      assert.equal((await read("date"))[0].createdAt.getTime(), time);
    });
  });
}

hostileSuite("PostgresStore on PostgreSQL", () => postgresTarget());
hostileSuite("InMemoryEventStore", inMemoryTarget);

describe("largest accepted key: partitioned PostgresStore", () => {
  it(`${MAX_TEXT_BYTES}-byte incompressible type and id fit the partitioned table's index`, async () => {
    const target = await postgresTarget(true);
    try {
      const aggregateType = randomText(MAX_TEXT_BYTES, 200);
      const aggregateId = randomText(MAX_TEXT_BYTES, 201);
      await target.store.append(target.autoCommit, noStream(), [
        { aggregateType, aggregateId, eventType: "E", payload: bytes() },
      ]);
      const stream = await target.store.readStream(target.autoCommit, aggregateType, aggregateId);
      assert.equal(stream.version, 1);
    } finally {
      await target.close();
    }
  });
});
