import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import { decryptWithKey, openWithNoble } from "./aes_gcm.ts";
import { decodeBase64Url } from "./encoding.ts";
import { Envelope } from "./envelope.ts";
import { es2AssociatedData } from "./envelope_format.ts";
import {
  DecryptionError,
  InvalidInputError,
  KeyDestroyedError,
  KeyExistsError,
  KeyNotFoundError,
  SystemKeyNotFoundError,
} from "./errors.ts";
import { KeyManager } from "./key_manager.ts";
import { keyringFromMap } from "./keyring.ts";
import type { RewrapFailure } from "./rewrap.ts";

// The Go library's key manager tests: KEK = bytes 0..31 with id sk-1.
const SK1 = Uint8Array.from({ length: 32 }, (_, i) => i);

function setup() {
  const store = new InMemoryKeyStore();
  const keyring = keyringFromMap({ "sk-1": SK1 }, "sk-1");
  return { store, keyring, keys: new KeyManager({ keyring, store }) };
}

describe("KeyManager (scenarios 19-25)", () => {
  it("19. createKey returns 1", async () => {
    const { keys } = setup();
    assert.equal(await keys.createKey(null, "user", "u-1"), 1);
  });

  it("20. a second createKey on the subject is KeyExistsError", async () => {
    const { keys } = setup();
    await keys.createKey(null, "user", "u-1");
    await assert.rejects(
      keys.createKey(null, "user", "u-1"),
      (error: KeyExistsError) =>
        error instanceof KeyExistsError && error.scope === "user" && error.scopeId === "u-1" &&
        error.keyVersion === 1,
    );
  });

  it("21/22. rotateKey returns 2, revokes v1, and v2 is active", async () => {
    const { keys, store } = setup();
    await keys.createKey(null, "user", "u-1");
    assert.equal(await keys.rotateKey(null, "user", "u-1"), 2);
    const [v1, v2] = store.rows();
    assert.ok(v1.revokedAt instanceof Date);
    assert.equal(v2.keyVersion, 2);
    assert.equal(v2.revokedAt, null);
  });

  it("23. rotateKey without a key is KeyNotFoundError", async () => {
    const { keys } = setup();
    await assert.rejects(keys.rotateKey(null, "user", "none"), KeyNotFoundError);
  });

  it("24. destroyKeys removes the subject's keys", async () => {
    const { keys, store } = setup();
    await keys.createKey(null, "user", "u-1");
    await keys.rotateKey(null, "user", "u-1");
    await keys.createKey(null, "user", "u-2");
    assert.equal(await keys.destroyKeys(null, "user", "u-1"), 2);
    assert.deepEqual(store.rows().map((r) => r.scopeId), ["u-2"]);
    assert.equal(await keys.destroyKeys(null, "user", "nobody"), 0);
  });

  it("25. activeKeyVersion is 1, then 2 after rotation", async () => {
    const { keys } = setup();
    await keys.createKey(null, "user", "u-1");
    assert.equal(await keys.activeKeyVersion(null, "user", "u-1"), 1);
    await keys.rotateKey(null, "user", "u-1");
    assert.equal(await keys.activeKeyVersion(null, "user", "u-1"), 2);
  });
});

describe("KeyManager beyond Go", () => {
  it("wraps new keys under the active system key and records its id", async () => {
    const store = new InMemoryKeyStore();
    const keyring = keyringFromMap({ old: new Uint8Array(32).fill(1), current: SK1 }, "current");
    const keys = new KeyManager({ keyring, store });
    await keys.createKey(null, "s", "i");
    await keys.createKey(null, "s", "j");
    const [row, other] = store.rows();
    assert.equal(row.systemKeyId, "current");
    assert.equal(row.encryptedDek.length, 60);
    const dek = decryptWithKey(SK1, row.encryptedDek);
    assert.equal(dek.length, 32);
    assert.notDeepEqual(decryptWithKey(SK1, other.encryptedDek), dek, "a fresh random key each");
    // The wrapped key is the one values are encrypted under.
    const envelope = new Envelope({ keyring, store });
    const value = await envelope.encryptVersioned(null, "s", "i", "x");
    const sealed = decodeBase64Url(value.ciphertext.slice("es2:1:".length))!;
    const aad = es2AssociatedData("s", "i", 1, undefined);
    assert.deepEqual(
      openWithNoble(dek, sealed.subarray(0, 12), sealed.subarray(12), aad),
      new TextEncoder().encode("x"),
    );
  });

  it("after destroyKeys: activeKeyVersion and rotateKey say destroyed; createKey starts above", async () => {
    const { keys } = setup();
    await keys.createKey(null, "user", "u-1");
    await keys.destroyKeys(null, "user", "u-1");
    await assert.rejects(keys.activeKeyVersion(null, "user", "u-1"), KeyDestroyedError);
    await assert.rejects(keys.rotateKey(null, "user", "u-1"), KeyDestroyedError);
    assert.equal(await keys.createKey(null, "user", "u-1"), 2);
    await assert.rejects(keys.activeKeyVersion(null, "user", "never"), KeyNotFoundError);
  });

  it("concurrent creates on one subject: one key and KeyExistsError for the others", async () => {
    const { keys, store } = setup();
    const results = await Promise.allSettled(
      [1, 2, 3].map(() => keys.createKey(null, "race", "r")),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    const rejected = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assert.equal(rejected.length, 2);
    assert.ok(rejected.every((r) => r.reason instanceof KeyExistsError));
    assert.equal(store.rows().length, 1);
  });

  it("revokeKeys keeps the newest version active and counts the others", async () => {
    const { keys, store } = setup();
    for (let v = 1; v <= 3; v++) {
      store.seed({
        scope: "s",
        scopeId: "i",
        keyVersion: v,
        encryptedDek: new Uint8Array(60),
        systemKeyId: "sk-1",
      });
    }
    assert.equal(await keys.revokeKeys(null, "s", "i"), 2);
    assert.equal(await keys.activeKeyVersion(null, "s", "i"), 3);
  });

  it("bad input is InvalidInputError and writes nothing", async () => {
    const { keys, store } = setup();
    const calls: [string, () => Promise<unknown>][] = [
      ["createKey empty scope", () => keys.createKey(null, "", "i")],
      ["createKey empty id", () => keys.createKey(null, "s", "")],
      ["createKey number id", () => keys.createKey(null, "s", 5 as unknown as string)],
      ["rotateKey empty scope", () => keys.rotateKey(null, "", "i")],
      ["revokeKeys empty id", () => keys.revokeKeys(null, "s", "")],
      ["destroyKeys empty scope", () => keys.destroyKeys(null, "", "i")],
      [
        "activeKeyVersion null scope",
        () => keys.activeKeyVersion(null, null as unknown as string, "i"),
      ],
      ["long scope", () => keys.createKey(null, "x".repeat(1025), "i")],
      // The store's rule for stored text: UTF-8 bytes, not characters, and no lone surrogates
      // (which UTF-8 would turn into U+FFFD, folding "a\uD800" and "a\uDBFF" into one key row).
      ["1,200-byte scope id", () => keys.createKey(null, "s", "é".repeat(600))],
      ["lone surrogate in scope id", () => keys.createKey(null, "s", "a\uD800")],
      ["lone surrogate in scope", () => keys.createKey(null, "\uDC00", "i")],
      ["NUL in scope id", () => keys.createKey(null, "s", "a\u0000")],
    ];
    for (const [what, call] of calls) await assert.rejects(call(), InvalidInputError, what);
    assert.deepEqual(store.rows(), []);
    assert.deepEqual(store.tombstones(), []);
  });

  it("construction needs a keyring and a store", () => {
    const { keyring, store } = setup();
    assert.throws(() => new KeyManager({ keyring, store: null as never }), InvalidInputError);
    assert.throws(() => new KeyManager({ keyring: undefined as never, store }), InvalidInputError);
  });
});

describe("KeyManager.rewrapSystemKeys (in memory)", () => {
  const oldKek = new Uint8Array(32).fill(0x11);
  const newKek = new Uint8Array(32).fill(0x22);

  async function seeded(count: number) {
    const store = new InMemoryKeyStore();
    const before = new KeyManager({ keyring: keyringFromMap({ old: oldKek }, "old"), store });
    for (let i = 0; i < count; i++) await before.createKey(null, "s", `id-${i}`);
    const keys = new KeyManager({
      keyring: keyringFromMap({ old: oldKek, new: newKek }, "new"),
      store,
    });
    return { store, keys };
  }

  it("33-38. invalid options are InvalidInputError before any store access", async () => {
    const { keys, store } = await seeded(1);
    const bad = [
      { from: "", to: "new" },
      { from: "old", to: "" },
      { from: "old", to: "old" },
      { from: "old", to: "new", batchSize: -1 },
      { from: "old", to: "new", batchSize: 0 },
      { from: "old", to: "new", batchSize: 1.5 },
      { from: "old", to: "new", batchSize: 10_001 },
      { from: "old", to: "new", dryRun: "yes" as unknown as boolean },
      { from: "old", to: "new", onProgress: 1 as unknown as () => void },
    ];
    for (const options of bad) {
      await assert.rejects(
        keys.rewrapSystemKeys(null, options),
        InvalidInputError,
        JSON.stringify(options),
      );
    }
    await assert.rejects(keys.rewrapSystemKeys(null, null as never), InvalidInputError);
    assert.equal(store.rows()[0].systemKeyId, "old");
  });

  it("both system keys must be in the keyring, even for a dry run", async () => {
    const { store } = await seeded(1);
    const onlyNew = new KeyManager({ keyring: keyringFromMap({ new: newKek }, "new"), store });
    await assert.rejects(
      onlyNew.rewrapSystemKeys(null, { from: "old", to: "new", dryRun: true }),
      (error: SystemKeyNotFoundError) =>
        error instanceof SystemKeyNotFoundError && error.systemKeyId === "old",
    );
    await assert.rejects(
      onlyNew.rewrapSystemKeys(null, { from: "new", to: "other" }),
      SystemKeyNotFoundError,
    );
    assert.equal(store.rows()[0].systemKeyId, "old");
  });

  it("moves every key to the new system key without changing the DEK", async () => {
    const { keys, store } = await seeded(5);
    const deks = store.rows().map((row) => decryptWithKey(oldKek, row.encryptedDek));
    const result = await keys.rewrapSystemKeys(null, { from: "old", to: "new", batchSize: 2 });
    assert.deepEqual(
      [
        result.matchedRows,
        result.rewrappedRows,
        result.failedRows,
        result.remainingRows,
        result.batches,
      ],
      [5, 5, 0, 0, 3],
    );
    store.rows().forEach((row, i) => {
      assert.equal(row.systemKeyId, "new");
      assert.deepEqual(decryptWithKey(newKek, row.encryptedDek), deks[i]);
    });
  });

  it("a corrupt row is reported as DecryptionError and skipped; a dry run finds it too", async () => {
    const { keys, store } = await seeded(4);
    const victim = store.rows()[2];
    const broken = victim.encryptedDek.slice();
    broken[59] ^= 0xff;
    store.seed({ ...victim, encryptedDek: broken });
    const dryFailures: RewrapFailure[] = [];
    const dry = await keys.rewrapSystemKeys(null, {
      from: "old",
      to: "new",
      dryRun: true,
      onRowError: (f) => void dryFailures.push(f),
    });
    assert.deepEqual([dry.matchedRows, dry.rewrappedRows, dry.failedRows, dry.remainingRows], [
      4,
      0,
      1,
      4,
    ]);
    assert.equal(dryFailures[0].scopeId, victim.scopeId);
    assert.ok(store.rows().every((row) => row.systemKeyId === "old"), "dry run wrote nothing");
    const result = await keys.rewrapSystemKeys(null, { from: "old", to: "new" });
    assert.deepEqual([result.rewrappedRows, result.failedRows, result.remainingRows], [3, 1, 1]);
    const failure = result.failures[0];
    assert.equal(failure.scopeId, victim.scopeId);
    assert.equal(failure.keyVersion, 1);
    assert.ok(failure.error instanceof DecryptionError);
    assert.doesNotMatch(failure.error.message, /[0-9a-f]{32}/, "no key material in the message");
  });
});
