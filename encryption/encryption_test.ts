import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import {
  createEncryption,
  DekCache,
  InvalidInputError,
  KeyDestroyedError,
  keyringFromMap,
} from "./mod.ts";

const keyring = () => keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1");

describe("createEncryption", () => {
  it("89. basic: createKey, encrypt and decrypt on user/42", async () => {
    const { keyManager, envelope } = createEncryption({
      keyring: keyring(),
      store: new InMemoryKeyStore(),
    });
    await keyManager.createKey(null, "user", "42");
    const value = await envelope.encrypt(null, "user", "42", "sensitive");
    assert.equal(await envelope.decrypt(null, "user", "42", value), "sensitive");
  });

  it("90. pii: create, encrypt, decrypt, destroy, then decrypt fails (KeyDestroyedError)", async () => {
    const encryption = createEncryption({ keyring: keyring(), store: new InMemoryKeyStore() });
    const pii = encryption.pii("user-pii");
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const value = await pii.encrypt(null, "u-1", "alice@example.com");
    assert.equal(await pii.decrypt(null, "u-1", value), "alice@example.com");
    await encryption.keyManager.destroyKeys(null, "user-pii", "u-1");
    await assert.rejects(pii.decrypt(null, "u-1", value), KeyDestroyedError);
  });

  it("91. secrets: v1, rotate, v2; both decrypt", async () => {
    const encryption = createEncryption({ keyring: keyring(), store: new InMemoryKeyStore() });
    const { keyManager } = encryption;
    const secrets = encryption.secrets("integration");
    assert.equal(secrets.scope, "integration");
    await keyManager.createKey(null, "integration", "github");
    const v1 = await secrets.encrypt(null, "github", "ghp_1");
    await keyManager.rotateKey(null, "integration", "github");
    const v2 = await secrets.encrypt(null, "github", "ghp_2");
    assert.deepEqual([v1.keyVersion, v2.keyVersion], [1, 2]);
    assert.equal(await secrets.decrypt(null, "github", v1), "ghp_1");
    assert.equal(await secrets.decrypt(null, "github", v2), "ghp_2");
  });

  it("the cache is off by default and shared when on", () => {
    const store = new InMemoryKeyStore();
    assert.equal(createEncryption({ keyring: keyring(), store }).cache, null);
    assert.equal(createEncryption({ keyring: keyring(), store, cache: false }).cache, null);
    assert.ok(
      createEncryption({ keyring: keyring(), store, cache: true }).cache instanceof DekCache,
    );
    assert.equal(
      createEncryption({ keyring: keyring(), store, cache: { ttlMs: 5 } }).cache?.ttlMs,
      5,
    );
    const shared = new DekCache();
    assert.equal(createEncryption({ keyring: keyring(), store, cache: shared }).cache, shared);
    assert.throws(
      () => createEncryption({ keyring: keyring(), store, cache: 3 as never }),
      InvalidInputError,
    );
    assert.throws(() => createEncryption(null as never), InvalidInputError);
  });

  it("both adapters fix their scope up front and take scope ids alike", async () => {
    const encryption = createEncryption({ keyring: keyring(), store: new InMemoryKeyStore() });
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    await encryption.keyManager.createKey(null, "integration", "u-1");
    const pii = encryption.pii("user-pii");
    const secrets = encryption.secrets("integration");
    assert.equal(pii.scope, "user-pii");
    const email = await pii.encrypt(null, "u-1", "alice@example.com");
    const token = await secrets.encrypt(null, "u-1", "sk_live");
    assert.equal(await pii.decrypt(null, "u-1", email), "alice@example.com");
    assert.equal(await secrets.decrypt(null, "u-1", token), "sk_live");
    // Each value is bound to its adapter's scope.
    await assert.rejects(
      encryption.secrets("user-pii").decrypt(null, "u-1", token),
      (error: Error) => error.name === "DecryptionError",
    );
    assert.throws(() => encryption.secrets(""), InvalidInputError);
    assert.throws(() => encryption.pii(""), InvalidInputError);
  });

  it("no public object hands out key material", async () => {
    const encryption = createEncryption({
      keyring: keyring(),
      store: new InMemoryKeyStore(),
      cache: true,
    });
    await encryption.keyManager.createKey(null, "s", "i");
    await encryption.envelope.encrypt(null, "s", "i", "x");
    assert.equal(encryption.cache!.size, 1);
    const methods = (object: object): string[] => {
      const names = new Set<string>();
      for (let o = object; o !== Object.prototype; o = Object.getPrototypeOf(o)) {
        for (const name of Object.getOwnPropertyNames(o)) names.add(name);
      }
      return [...names].sort();
    };
    assert.deepEqual(methods(encryption.cache!), [
      "clear",
      "constructor",
      "invalidate",
      "maxEntries",
      "size",
      "ttlMs",
    ]);
    assert.deepEqual(Object.keys(encryption).sort(), [
      "cache",
      "envelope",
      "keyManager",
      "pii",
      "secrets",
    ]);
  });
});
