import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import { fromHex } from "./encoding.ts";
import { createEncryption } from "./encryption.ts";
import {
  DecryptionError,
  EncryptionError,
  InvalidInputError,
  KeyDestroyedError,
  KeyNotFoundError,
} from "./errors.ts";
import { keyringFromMap } from "./keyring.ts";
import { isEmptyValue, PiiAdapter, REDACTED } from "./pii.ts";

function setup(writeFormat?: "es2" | "go") {
  const store = new InMemoryKeyStore();
  const encryption = createEncryption({
    keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
    store,
    writeFormat,
  });
  return { store, encryption, pii: encryption.pii("user-pii") };
}

describe("PII values (scenarios 63-65)", () => {
  it("63/64. values are strings; isEmptyValue is true only for nothing", () => {
    assert.equal(isEmptyValue(""), true);
    assert.equal(isEmptyValue(null), true);
    assert.equal(isEmptyValue(undefined), true);
    assert.equal(isEmptyValue("abc"), false);
  });

  it("65. REDACTED is [REDACTED]", () => {
    assert.equal(REDACTED, "[REDACTED]");
  });
});

describe("PiiAdapter (scenarios 66-69)", () => {
  it("66. round-trips alice@example.com for u-1; the value is not empty", async () => {
    const { encryption, pii } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const value = await pii.encrypt(null, "u-1", "alice@example.com");
    assert.equal(isEmptyValue(value), false);
    assert.ok(!value.includes("alice"));
    assert.equal(await pii.decrypt(null, "u-1", value), "alice@example.com");
  });

  it("67. encrypting the same value twice gives different values", async () => {
    const { encryption, pii } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    assert.notEqual(await pii.encrypt(null, "u-1", "same"), await pii.encrypt(null, "u-1", "same"));
  });

  it("68. decrypting for an unknown subject is KeyNotFoundError (Go-format value)", async () => {
    const { pii } = setup();
    await assert.rejects(
      pii.decrypt(null, "unknown", "Ym9ndXNib2d1c2JvZ3VzYm9ndXNib2d1c2JvZ3Vz"),
      KeyNotFoundError,
    );
  });

  it("68b. 'bogus' is not a well-formed value: DecryptionError before any lookup", async () => {
    const { pii } = setup();
    await assert.rejects(pii.decrypt(null, "unknown", "bogus"), DecryptionError);
  });

  it("69. encrypting for a subject without a key is KeyNotFoundError", async () => {
    const { pii } = setup();
    await assert.rejects(pii.encrypt(null, "no-key", "x"), KeyNotFoundError);
  });
});

describe("PiiAdapter across key lifecycles", () => {
  it("after a rotation, old and new values both decrypt (Go would fail here)", async () => {
    const { encryption, pii } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const before = await pii.encrypt(null, "u-1", "old address");
    assert.equal(await encryption.keyManager.rotateKey(null, "user-pii", "u-1"), 2);
    const after = await pii.encrypt(null, "u-1", "new address");
    assert.match(before, /^es2:1:/);
    assert.match(after, /^es2:2:/);
    assert.equal(await pii.decrypt(null, "u-1", before), "old address");
    assert.equal(await pii.decrypt(null, "u-1", after), "new address");
  });

  it("crypto-shredding: after destroyKeys every value of the subject is KeyDestroyedError", async () => {
    const { encryption, pii } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    await encryption.keyManager.createKey(null, "user-pii", "u-2");
    const email = await pii.encrypt(null, "u-1", "alice@example.com");
    const name = await pii.encrypt(null, "u-1", "Alice");
    const other = await pii.encrypt(null, "u-2", "Bob");
    await encryption.keyManager.destroyKeys(null, "user-pii", "u-1");
    await assert.rejects(pii.decrypt(null, "u-1", email), KeyDestroyedError);
    await assert.rejects(pii.decrypt(null, "u-1", name), KeyDestroyedError);
    assert.equal(await pii.decrypt(null, "u-2", other), "Bob");
  });

  it("destroy then re-create: old values stay shredded (KeyDestroyedError), new ones work", async () => {
    const { encryption, pii } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const old = await pii.encrypt(null, "u-1", "before");
    await encryption.keyManager.destroyKeys(null, "user-pii", "u-1");
    assert.equal(await encryption.keyManager.createKey(null, "user-pii", "u-1"), 2);
    await assert.rejects(pii.decrypt(null, "u-1", old), KeyDestroyedError);
    const fresh = await pii.encrypt(null, "u-1", "after");
    assert.equal(await pii.decrypt(null, "u-1", fresh), "after");
  });

  it("reads Go-format PII values with version 1 (Go known-answer values)", async () => {
    const store = new InMemoryKeyStore();
    store.seed({
      scope: "user-pii",
      scopeId: "u-1",
      keyVersion: 1,
      systemKeyId: "sys-key-1",
      encryptedDek: fromHex(
        "00000000000000000000000135f79ddf60d1163926077b12c08b14d825ae2e67508762b34b3939e21a0d4d6146cbc154a30130ab11e30f4ce3624eec",
      )!,
    });
    const encryption = createEncryption({
      keyring: keyringFromMap(
        { "sys-key-1": Uint8Array.from({ length: 32 }, (_, i) => i) },
        "sys-key-1",
      ),
      store,
    });
    const pii = encryption.pii("user-pii");
    assert.equal(
      await pii.decrypt(
        null,
        "u-1",
        "AAAAAAAAAAAAAAACWTwvkoCDYc46ROSGJp4WF2afQGxFXz2ZsyccdqGwCkhn",
      ),
      "alice@example.com",
    );
  });

  it("in Go format, PII under a version other than 1 is refused", async () => {
    const { encryption, pii } = setup("go");
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const v1 = await pii.encrypt(null, "u-1", "readable by Go");
    assert.match(v1, /^[A-Za-z0-9+/]+=*$/);
    assert.equal(await pii.decrypt(null, "u-1", v1), "readable by Go");
    await encryption.keyManager.rotateKey(null, "user-pii", "u-1");
    await assert.rejects(
      pii.encrypt(null, "u-1", "x"),
      (error: EncryptionError) => error instanceof EncryptionError && error.keyVersion === 2,
    );
  });

  it("a context label binds values to their field", async () => {
    const { encryption } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const emails = encryption.pii("user-pii", { context: "email" });
    const names = encryption.pii("user-pii", { context: "name" });
    const email = await emails.encrypt(null, "u-1", "alice@example.com");
    assert.equal(await emails.decrypt(null, "u-1", email), "alice@example.com");
    await assert.rejects(names.decrypt(null, "u-1", email), DecryptionError);
    assert.throws(
      () => setup("go").encryption.pii("user-pii", { context: "email" }),
      InvalidInputError,
    );
  });

  it("takes ids with their own toString (branded ids)", async () => {
    class UserId {
      constructor(readonly value: string) {}
      toString(): string {
        return this.value;
      }
    }
    const { encryption } = setup();
    const pii = encryption.pii<UserId>("user-pii");
    await encryption.keyManager.createKey(null, "user-pii", "u-7");
    const value = await pii.encrypt(null, new UserId("u-7"), "x");
    assert.equal(await pii.decrypt(null, new UserId("u-7"), value), "x");
  });

  it("bad input is InvalidInputError and writes nothing", async () => {
    const { encryption, pii, store } = setup();
    await encryption.keyManager.createKey(null, "user-pii", "u-1");
    const rows = store.rows();
    await assert.rejects(pii.encrypt(null, "", "x"), InvalidInputError);
    await assert.rejects(pii.encrypt(null, 42 as unknown as string, "x"), InvalidInputError);
    await assert.rejects(pii.encrypt(null, {} as unknown as string, "x"), InvalidInputError);
    await assert.rejects(pii.encrypt(null, "u-1", 42 as unknown as string), InvalidInputError);
    await assert.rejects(pii.decrypt(null, "u-1", null as unknown as string), InvalidInputError);
    assert.throws(() => new PiiAdapter(encryption.envelope, ""), InvalidInputError);
    assert.deepEqual(store.rows(), rows);
  });
});
