import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { keyStoreContract } from "../encryption/key_store_contract.ts";
import { createEncryption, KeyDestroyedError, keyringFromMap } from "../encryption/mod.ts";
import { noStream } from "../store/expected_version.ts";
import { FakeClock } from "./fake_clock.ts";
import { InMemoryKeyStore } from "./in_memory_key_store.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "./in_memory_store.ts";

keyStoreContract<InMemoryTransaction | null>("InMemoryKeyStore", () => {
  const store = new InMemoryKeyStore();
  const events = new InMemoryEventStore();
  return Promise.resolve({
    store,
    base: null,
    transaction: <T>(work: (tx: InMemoryTransaction | null) => Promise<T>) =>
      events.transaction((tx) => work(tx)),
    seed: (row) => {
      store.seed({ ...row, revokedAt: row.revoked ? new Date() : null });
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  });
});

describe("InMemoryKeyStore specifics", () => {
  it("stamps rows and tombstones with the injected clock", async () => {
    const clock = new FakeClock(Date.parse("2025-01-01T00:00:00Z"));
    const store = new InMemoryKeyStore({ clock });
    const dek = new Uint8Array(60).fill(1);
    await store.createKey(null, { scope: "s", scopeId: "i", encryptedDek: dek, systemKeyId: "k" });
    await clock.advance(1000);
    await store.rotateKey(null, { scope: "s", scopeId: "i", encryptedDek: dek, systemKeyId: "k" });
    const [v1, v2] = store.rows();
    assert.equal(v1.createdAt.toISOString(), "2025-01-01T00:00:00.000Z");
    assert.equal(v1.revokedAt?.toISOString(), "2025-01-01T00:00:01.000Z");
    assert.equal(v2.createdAt.toISOString(), "2025-01-01T00:00:01.000Z");
    await clock.advance(1000);
    await store.destroyKeys(null, "s", "i");
    assert.deepEqual(store.rows(), []);
    assert.deepEqual(
      store.tombstones().map((t) => [t.scopeId, t.maxKeyVersion, t.destroyedAt.toISOString()]),
      [
        ["i", 2, "2025-01-01T00:00:02.000Z"],
      ],
    );
  });

  it("seed replaces a row and rows() returns copies in key order", () => {
    const store = new InMemoryKeyStore();
    store.seed({
      scope: "b",
      scopeId: "1",
      keyVersion: 1,
      encryptedDek: new Uint8Array([1]),
      systemKeyId: "k",
    });
    store.seed({
      scope: "a",
      scopeId: "2",
      keyVersion: 2,
      encryptedDek: new Uint8Array([2]),
      systemKeyId: "k",
    });
    store.seed({
      scope: "a",
      scopeId: "2",
      keyVersion: 1,
      encryptedDek: new Uint8Array([3]),
      systemKeyId: "k",
    });
    store.seed({
      scope: "a",
      scopeId: "2",
      keyVersion: 1,
      encryptedDek: new Uint8Array([4]),
      systemKeyId: "k",
    });
    const rows = store.rows();
    assert.deepEqual(rows.map((r) => [r.scope, r.scopeId, r.keyVersion, r.encryptedDek[0]]), [
      ["a", "2", 1, 4],
      ["a", "2", 2, 2],
      ["b", "1", 1, 1],
    ]);
    rows[0].encryptedDek[0] = 99;
    assert.equal(store.rows()[0].encryptedDek[0], 4);
  });

  it("append UserDeleted + destroy the key commit or roll back as one (in memory)", async () => {
    const events = new InMemoryEventStore();
    const keys = new InMemoryKeyStore();
    const encryption = createEncryption({
      keyring: keyringFromMap({ k1: new Uint8Array(32).fill(9) }, "k1"),
      store: keys,
    });
    const pii = encryption.pii("user-pii");
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const email = await pii.encrypt(null, "u-1", "alice@example.com");
    const deleted = {
      aggregateType: "User",
      aggregateId: "u-1",
      eventType: "UserDeleted",
      payload: new Uint8Array(),
    };
    await assert.rejects(
      events.transaction(async (tx) => {
        await events.append(tx, noStream(), [deleted]);
        await encryption.keyManager.destroyKeys(tx, "user-pii", "u-1");
        throw new Error("crash before commit");
      }),
      /crash before commit/,
    );
    assert.equal(await pii.decrypt(null, "u-1", email), "alice@example.com");
    assert.equal((await events.readStream(events, "User", "u-1")).version, 0);
    await events.transaction(async (tx) => {
      await events.append(tx, noStream(), [deleted]);
      await encryption.keyManager.destroyKeys(tx, "user-pii", "u-1");
    });
    await assert.rejects(pii.decrypt(null, "u-1", email), KeyDestroyedError);
  });
});
