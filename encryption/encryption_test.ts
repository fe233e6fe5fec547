import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import {
  AesGcmCipher,
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
    const { keyManager, secrets } = createEncryption({
      keyring: keyring(),
      store: new InMemoryKeyStore(),
    });
    await keyManager.createKey(null, "integration", "github");
    const v1 = await secrets.encrypt(null, "integration", "github", "ghp_1");
    await keyManager.rotateKey(null, "integration", "github");
    const v2 = await secrets.encrypt(null, "integration", "github", "ghp_2");
    assert.deepEqual([v1.keyVersion, v2.keyVersion], [1, 2]);
    assert.equal(await secrets.decrypt(null, "integration", "github", v1), "ghp_1");
    assert.equal(await secrets.decrypt(null, "integration", "github", v2), "ghp_2");
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

  it("uses the given cipher for both layers", async () => {
    let calls = 0;
    const inner = new AesGcmCipher();
    const counting = {
      keySize: 32,
      encrypt: (k: Uint8Array, p: Uint8Array, a?: Uint8Array) => (calls++, inner.encrypt(k, p, a)),
      decrypt: (k: Uint8Array, c: Uint8Array, a?: Uint8Array) => (calls++, inner.decrypt(k, c, a)),
    };
    const { keyManager, envelope } = createEncryption({
      keyring: keyring(),
      store: new InMemoryKeyStore(),
      cipher: counting,
    });
    await keyManager.createKey(null, "s", "i"); // wrap: 1
    await envelope.encrypt(null, "s", "i", "x"); // unwrap + encrypt: 2
    assert.equal(calls, 3);
  });
});
