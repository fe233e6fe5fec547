import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../testing/fake_clock.ts";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import { DataKey } from "./aes_gcm.ts";
import { DekCache, KeyCache, keyCacheOf } from "./dek_cache.ts";
import { createEncryption } from "./encryption.ts";
import { InvalidInputError, KeyDestroyedError } from "./errors.ts";
import { keyringFromMap } from "./keyring.ts";
import type { KeyStore } from "./key_store.ts";

/** A data key over `bytes` (kept by the caller, to see them zeroed). */
const dataKey = (bytes: Uint8Array): DataKey => new DataKey(bytes);
const dek = (fill: number) => new Uint8Array(32).fill(fill);

describe("KeyCache", () => {
  it("expired entries are swept (zeroed) at the next use of the cache, and size counts live ones", async () => {
    const clock = new FakeClock(0);
    const cache = new KeyCache({ ttlMs: 1000, clock });
    const old = dek(7);
    const oldKey = dataKey(old);
    assert.equal(cache.put("s", "i", 1, oldKey, true), true);
    assert.equal(cache.getActive("s", "i")?.key, oldKey);
    await clock.advance(500);
    const young = dek(8);
    cache.put("s", "j", 1, dataKey(young), false);
    assert.equal(cache.size, 2);
    await clock.advance(499);
    assert.ok(cache.get("s", "i", 1));
    await clock.advance(1);
    // Not touched: `size` alone sweeps it.
    assert.equal(cache.size, 1);
    assert.deepEqual(old, dek(0), "expired key zeroed without being asked for");
    assert.equal(oldKey.destroyed, true);
    assert.equal(cache.getActive("s", "i"), undefined);
    assert.equal(cache.get("s", "i", 1), undefined);
    // An unrelated operation sweeps too.
    await clock.advance(500);
    cache.get("other", "x", 1);
    assert.deepEqual(young, dek(0));
    assert.equal(cache.size, 0);
  });

  it("holds at most maxEntries keys, evicting the least recently used (zeroed)", () => {
    const cache = new KeyCache({ maxEntries: 2, clock: new FakeClock(0) });
    const a = dek(1);
    const b = dek(2);
    cache.put("s", "a", 1, dataKey(a), true);
    cache.put("s", "b", 1, dataKey(b), true);
    cache.get("s", "a", 1); // a is now more recent than b
    cache.put("s", "c", 1, dataKey(dek(3)), true);
    assert.equal(cache.size, 2);
    assert.equal(cache.get("s", "b", 1), undefined);
    assert.deepEqual(b, dek(0));
    assert.ok(cache.get("s", "a", 1));
    assert.ok(cache.getActive("s", "c"));
    // One scope id with more versions than the limit keeps its newest.
    const small = new KeyCache({ maxEntries: 2 });
    const v1 = dek(1);
    small.put("s", "x", 1, dataKey(v1), false);
    small.put("s", "x", 2, dataKey(dek(2)), false);
    small.put("s", "x", 3, dataKey(dek(3)), true);
    assert.equal(small.size, 2);
    assert.equal(small.get("s", "x", 1), undefined);
    assert.deepEqual(v1, dek(0));
    assert.equal(small.getActive("s", "x")?.keyVersion, 3);
  });

  it("a second key for a version replaces (and zeroes) the first; the active mark stays", () => {
    const cache = new KeyCache();
    const first = dek(1);
    cache.put("s", "i", 1, dataKey(first), true);
    const second = dataKey(dek(2));
    cache.put("s", "i", 1, second, false);
    assert.deepEqual(first, dek(0));
    assert.equal(cache.size, 1);
    assert.equal(cache.getActive("s", "i")?.key, second);
  });

  it("invalidate drops and zeroes a scope id and refuses it for one TTL", async () => {
    const clock = new FakeClock(0);
    const cache = new KeyCache({ ttlMs: 1000, clock });
    const key = dek(4);
    cache.put("s", "i", 1, dataKey(key), true);
    cache.put("s", "i", 2, dataKey(dek(4)), false);
    cache.put("s", "other", 1, dataKey(dek(5)), true);
    cache.invalidate("s", "i");
    assert.deepEqual(key, dek(0));
    assert.equal(cache.get("s", "i", 1), undefined);
    assert.equal(cache.size, 1, "other scope ids stay");
    const refused = dataKey(dek(6));
    assert.equal(cache.put("s", "i", 1, refused, true), false, "the caller keeps a refused key");
    assert.equal(refused.destroyed, false);
    assert.equal(cache.get("s", "i", 1), undefined);
    await clock.advance(1000);
    assert.equal(cache.put("s", "i", 1, refused, true), true);
    assert.ok(cache.get("s", "i", 1));
  });

  it("clear zeroes everything; options are validated", () => {
    const cache = new KeyCache();
    const key = dek(8);
    cache.put("s", "i", 1, dataKey(key), true);
    cache.clear();
    assert.deepEqual(key, dek(0));
    assert.equal(cache.size, 0);
    assert.throws(() => new KeyCache({ maxEntries: 0 }), InvalidInputError);
    assert.throws(() => new KeyCache({ ttlMs: -1 }), InvalidInputError);
    assert.throws(() => new DekCache({ maxEntries: 1.5 }), InvalidInputError);
  });
});

describe("DekCache (the public face)", () => {
  it("counts, invalidates and clears the keys behind it, and returns none", () => {
    const cache = new DekCache({ maxEntries: 5, ttlMs: 10 });
    assert.deepEqual([cache.maxEntries, cache.ttlMs, cache.size], [5, 10, 0]);
    const keys = keyCacheOf(cache);
    const bytes = dek(9);
    keys.put("s", "i", 1, dataKey(bytes), true);
    assert.equal(cache.size, 1);
    cache.invalidate("s", "i");
    assert.deepEqual([cache.size, bytes], [0, dek(0)]);
    keys.put("s", "j", 1, dataKey(dek(1)), true);
    cache.clear();
    assert.equal(cache.size, 0);
    const names = Object.getOwnPropertyNames(DekCache.prototype).sort();
    assert.deepEqual(names, ["clear", "constructor", "invalidate", "size"]);
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

  it("cached and uncached envelopes read each other's values, short and long", async () => {
    const { keyring, store, reads } = setup();
    const plain = createEncryption({ keyring, store });
    await plain.keyManager.createKey(null, "t", "j");
    const withCache = createEncryption({ keyring, store, cache: new DekCache() });
    for (const text of ["", "a", "x".repeat(100), "ünïcødé ✓", "long ".repeat(2048)]) {
      const cached = await withCache.envelope.encrypt(null, "t", "j", text, { context: "f" });
      assert.equal(await plain.envelope.decrypt(null, "t", "j", cached, { context: "f" }), text);
      const uncached = await plain.envelope.encrypt(null, "t", "j", text);
      assert.equal(await withCache.envelope.decrypt(null, "t", "j", uncached), text);
    }
    reads.length = 0;
    await withCache.envelope.encrypt(null, "t", "j", "long ".repeat(2048));
    await withCache.envelope.encrypt(null, "t", "j", "short");
    assert.deepEqual(reads, [], "both paths served from the cache");
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

  it("a destroy through any key manager of this process clears every cache of the process", async () => {
    const { encryption, store, keyring, cache } = setup();
    const elsewhere = createEncryption({ keyring, store, cache: true }); // another cache
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const value = await encryption.envelope.encrypt(null, "user-pii", "u-1", "alice");
    assert.equal(await elsewhere.envelope.decrypt(null, "user-pii", "u-1", value), "alice");
    assert.deepEqual([cache.size, elsewhere.cache!.size], [1, 1]);
    // A third encryption object, without a cache of its own, destroys the key.
    await createEncryption({ keyring, store }).keyManager.destroyKeys(null, "user-pii", "u-1");
    assert.deepEqual([cache.size, elsewhere.cache!.size], [0, 0]);
    await assert.rejects(
      encryption.envelope.decrypt(null, "user-pii", "u-1", value),
      KeyDestroyedError,
    );
    await assert.rejects(
      elsewhere.envelope.decrypt(null, "user-pii", "u-1", value),
      KeyDestroyedError,
    );
  });

  it("documented limit: another process's destroyKeys is seen here only after the TTL", async () => {
    const { encryption, memory, clock } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const value = await encryption.envelope.encrypt(null, "user-pii", "u-1", "alice");
    // Another process: the shared key store changes, nothing in this process is told.
    await memory.destroyKeys(null, "user-pii", "u-1");
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
