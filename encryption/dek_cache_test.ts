import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../testing/fake_clock.ts";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import { DekCache } from "./dek_cache.ts";
import { createEncryption } from "./encryption.ts";
import { InvalidInputError, KeyDestroyedError } from "./errors.ts";
import { keyringFromMap } from "./keyring.ts";
import type { KeyStore } from "./key_store.ts";
import { AesGcmCipher } from "./cipher.ts";
import { PreparedAesGcmKey } from "./prepared_key.ts";

const dek = (fill: number) => new Uint8Array(32).fill(fill);

describe("DekCache", () => {
  it("expires entries after the TTL and zeroes them", async () => {
    const clock = new FakeClock(0);
    const cache = new DekCache({ ttlMs: 1000, clock });
    const key = dek(7);
    cache.setDek("s", "i", 1, key);
    cache.setActiveVersion("s", "i", 1);
    assert.deepEqual(cache.getDek("s", "i", 1), dek(7));
    assert.equal(cache.getActiveVersion("s", "i"), 1);
    await clock.advance(999);
    assert.ok(cache.getDek("s", "i", 1));
    await clock.advance(1);
    assert.equal(cache.getDek("s", "i", 1), undefined);
    assert.equal(cache.getActiveVersion("s", "i"), undefined);
    assert.deepEqual(key, dek(0), "expired key zeroed");
    assert.equal(cache.size, 0);
  });

  it("holds at most maxEntries keys, evicting the least recently used (zeroed)", () => {
    const cache = new DekCache({ maxEntries: 2, clock: new FakeClock(0) });
    const a = dek(1);
    cache.setDek("s", "a", 1, a);
    cache.setDek("s", "b", 1, dek(2));
    cache.getDek("s", "a", 1); // a is now more recent than b
    cache.setDek("s", "c", 1, dek(3));
    assert.equal(cache.size, 2);
    assert.equal(cache.getDek("s", "b", 1), undefined);
    assert.ok(cache.getDek("s", "a", 1));
    assert.ok(cache.getDek("s", "c", 1));
    // One subject with more versions than the limit keeps its newest.
    const small = new DekCache({ maxEntries: 2 });
    const v1 = dek(1);
    for (const [v, k] of [[1, v1], [2, dek(2)], [3, dek(3)]] as const) small.setDek("s", "x", v, k);
    assert.equal(small.size, 2);
    assert.equal(small.getDek("s", "x", 1), undefined);
    assert.deepEqual(v1, dek(0));
    assert.ok(small.getDek("s", "x", 3));
  });

  it("invalidate drops and zeroes a subject and refuses it for one TTL", async () => {
    const clock = new FakeClock(0);
    const cache = new DekCache({ ttlMs: 1000, clock });
    const key = dek(4);
    cache.setDek("s", "i", 1, key);
    cache.setDek("s", "other", 1, dek(5));
    cache.invalidate("s", "i");
    assert.deepEqual(key, dek(0));
    assert.equal(cache.getDek("s", "i", 1), undefined);
    assert.ok(cache.getDek("s", "other", 1), "other subjects stay");
    const refused = dek(6);
    cache.setDek("s", "i", 1, refused);
    assert.equal(cache.getDek("s", "i", 1), undefined);
    assert.deepEqual(refused, dek(0), "a refused key is zeroed, not kept");
    await clock.advance(1000);
    cache.setDek("s", "i", 1, dek(6));
    assert.ok(cache.getDek("s", "i", 1));
  });

  it("clear zeroes everything; options are validated", () => {
    const cache = new DekCache();
    const key = dek(8);
    cache.setDek("s", "i", 1, key);
    cache.clear();
    assert.deepEqual(key, dek(0));
    assert.equal(cache.size, 0);
    assert.throws(() => new DekCache({ maxEntries: 0 }), InvalidInputError);
    assert.throws(() => new DekCache({ ttlMs: -1 }), InvalidInputError);
  });

  it("destroys derived state whenever its key leaves: expiry, eviction, replacement, invalidate, clear", async () => {
    const clock = new FakeClock(0);
    const cache = new DekCache({ maxEntries: 2, ttlMs: 1000, clock });
    const destroyed: string[] = [];
    const derive = (scope: string, id: string, version: number) => {
      const entry = cache.getCached(scope, id, version)!;
      entry.derived = { destroy: () => destroyed.push(`${id}/${version}`) };
    };
    cache.setDek("s", "expires", 1, dek(1));
    derive("s", "expires", 1);
    await clock.advance(1000);
    assert.equal(cache.getCached("s", "expires", 1), undefined);
    assert.deepEqual(destroyed, ["expires/1"]);

    cache.setDek("s", "a", 1, dek(2));
    derive("s", "a", 1);
    const same = cache.getDek("s", "a", 1)!;
    cache.setDek("s", "a", 1, same); // the same array again: kept, derived state too
    assert.deepEqual(destroyed, ["expires/1"]);
    cache.setDek("s", "a", 1, dek(3)); // another array for the version: the old one goes
    assert.deepEqual(destroyed, ["expires/1", "a/1"]);
    assert.equal(cache.getCached("s", "a", 1)!.derived, null);

    derive("s", "a", 1);
    cache.setDek("s", "b", 1, dek(4));
    derive("s", "b", 1);
    cache.setDek("s", "c", 1, dek(5)); // evicts a, the least recently used
    assert.deepEqual(destroyed.slice(2), ["a/1"]);
    cache.invalidate("s", "b");
    assert.deepEqual(destroyed.slice(3), ["b/1"]);
    derive("s", "c", 1);
    cache.clear();
    assert.deepEqual(destroyed.slice(4), ["c/1"]);
    assert.equal(cache.size, 0);
  });
});

describe("DEK cache in the envelope", () => {
  function setup() {
    const clock = new FakeClock(0);
    const memory = new InMemoryKeyStore({ clock });
    const reads: string[] = [];
    const store = new Proxy(memory, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (property === "getKey" || property === "getActiveKey") reads.push(String(property));
          return value.apply(target, args);
        };
      },
    }) as KeyStore<unknown>;
    const keyring = keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1");
    const cache = new DekCache({ ttlMs: 10_000, clock });
    const encryption = createEncryption({ keyring, store, cache });
    return { clock, memory, store, keyring, cache, reads, encryption };
  }

  it("serves repeated encrypts and decrypts without reading the store", async () => {
    const { encryption, reads } = setup();
    const pii = encryption.pii("user-pii");
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const first = await pii.encrypt(null, "u-1", "a");
    assert.deepEqual(reads, ["getActiveKey"]);
    for (let i = 0; i < 5; i++) {
      assert.equal(
        await pii.decrypt(null, "u-1", await pii.encrypt(null, "u-1", `v${i}`)),
        `v${i}`,
      );
    }
    assert.equal(await pii.decrypt(null, "u-1", first), "a");
    assert.deepEqual(reads, ["getActiveKey"]);
  });

  it("keeps a prepared AES-GCM key beside each cached key and destroys it with the key", async () => {
    const { encryption, cache } = setup();
    await encryption.keyManager.createKey(null, "s", "i");
    const value = await encryption.envelope.encrypt(null, "s", "i", "x");
    assert.equal(cache.getCached("s", "i", 1)!.derived, null, "the store read used the bytes");
    assert.equal(await encryption.envelope.decrypt(null, "s", "i", value), "x");
    const prepared = cache.getCached("s", "i", 1)!.derived;
    assert.ok(prepared instanceof PreparedAesGcmKey, "prepared on the first cache hit");
    await encryption.envelope.encrypt(null, "s", "i", "y");
    assert.equal(cache.getCached("s", "i", 1)!.derived, prepared, "built once, then reused");
    await encryption.keyManager.rotateKey(null, "s", "i");
    assert.equal(prepared.destroyed, true);
    // Values written through the prepared key read back with a cacheless envelope, and back.
    const { keyring, store } = setup();
    const plain = createEncryption({ keyring, store });
    await plain.keyManager.createKey(null, "t", "j");
    const withCache = createEncryption({ keyring, store, cache: new DekCache() });
    for (const text of ["", "a", "x".repeat(100), "ünïcødé ✓"]) {
      const cached = await withCache.envelope.encrypt(null, "t", "j", text, { context: "f" });
      assert.equal(await plain.envelope.decrypt(null, "t", "j", cached, { context: "f" }), text);
      const uncached = await plain.envelope.encrypt(null, "t", "j", text);
      assert.equal(await withCache.envelope.decrypt(null, "t", "j", uncached), text);
    }
  });

  it("a custom cipher gets the key bytes: no prepared key is made for it", async () => {
    class SubclassedCipher extends AesGcmCipher {}
    const clock = new FakeClock(0);
    const store = new InMemoryKeyStore({ clock });
    const keyring = keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1");
    const cache = new DekCache({ clock });
    const encryption = createEncryption({ keyring, store, cache, cipher: new SubclassedCipher() });
    await encryption.keyManager.createKey(null, "s", "i");
    const value = await encryption.envelope.encrypt(null, "s", "i", "x");
    assert.equal(await encryption.envelope.decrypt(null, "s", "i", value), "x");
    assert.equal(cache.getCached("s", "i", 1)!.derived, null);
  });

  it("re-reads the store after the TTL", async () => {
    const { encryption, reads, clock } = setup();
    await encryption.keyManager.createKey(null, "s", "i");
    const value = await encryption.envelope.encrypt(null, "s", "i", "x");
    await clock.advance(10_000);
    assert.equal(await encryption.envelope.decrypt(null, "s", "i", value), "x");
    assert.deepEqual(reads, ["getActiveKey", "getKey"]);
  });

  it("destroyKeys in this process invalidates at once", async () => {
    const { encryption, cache } = setup();
    const pii = encryption.pii("user-pii");
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const value = await pii.encrypt(null, "u-1", "alice");
    assert.equal(cache.size, 1);
    await encryption.keyManager.destroyKeys(null, "user-pii", "u-1");
    assert.equal(cache.size, 0);
    await assert.rejects(pii.decrypt(null, "u-1", value), KeyDestroyedError);
    await assert.rejects(pii.encrypt(null, "u-1", "again"), KeyDestroyedError);
  });

  it("rotateKey and revokeKeys in this process invalidate: the next value uses the new version", async () => {
    const { encryption } = setup();
    await encryption.keyManager.createKey(null, "s", "i");
    assert.match(await encryption.envelope.encrypt(null, "s", "i", "x"), /^es2:1:/);
    await encryption.keyManager.rotateKey(null, "s", "i");
    assert.match(await encryption.envelope.encrypt(null, "s", "i", "x"), /^es2:2:/);
    await encryption.keyManager.revokeKeys(null, "s", "i");
    assert.match(await encryption.envelope.encrypt(null, "s", "i", "x"), /^es2:2:/);
  });

  it("documented limit: another process's destroyKeys is seen here only after the TTL", async () => {
    const { encryption, store, keyring, clock } = setup();
    const otherProcess = createEncryption({ keyring, store }); // its own (no) cache
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const value = await encryption.envelope.encrypt(null, "user-pii", "u-1", "alice");
    await otherProcess.keyManager.destroyKeys(null, "user-pii", "u-1");
    assert.equal(await encryption.envelope.decrypt(null, "user-pii", "u-1", value), "alice");
    await clock.advance(10_000);
    await assert.rejects(
      encryption.envelope.decrypt(null, "user-pii", "u-1", value),
      KeyDestroyedError,
    );
  });

  it("cached keys are copies: zeroing returned plaintext or keys elsewhere changes nothing", async () => {
    const { encryption } = setup();
    await encryption.keyManager.createKey(null, "s", "i");
    const value = await encryption.envelope.encrypt(null, "s", "i", "x");
    const bytes = await encryption.envelope.decryptBytes(null, "s", "i", value);
    bytes.fill(0);
    assert.equal(await encryption.envelope.decrypt(null, "s", "i", value), "x");
  });
});
