/**
 * Snapshots of aggregate state: the storage port, codecs, transformers (gzip), policies, and the
 * chain that turns a state into stored bytes and back, with upcasting between schema versions.
 * Nothing here knows about SQL; `PostgresSnapshotStore` and `InMemorySnapshotStore` are adapters
 * of {@link SnapshotStore}.
 *
 * A snapshot is a cache: the events are the truth. Whatever cannot be trusted (an unknown encoding,
 * bytes that do not decode, a schema version without an upcaster path, a version the stream does
 * not hold) is rejected, and the aggregate is replayed from its events instead.
 *
 * @module
 */
import { ValidationError } from "../store/errors.ts";
import type { EventStore, PersistedEvent } from "../store/types.ts";
import { checkAggregate } from "../store/validation.ts";

/**
 * A stored snapshot: the state of one aggregate after the event at `aggregateVersion`, encoded.
 *
 * @example
 * ```ts
 * import type { StoredSnapshot } from "@eventsalsa/eventsalsa/command";
 * function describe(snapshot: StoredSnapshot): string {
 *   return `${snapshot.aggregateType}/${snapshot.aggregateId}@${snapshot.aggregateVersion} ` +
 *     `(schema ${snapshot.schemaVersion}, ${snapshot.encoding}, ${snapshot.payload.length} bytes)`;
 * }
 * ```
 */
export interface StoredSnapshot {
  /** The aggregate's type. */
  readonly aggregateType: string;
  /** The aggregate's id. */
  readonly aggregateId: string;
  /** The state's schema version (a positive integer you bump when the state's shape changes). */
  readonly schemaVersion: number;
  /** The version of the last event folded into the state (at least 1). */
  readonly aggregateVersion: number;
  /** The id of that event: a snapshot is trusted only if the stream still holds this event there. */
  readonly eventId: string;
  /** The codec and transformers that produced `payload`, e.g. `"json+gzip"`. */
  readonly encoding: string;
  /** The encoded state. */
  readonly payload: Uint8Array;
  /** When it was written; set by the store (ignored on `put`). */
  readonly createdAt?: Date;
}

/**
 * A snapshot and the events from its version on (the event at its version first, so the caller
 * can check the snapshot against the stream), or, with no snapshot, the whole stream.
 *
 * @example
 * ```ts
 * import type { SnapshotAndStream } from "@eventsalsa/eventsalsa/command";
 * function delta(loaded: SnapshotAndStream): number {
 *   return loaded.snapshot === null ? loaded.events.length : loaded.events.length - 1;
 * }
 * ```
 */
export interface SnapshotAndStream {
  /** The newest snapshot at or below the requested schema version, or null. */
  readonly snapshot: StoredSnapshot | null;
  /**
   * With a snapshot at version S: the events with version ≥ S, ascending. Without: every event.
   */
  readonly events: readonly PersistedEvent[];
}

/**
 * Where snapshots are kept. `Tx` is the event store's transaction handle, so a snapshot is read and
 * written in the same transaction as the events. `PostgresSnapshotStore` and `InMemorySnapshotStore`
 * implement it; the contract is small enough to implement for anything else.
 *
 * @example
 * ```ts
 * import type { SnapshotStore, StoredSnapshot } from "@eventsalsa/eventsalsa/command";
 *
 * // A process-local store, for a single-process application that only wants speed.
 * const rows = new Map<string, StoredSnapshot>();
 * const key = (type: string, id: string, schema: number) => `${type}\u0000${id}\u0000${schema}`;
 * const local: SnapshotStore<unknown> = {
 *   get(_tx, type, id, maxSchemaVersion) {
 *     for (let v = maxSchemaVersion; v >= 1; v--) {
 *       const row = rows.get(key(type, id, v));
 *       if (row) return Promise.resolve(row);
 *     }
 *     return Promise.resolve(null);
 *   },
 *   put(_tx, snapshot, replacing) {
 *     const k = key(snapshot.aggregateType, snapshot.aggregateId, snapshot.schemaVersion);
 *     const old = rows.get(k);
 *     const stale = replacing !== null && old?.aggregateVersion === replacing.aggregateVersion &&
 *       old.eventId === replacing.eventId;
 *     if (old && old.aggregateVersion > snapshot.aggregateVersion && !stale) {
 *       return Promise.resolve(false);
 *     }
 *     rows.set(k, snapshot);
 *     return Promise.resolve(true);
 *   },
 * };
 * ```
 */
export interface SnapshotStore<Tx> {
  /**
   * The snapshot with the highest schema version ≤ `maxSchemaVersion` for the aggregate, or null.
   */
  get(
    tx: Tx,
    aggregateType: string,
    aggregateId: string,
    maxSchemaVersion: number,
  ): Promise<StoredSnapshot | null>;
  /**
   * Writes the snapshot unless the stored one for the same key (type, id, schema version) is at a
   * higher aggregate version (monotonic: a slow writer never replaces a newer snapshot with an
   * older one). `replacing`, when given, names a stored snapshot found to be an orphan (its event
   * is not in the stream): that exact row may be replaced even if its version is higher. Resolves
   * to whether the snapshot was written.
   */
  put(
    tx: Tx,
    snapshot: StoredSnapshot,
    replacing: SnapshotIdentity | null,
  ): Promise<boolean>;
  /**
   * Optional: the snapshot and the events from its version on, in one round trip. Resolves to
   * `undefined` when this store cannot do it for `eventStore` (the caller then uses `get` and
   * `readStream`).
   */
  getWithStream?(
    tx: Tx,
    eventStore: EventStore<Tx>,
    aggregateType: string,
    aggregateId: string,
    maxSchemaVersion: number,
  ): Promise<SnapshotAndStream | undefined>;
}

/**
 * Which stored snapshot row a `put` may replace: its version and event id as read.
 *
 * @example
 * ```ts
 * import type { SnapshotIdentity } from "@eventsalsa/eventsalsa/command";
 * const orphan: SnapshotIdentity = { aggregateVersion: 50, eventId: "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6f" };
 * ```
 */
export interface SnapshotIdentity {
  /** The stored row's aggregate version. */
  readonly aggregateVersion: number;
  /** The stored row's event id. */
  readonly eventId: string;
}

/**
 * Turns a state into bytes and back. `name` is stored with every snapshot: a snapshot written
 * under another name is never decoded with this codec (it is rejected and the aggregate replayed).
 *
 * @example
 * ```ts
 * import type { SnapshotCodec } from "@eventsalsa/eventsalsa/command";
 *
 * // A state holding a Map, which JSON cannot carry.
 * type Cart = { items: Map<string, number> };
 * const cartCodec: SnapshotCodec<Cart> = {
 *   name: "cart-json-v1",
 *   encode: (cart) => new TextEncoder().encode(JSON.stringify([...cart.items])),
 *   decode: (bytes) => ({ items: new Map(JSON.parse(new TextDecoder().decode(bytes))) }),
 * };
 * ```
 */
export interface SnapshotCodec<State> {
  /** Identifies the format in stored snapshots: letters, digits, `-`, `_`, `.`, at most 64. */
  readonly name: string;
  /** State to bytes. Throw when the state cannot be represented faithfully. */
  encode(state: State): Uint8Array | Promise<Uint8Array>;
  /**
   * Bytes to data. For a snapshot of an older schema version the data is in that version's shape
   * and is lifted by the upcasters afterwards, so decode without assuming the current shape.
   */
  decode(bytes: Uint8Array): unknown;
}

/**
 * A bytes-to-bytes step after the codec (compression, encryption): `encode` on write, `decode` on
 * read, applied in reverse order. Its `name` is part of the stored encoding.
 *
 * @example
 * ```ts
 * import type { SnapshotTransformer } from "@eventsalsa/eventsalsa/command";
 * const reverse: SnapshotTransformer = {
 *   name: "reverse",
 *   encode: (bytes) => bytes.slice().reverse(),
 *   decode: (bytes) => bytes.slice().reverse(),
 * };
 * ```
 */
export interface SnapshotTransformer {
  /** Identifies the step in stored snapshots: letters, digits, `-`, `_`, `.`, at most 64. */
  readonly name: string;
  /** Applied on write. */
  encode(bytes: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /** Applied on read; throw when the bytes are not what `encode` produced. */
  decode(bytes: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * What a {@link SnapshotPolicy} function is told after a command appended events.
 *
 * @example
 * ```ts
 * import type { SnapshotPolicyContext } from "@eventsalsa/eventsalsa/command";
 * const due = (c: SnapshotPolicyContext<unknown>) => c.version - c.snapshotVersion >= 50;
 * ```
 */
export interface SnapshotPolicyContext<State> {
  /** The aggregate's id. */
  readonly aggregateId: string;
  /** The head version after the command's append. */
  readonly version: number;
  /** The head version the command decided on. */
  readonly previousVersion: number;
  /** The version of the snapshot the load used, or 0 when it used none (or rejected it). */
  readonly snapshotVersion: number;
  /** The events appended by the command. */
  readonly appended: number;
  /** The state after the command. */
  readonly state: State;
}

/**
 * When to write a snapshot after a command: a number `n` (at least `n` events since the snapshot
 * the load used; `0` never) or a function of the {@link SnapshotPolicyContext}.
 *
 * @example
 * ```ts
 * import type { SnapshotPolicy } from "@eventsalsa/eventsalsa/command";
 * const every100: SnapshotPolicy<unknown> = 100;
 * const onClose: SnapshotPolicy<{ closed: boolean }> = ({ state }) => state.closed;
 * ```
 */
export type SnapshotPolicy<State> = number | ((context: SnapshotPolicyContext<State>) => boolean);

/**
 * A policy that asks for a snapshot once `n` events have been appended since the snapshot the
 * load used (or since the start of the stream when it used none). Counting from the loaded
 * snapshot, not from multiples of `n`, means a truncated or rejected snapshot is rewritten by the
 * next command. `n = 0` never snapshots.
 *
 * @example
 * ```ts
 * import { everyNEvents } from "@eventsalsa/eventsalsa/command";
 * const policy = everyNEvents(100);
 * console.log(policy({ aggregateId: "a", version: 250, previousVersion: 249, snapshotVersion: 150, appended: 1, state: null })); // true
 * ```
 */
export function everyNEvents(n: number): (context: SnapshotPolicyContext<unknown>) => boolean {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new ValidationError(`everyNEvents needs a non-negative integer, got ${String(n)}`);
  }
  return (context) => n > 0 && context.version - context.snapshotVersion >= n;
}

/** The policy as a function; validates numbers. */
export function policyFunction<State>(
  policy: SnapshotPolicy<State> | undefined,
): (context: SnapshotPolicyContext<State>) => boolean {
  if (policy === undefined) return everyNEvents(100);
  if (typeof policy === "number") return everyNEvents(policy);
  if (typeof policy !== "function") {
    throw new ValidationError("snapshot policy must be a number of events or a function");
  }
  return policy;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new ValidationError(
      `${what} name must be 1 to 64 letters, digits, "-", "_" or ".", got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

/**
 * A state that cannot be encoded faithfully (JSON would silently change it). Thrown before the
 * command's transaction commits, so the command fails and nothing is written.
 *
 * @example
 * ```ts
 * import { SnapshotEncodeError } from "@eventsalsa/eventsalsa/command";
 * const error = new SnapshotEncodeError("state.at is a Date");
 * console.log(error.name); // "SnapshotEncodeError"
 * ```
 */
export class SnapshotEncodeError extends Error {
  /** Stable error name. */
  override readonly name: string = "SnapshotEncodeError";
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return (value as object).constructor?.name ?? "an object without a prototype";
}

/**
 * Throws {@link SnapshotEncodeError} unless `JSON.stringify` then `JSON.parse` gives back an equal
 * value: plain objects (properties that are `undefined` are dropped, which reads the same), arrays
 * without holes or `undefined`, strings, finite numbers, booleans and null, without cycles.
 */
function checkJsonFaithful(value: unknown, path: string, seen: Set<object>): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (Number.isFinite(value)) return;
      throw new SnapshotEncodeError(`${path} is ${value}, which JSON writes as null`);
    case "object": {
      if (value === null) return;
      if (seen.has(value)) throw new SnapshotEncodeError(`${path} is a cycle`);
      const proto = Object.getPrototypeOf(value);
      if (Array.isArray(value)) {
        seen.add(value);
        for (let i = 0; i < value.length; i++) {
          if (!(i in value) || value[i] === undefined) {
            throw new SnapshotEncodeError(`${path}[${i}] is missing, which JSON writes as null`);
          }
          checkJsonFaithful(value[i], `${path}[${i}]`, seen);
        }
        seen.delete(value);
        return;
      }
      if (proto !== Object.prototype && proto !== null) {
        throw new SnapshotEncodeError(
          `${path} is ${describeValue(value)}, which JSON does not give back: ` +
            "keep the state plain JSON or give the snapshots a codec",
        );
      }
      seen.add(value);
      for (const key of Object.keys(value)) {
        const item = (value as Record<string, unknown>)[key];
        if (item !== undefined) checkJsonFaithful(item, `${path}.${key}`, seen);
      }
      seen.delete(value);
      return;
    }
    default:
      throw new SnapshotEncodeError(`${path} is ${typeof value}, which JSON does not keep`);
  }
}

/**
 * The default snapshot codec: UTF-8 JSON. It refuses (with {@link SnapshotEncodeError}) a state
 * that JSON would change on the way back (a `Date`, `Map`, `Set`, class instance, `NaN`, `BigInt`,
 * a hole or `undefined` in an array, a cycle), so a snapshot never restores a different state
 * than a replay; give such states a codec of their own.
 *
 * @example
 * ```ts
 * import { jsonCodec } from "@eventsalsa/eventsalsa/command";
 * const codec = jsonCodec<{ balance: number }>();
 * const bytes = await codec.encode({ balance: 5 });
 * console.log(codec.decode(bytes)); // { balance: 5 }
 * ```
 */
export function jsonCodec<State>(): SnapshotCodec<State> {
  return {
    name: "json",
    encode(state: State): Uint8Array {
      checkJsonFaithful(state, "state", new Set());
      return new TextEncoder().encode(JSON.stringify(state));
    },
    decode(bytes: Uint8Array): unknown {
      return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    },
  };
}

/**
 * Options for {@link gzip}.
 *
 * @example
 * ```ts
 * import { gzip, type GzipOptions } from "@eventsalsa/eventsalsa/command";
 * const options: GzipOptions = { maxDecompressedBytes: 64 * 1024 * 1024 };
 * const transformer = gzip(options);
 * ```
 */
export interface GzipOptions {
  /** A snapshot that inflates beyond this is rejected (and replayed); 256 MiB when omitted. */
  maxDecompressedBytes?: number;
}

async function drain(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) throw new RangeError(`decompressed snapshot exceeds ${limit} bytes`);
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function through(
  bytes: Uint8Array,
  transform: CompressionStream | DecompressionStream,
  limit: number,
): Promise<Uint8Array> {
  // A Blob's stream piped through the transform: pipeThrough handles the writable side's errors,
  // so a corrupt input rejects the read below and leaves no unhandled rejection behind.
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return drain(new Blob([copy]).stream().pipeThrough(transform), limit);
}

/**
 * Gzip compression of the encoded state, with the runtime's own `CompressionStream` (built into
 * Deno and Bun; no dependency). Worth it for large, repetitive states; each snapshot records it, so
 * turning it on or off later only makes older snapshots miss (they are replayed and rewritten).
 *
 * @example
 * ```ts
 * import { gzip } from "@eventsalsa/eventsalsa/command";
 * const transformer = gzip();
 * const packed = await transformer.encode(new TextEncoder().encode("a".repeat(1000)));
 * console.log(packed.length < 100); // true
 * ```
 */
export function gzip(options: GzipOptions = {}): SnapshotTransformer {
  const limit = options.maxDecompressedBytes ?? 256 * 1024 * 1024;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ValidationError(`maxDecompressedBytes must be a positive integer, got ${limit}`);
  }
  return {
    name: "gzip",
    encode: (bytes) => through(bytes, new CompressionStream("gzip"), Number.MAX_SAFE_INTEGER),
    decode: (bytes) => through(bytes, new DecompressionStream("gzip"), limit),
  };
}

/**
 * Why a stored snapshot was not used. `orphan`: the stream does not hold the snapshot's event at
 * its version (the stream was rewritten, restored, or never committed it). `newer-schema`: written
 * by newer code. `no-upcaster`: an older schema version with no upcaster path to the current one.
 * `encoding`: written with another codec or transformers. `corrupt`: the bytes did not decode, or
 * an upcaster threw.
 *
 * @example
 * ```ts
 * import type { SnapshotRejectionReason } from "@eventsalsa/eventsalsa/command";
 * const reason: SnapshotRejectionReason = "orphan";
 * ```
 */
export type SnapshotRejectionReason =
  | "orphan"
  | "newer-schema"
  | "no-upcaster"
  | "encoding"
  | "corrupt";

/**
 * A rejected snapshot: what was found and why it was not used. The aggregate was replayed from
 * its events instead (unless the handler is configured to fail on corrupt snapshots).
 *
 * @example
 * ```ts
 * import type { SnapshotRejection } from "@eventsalsa/eventsalsa/command";
 * const log = (r: SnapshotRejection) =>
 *   console.warn(`snapshot of ${r.aggregateId}@${r.aggregateVersion} rejected: ${r.reason}`);
 * ```
 */
export interface SnapshotRejection {
  /** Why. */
  readonly reason: SnapshotRejectionReason;
  /** The aggregate's type. */
  readonly aggregateType: string;
  /** The aggregate's id. */
  readonly aggregateId: string;
  /** The rejected snapshot's aggregate version. */
  readonly aggregateVersion: number;
  /** The rejected snapshot's schema version. */
  readonly schemaVersion: number;
  /** The rejected snapshot's event id. */
  readonly eventId: string;
  /** What went wrong, for `corrupt`: the codec's, transformer's or upcaster's error. */
  readonly error: unknown;
}

/**
 * A snapshot could not be decoded and the handler was configured with `corrupt: "fail"`. Nothing
 * was written.
 *
 * @example
 * ```ts
 * import { SnapshotDecodeError } from "@eventsalsa/eventsalsa/command";
 * function isCorrupt(error: unknown): boolean {
 *   return error instanceof SnapshotDecodeError;
 * }
 * ```
 */
export class SnapshotDecodeError extends Error {
  /** Stable error name. */
  override readonly name: string = "SnapshotDecodeError";
  /** The rejection, with the underlying error. */
  readonly rejection: SnapshotRejection;
  /** Creates the error from the rejection. */
  constructor(rejection: SnapshotRejection) {
    super(
      `snapshot of ${rejection.aggregateType}/${rejection.aggregateId} at version ` +
        `${rejection.aggregateVersion} (schema ${rejection.schemaVersion}) cannot be decoded: ` +
        String((rejection.error as Error | undefined)?.message ?? rejection.error),
      { cause: rejection.error },
    );
    this.rejection = rejection;
  }
}

/**
 * The snapshot settings of a command handler.
 *
 * @example
 * ```ts
 * import { gzip, type SnapshotOptions } from "@eventsalsa/eventsalsa/command";
 * import { InMemorySnapshotStore } from "@eventsalsa/eventsalsa/testing";
 *
 * const options: SnapshotOptions<{ balance: number }, unknown> = {
 *   store: new InMemorySnapshotStore(),
 *   schemaVersion: 2,
 *   upcasters: { 1: (v1) => ({ balance: (v1 as { amount: number }).amount }) },
 *   policy: 100,
 *   transformers: [gzip()],
 * };
 * ```
 */
export interface SnapshotOptions<State, Tx> {
  /** Where snapshots live: `PostgresSnapshotStore`, `InMemorySnapshotStore`, or your own. */
  readonly store: SnapshotStore<Tx>;
  /** The current schema version of the state, a positive integer; 1 when omitted. */
  readonly schemaVersion?: number;
  /** `upcasters[v]` lifts decoded data of schema version `v` to `v + 1`. A gap rejects the snapshot. */
  readonly upcasters?: Readonly<Record<number, (data: unknown) => unknown>>;
  /** When to write; every 100 events when omitted. */
  readonly policy?: SnapshotPolicy<State>;
  /** State to bytes; {@link jsonCodec} when omitted. */
  readonly codec?: SnapshotCodec<State>;
  /** Steps after the codec, e.g. `[gzip()]`; none when omitted. */
  readonly transformers?: readonly SnapshotTransformer[];
  /**
   * `"transaction"` (default): written in the command's transaction, atomically with the events.
   * `"afterCommit"`: written after the handler's own transaction commits, in a statement of its
   * own, so the command's transaction stays short and a failing write cannot fail the command (it
   * goes to `onWriteError`). In the caller's transaction the handler cannot see the commit, so it
   * writes in that transaction either way.
   */
  readonly write?: "transaction" | "afterCommit";
  /** `"replay"` (default): a snapshot that does not decode is ignored; `"fail"`: throw {@link SnapshotDecodeError}. */
  readonly corrupt?: "replay" | "fail";
  /** Told about every rejected snapshot (after which the aggregate is replayed). */
  readonly onRejected?: (rejection: SnapshotRejection) => void;
  /** Told about a failed `"afterCommit"` write (the command itself succeeded). */
  readonly onWriteError?: (error: unknown, snapshot: StoredSnapshot) => void;
}

/** The validated snapshot settings, ready for the handler. */
export interface SnapshotSettings<State, Tx> {
  readonly store: SnapshotStore<Tx>;
  readonly schemaVersion: number;
  readonly upcasters: Readonly<Record<number, (data: unknown) => unknown>>;
  readonly policy: (context: SnapshotPolicyContext<State>) => boolean;
  readonly codec: SnapshotCodec<State>;
  readonly transformers: readonly SnapshotTransformer[];
  readonly encoding: string;
  readonly write: "transaction" | "afterCommit";
  readonly corrupt: "replay" | "fail";
  readonly onRejected: ((rejection: SnapshotRejection) => void) | null;
  readonly onWriteError: ((error: unknown, snapshot: StoredSnapshot) => void) | null;
}

/** Validates snapshot options (a `ValidationError` for anything wrong) and fills in defaults. */
export function snapshotSettings<State, Tx>(
  options: SnapshotOptions<State, Tx>,
): SnapshotSettings<State, Tx> {
  if (typeof options !== "object" || options === null) {
    throw new ValidationError("snapshots must be an object with at least a store");
  }
  const store = options.store;
  if (
    typeof store !== "object" || store === null || typeof store.get !== "function" ||
    typeof store.put !== "function"
  ) {
    throw new ValidationError("snapshots.store must have get and put (a SnapshotStore)");
  }
  const schemaVersion = options.schemaVersion ?? 1;
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1 || schemaVersion > 2147483647) {
    throw new ValidationError(
      `snapshots.schemaVersion must be a positive integer, got ${String(schemaVersion)}`,
    );
  }
  const upcasters = options.upcasters ?? {};
  if (typeof upcasters !== "object" || upcasters === null) {
    throw new ValidationError("snapshots.upcasters must be an object of functions");
  }
  for (const [key, upcaster] of Object.entries(upcasters)) {
    const from = Number(key);
    if (!Number.isSafeInteger(from) || from < 1 || from >= schemaVersion) {
      throw new ValidationError(
        `snapshots.upcasters[${key}]: keys are the schema versions lifted from, 1 to ${
          schemaVersion - 1
        }`,
      );
    }
    if (typeof upcaster !== "function") {
      throw new ValidationError(`snapshots.upcasters[${key}] must be a function`);
    }
  }
  const codec = options.codec ?? jsonCodec<State>();
  if (
    typeof codec !== "object" || codec === null || typeof codec.encode !== "function" ||
    typeof codec.decode !== "function"
  ) {
    throw new ValidationError("snapshots.codec must have name, encode and decode");
  }
  const transformers = options.transformers ?? [];
  if (!Array.isArray(transformers)) {
    throw new ValidationError("snapshots.transformers must be an array");
  }
  const names = [checkName(codec.name, "snapshot codec")];
  for (const transformer of transformers) {
    if (
      typeof transformer !== "object" || transformer === null ||
      typeof transformer.encode !== "function" || typeof transformer.decode !== "function"
    ) {
      throw new ValidationError("each snapshot transformer must have name, encode and decode");
    }
    names.push(checkName(transformer.name, "snapshot transformer"));
  }
  const write = options.write ?? "transaction";
  if (write !== "transaction" && write !== "afterCommit") {
    throw new ValidationError(
      `snapshots.write must be "transaction" or "afterCommit", got ${JSON.stringify(write)}`,
    );
  }
  const corrupt = options.corrupt ?? "replay";
  if (corrupt !== "replay" && corrupt !== "fail") {
    throw new ValidationError(
      `snapshots.corrupt must be "replay" or "fail", got ${JSON.stringify(corrupt)}`,
    );
  }
  for (const hook of ["onRejected", "onWriteError"] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== "function") {
      throw new ValidationError(`snapshots.${hook} must be a function`);
    }
  }
  return {
    store,
    schemaVersion,
    upcasters: { ...upcasters },
    policy: policyFunction(options.policy),
    codec,
    transformers: [...transformers],
    encoding: names.join("+"),
    write,
    corrupt,
    onRejected: options.onRejected ?? null,
    onWriteError: options.onWriteError ?? null,
  };
}

/** State to stored bytes: the codec, then each transformer in order. */
export async function encodeSnapshot<State, Tx>(
  settings: SnapshotSettings<State, Tx>,
  state: State,
): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await settings.codec.encode(state);
    for (const transformer of settings.transformers) bytes = await transformer.encode(bytes);
  } catch (error) {
    if (error instanceof SnapshotEncodeError) throw error;
    throw new SnapshotEncodeError(
      `the snapshot codec or a transformer failed: ${(error as Error)?.message ?? error}`,
      { cause: error },
    );
  }
  if (!(bytes instanceof Uint8Array)) {
    throw new SnapshotEncodeError("the snapshot codec and transformers must produce a Uint8Array");
  }
  return bytes;
}

/** A decoded snapshot, or why it was rejected. */
export type DecodedSnapshot<State> =
  | { readonly ok: true; readonly state: State; readonly upcastFrom: number | null }
  | { readonly ok: false; readonly reason: SnapshotRejectionReason; readonly error: unknown };

/**
 * Stored bytes to state: the transformers in reverse, the codec, then the upcasters from the
 * snapshot's schema version to the current one. Never throws: a failure is a rejection.
 */
export async function decodeSnapshot<State, Tx>(
  settings: SnapshotSettings<State, Tx>,
  snapshot: StoredSnapshot,
): Promise<DecodedSnapshot<State>> {
  if (snapshot.schemaVersion > settings.schemaVersion) {
    return { ok: false, reason: "newer-schema", error: null };
  }
  for (let v = snapshot.schemaVersion; v < settings.schemaVersion; v++) {
    if (typeof settings.upcasters[v] !== "function") {
      return { ok: false, reason: "no-upcaster", error: null };
    }
  }
  if (snapshot.encoding !== settings.encoding) {
    return { ok: false, reason: "encoding", error: null };
  }
  try {
    let bytes = snapshot.payload;
    for (let i = settings.transformers.length - 1; i >= 0; i--) {
      bytes = await settings.transformers[i].decode(bytes);
    }
    let data = await settings.codec.decode(bytes);
    for (let v = snapshot.schemaVersion; v < settings.schemaVersion; v++) {
      data = await settings.upcasters[v](data);
    }
    return {
      ok: true,
      state: data as State,
      upcastFrom: snapshot.schemaVersion < settings.schemaVersion ? snapshot.schemaVersion : null,
    };
  } catch (error) {
    return { ok: false, reason: "corrupt", error };
  }
}

/** Whether the first event of `events` is the snapshot's event, at the snapshot's version. */
export function snapshotMatchesStream(
  snapshot: StoredSnapshot,
  events: readonly PersistedEvent[],
): boolean {
  const first = events[0];
  return first !== undefined && first.aggregateVersion === snapshot.aggregateVersion &&
    first.eventId.toLowerCase() === snapshot.eventId.toLowerCase();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_INT4 = 2147483647;

/** Validates a snapshot before it reaches SQL; a `ValidationError` names the bad field. */
export function checkStoredSnapshot(snapshot: StoredSnapshot): StoredSnapshot {
  if (typeof snapshot !== "object" || snapshot === null) {
    throw new ValidationError("snapshot must be an object");
  }
  const { aggregateType, aggregateId } = checkAggregate(
    snapshot.aggregateType,
    snapshot.aggregateId,
  );
  const { schemaVersion, aggregateVersion, eventId, encoding, payload } = snapshot;
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1 || schemaVersion > MAX_INT4) {
    throw new ValidationError(
      `snapshot schemaVersion must be a positive int4, got ${schemaVersion}`,
    );
  }
  if (!Number.isSafeInteger(aggregateVersion) || aggregateVersion < 1) {
    throw new ValidationError(
      `snapshot aggregateVersion must be a positive integer, got ${aggregateVersion}`,
    );
  }
  if (typeof eventId !== "string" || !UUID.test(eventId)) {
    throw new ValidationError(`snapshot eventId must be a UUID, got ${JSON.stringify(eventId)}`);
  }
  if (typeof encoding !== "string" || encoding.length === 0 || encoding.length > 1024) {
    throw new ValidationError("snapshot encoding must be a non-empty string");
  }
  if (!(payload instanceof Uint8Array)) {
    throw new ValidationError("snapshot payload must be a Uint8Array");
  }
  return {
    aggregateType,
    aggregateId,
    schemaVersion,
    aggregateVersion,
    eventId,
    encoding,
    payload,
  };
}

/** Validates the identity of a row a put may replace. */
export function checkSnapshotIdentity(replacing: SnapshotIdentity | null): SnapshotIdentity | null {
  if (replacing === null || replacing === undefined) return null;
  if (
    typeof replacing !== "object" || !Number.isSafeInteger(replacing.aggregateVersion) ||
    typeof replacing.eventId !== "string" || !UUID.test(replacing.eventId)
  ) {
    throw new ValidationError("replacing must be null or { aggregateVersion, eventId }");
  }
  return { aggregateVersion: replacing.aggregateVersion, eventId: replacing.eventId };
}

/** Validates a schema version bound for `get`. */
export function checkMaxSchemaVersion(maxSchemaVersion: number): number {
  if (
    !Number.isSafeInteger(maxSchemaVersion) || maxSchemaVersion < 1 || maxSchemaVersion > MAX_INT4
  ) {
    throw new ValidationError(
      `maxSchemaVersion must be a positive int4, got ${String(maxSchemaVersion)}`,
    );
  }
  return maxSchemaVersion;
}
