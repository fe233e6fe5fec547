import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ValidationError } from "../store/errors.ts";
import { migrationSql, snapshotSchema } from "./migration.ts";
import { PostgresSnapshotStore } from "./snapshot_store_postgres.ts";
import {
  decodeSnapshot,
  encodeSnapshot,
  everyNEvents,
  gzip,
  jsonCodec,
  type SnapshotCodec,
  SnapshotEncodeError,
  snapshotSettings,
  type StoredSnapshot,
} from "./snapshots.ts";

const store = { get: () => Promise.resolve(null), put: () => Promise.resolve(true) };

function stored(payload: Uint8Array, overrides: Partial<StoredSnapshot> = {}): StoredSnapshot {
  return {
    aggregateType: "A",
    aggregateId: "a-1",
    schemaVersion: 1,
    aggregateVersion: 3,
    eventId: crypto.randomUUID(),
    encoding: "json",
    payload,
    ...overrides,
  };
}

describe("snapshot codecs, transformers and upcasting", () => {
  it("the JSON codec refuses what JSON would change, and keeps what it keeps", async () => {
    const codec = jsonCodec<unknown>();
    for (
      const bad of [
        { at: new Date() },
        { m: new Map() },
        { n: NaN },
        { n: Infinity },
        { b: 1n },
        [1, undefined],
        // deno-lint-ignore no-sparse-arrays
        [1, , 3],
        { f: () => 1 },
        new (class Point {
          x = 1;
        })(),
        undefined,
      ]
    ) {
      assert.throws(() => codec.encode(bad), SnapshotEncodeError, String(bad));
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => codec.encode(cyclic), /cycle/);
    const shared = { x: 1 };
    const good = { a: [shared, shared], s: "é\u0000", n: null, t: true, o: Object.create(null) };
    assert.deepEqual(codec.decode(await codec.encode(good)), JSON.parse(JSON.stringify(good)));
    assert.deepEqual(codec.decode(await codec.encode({ gone: undefined, kept: 1 })), { kept: 1 });
    assert.throws(() => codec.decode(new Uint8Array([0xff])), TypeError);
  });

  it("gzip round-trips, and rejects corrupt or oversized input without stray rejections", async () => {
    const transformer = gzip({ maxDecompressedBytes: 10_000 });
    const data = new TextEncoder().encode("state ".repeat(1000));
    const packed = await transformer.encode(data);
    assert.ok(packed.length < data.length / 10);
    assert.deepEqual(await transformer.decode(packed), data);
    await assert.rejects(Promise.resolve(transformer.decode(new Uint8Array([1, 2, 3, 4]))));
    await assert.rejects(
      Promise.resolve(transformer.decode(packed.subarray(0, packed.length - 4))),
    );
    const big = await transformer.encode(new Uint8Array(20_000));
    await assert.rejects(Promise.resolve(transformer.decode(big)), RangeError);
    assert.throws(() => gzip({ maxDecompressedBytes: 0 }), ValidationError);
    // Let any unobserved stream error surface inside this test.
    await new Promise((resolve) => setTimeout(resolve, 20));
  });

  it("encodes through the codec then the transformers, and decodes in reverse", async () => {
    const settings = snapshotSettings<{ n: number }, unknown>({
      store,
      transformers: [gzip()],
    });
    assert.equal(settings.encoding, "json+gzip");
    const payload = await encodeSnapshot(settings, { n: 7 });
    const decoded = await decodeSnapshot(settings, stored(payload, { encoding: "json+gzip" }));
    assert.deepEqual(decoded, { ok: true, state: { n: 7 }, upcastFrom: null });
  });

  it("rejects: newer schema, no upcaster path, another encoding, bytes that do not decode", async () => {
    const settings = snapshotSettings<{ total: number }, unknown>({
      store,
      schemaVersion: 3,
      upcasters: { 2: (v2) => ({ total: (v2 as { sum: number }).sum }) },
    });
    const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const reason = async (snapshot: StoredSnapshot) => {
      const decoded = await decodeSnapshot(settings, snapshot);
      return decoded.ok ? "ok" : decoded.reason;
    };
    assert.equal(await reason(stored(json({}), { schemaVersion: 4 })), "newer-schema");
    assert.equal(await reason(stored(json({}), { schemaVersion: 1 })), "no-upcaster");
    assert.equal(
      await reason(stored(json({}), { schemaVersion: 3, encoding: "cbor" })),
      "encoding",
    );
    assert.equal(await reason(stored(new Uint8Array([0x7b]), { schemaVersion: 3 })), "corrupt");
    const lifted = await decodeSnapshot(settings, stored(json({ sum: 5 }), { schemaVersion: 2 }));
    assert.deepEqual(lifted, { ok: true, state: { total: 5 }, upcastFrom: 2 });
    const throwing = snapshotSettings<unknown, unknown>({
      store,
      schemaVersion: 2,
      upcasters: {
        1: () => {
          throw new Error("cannot lift");
        },
      },
    });
    const failed = await decodeSnapshot(throwing, stored(json({}), { schemaVersion: 1 }));
    assert.equal(failed.ok, false);
    assert.equal(!failed.ok && failed.reason, "corrupt");
  });

  it("a user codec's name is the encoding; its failures become typed errors", async () => {
    const codec: SnapshotCodec<Map<string, number>> = {
      name: "entries-v1",
      encode: (map) => new TextEncoder().encode(JSON.stringify([...map])),
      decode: (bytes) => new Map(JSON.parse(new TextDecoder().decode(bytes))),
    };
    const settings = snapshotSettings({ store, codec });
    assert.equal(settings.encoding, "entries-v1");
    const map = new Map([["a", 1]]);
    const decoded = await decodeSnapshot(
      settings,
      stored(await encodeSnapshot(settings, map), { encoding: "entries-v1" }),
    );
    assert.ok(decoded.ok);
    assert.deepEqual(decoded.ok && decoded.state, map);
    const broken = snapshotSettings<number, unknown>({
      store,
      codec: {
        name: "broken",
        encode: () => {
          throw new Error("no");
        },
        decode: () => 0,
      },
    });
    await assert.rejects(encodeSnapshot(broken, 1), SnapshotEncodeError);
  });

  it("everyNEvents counts from the snapshot the load used", () => {
    const policy = everyNEvents(100);
    const context = { aggregateId: "a", previousVersion: 0, appended: 1, state: null };
    assert.equal(policy({ ...context, version: 99, snapshotVersion: 0 }), false);
    assert.equal(policy({ ...context, version: 100, snapshotVersion: 0 }), true);
    assert.equal(policy({ ...context, version: 199, snapshotVersion: 100 }), false);
    assert.equal(policy({ ...context, version: 5_000, snapshotVersion: 0 }), true);
    assert.equal(everyNEvents(0)({ ...context, version: 10_000, snapshotVersion: 0 }), false);
    assert.throws(() => everyNEvents(1.5), ValidationError);
  });
});

describe("snapshot table names", () => {
  it("validates and quotes custom names; schema-qualified names create their schema", () => {
    const ddl = migrationSql({ table: "app.account_snapshots" });
    assert.match(ddl, /CREATE SCHEMA IF NOT EXISTS "app";/);
    assert.match(ddl, /CREATE TABLE IF NOT EXISTS "app"\."account_snapshots"/);
    assert.match(ddl, /PRIMARY KEY \(aggregate_type, aggregate_id, schema_version\)/);
    assert.equal(
      snapshotSchema({ table: "app.account_snapshots" }).versionsTable.text,
      "app.eventsalsa_schema_versions",
    );
    for (const bad of ["snap shots", 'x"; DROP TABLE events; --', "a.b.c", "", "x".repeat(64)]) {
      assert.throws(() => migrationSql({ table: bad }), ValidationError, bad);
      assert.throws(() => new PostgresSnapshotStore({ table: bad }), ValidationError, bad);
    }
    assert.equal(new PostgresSnapshotStore({ table: "Mixed_Case" }).table, "Mixed_Case");
  });
});
