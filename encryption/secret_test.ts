import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import { createEncryption } from "./encryption.ts";
import {
  DecryptionError,
  InvalidInputError,
  KeyDestroyedError,
  KeyNotFoundError,
} from "./errors.ts";
import { keyringFromMap } from "./keyring.ts";
import { isEmptySecret, secretValue } from "./secret.ts";

function setup(writeFormat?: "es2" | "go") {
  const encryption = createEncryption({
    keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
    store: new InMemoryKeyStore(),
    writeFormat,
  });
  return { keyManager: encryption.keyManager, secrets: encryption.secrets("integration") };
}

describe("SecretValue (scenarios 70-73)", () => {
  it("70. secretValue keeps content and version", () => {
    assert.deepEqual(secretValue("encrypted-data", 3), {
      content: "encrypted-data",
      keyVersion: 3,
    });
  });

  it("71/72. isEmptySecret is true for empty content only", () => {
    assert.equal(isEmptySecret(secretValue("", 1)), true);
    assert.equal(isEmptySecret(null), true);
    assert.equal(isEmptySecret(secretValue("x", 1)), false);
  });

  it("73. key versions 0, 1, 42 and 100 are preserved", () => {
    for (const version of [0, 1, 42, 100]) {
      assert.equal(secretValue("c", version).keyVersion, version);
    }
  });
});

describe("SecretAdapter (scenarios 74-77)", () => {
  it("74. round-trips sk_live_xxx on integration/stripe, version 1", async () => {
    const { keyManager, secrets } = setup();
    await keyManager.createKey(null, "integration", "stripe");
    const value = await secrets.encrypt(null, "stripe", "sk_live_xxx");
    assert.equal(value.keyVersion, 1);
    assert.equal(await secrets.decrypt(null, "stripe", value), "sk_live_xxx");
  });

  it("75. after rotation new values use version 2 and both decrypt", async () => {
    const { keyManager, secrets } = setup();
    await keyManager.createKey(null, "integration", "stripe");
    const v1 = await secrets.encrypt(null, "stripe", "first");
    await keyManager.rotateKey(null, "integration", "stripe");
    const v2 = await secrets.encrypt(null, "stripe", "second");
    assert.equal(v2.keyVersion, 2);
    assert.equal(await secrets.decrypt(null, "stripe", v1), "first");
    assert.equal(await secrets.decrypt(null, "stripe", v2), "second");
  });

  it("76. encrypting on an unknown scope is KeyNotFoundError", async () => {
    const { secrets } = setup();
    await assert.rejects(secrets.encrypt(null, "nope", "x"), KeyNotFoundError);
  });

  it("77. decrypting a Go-format value on an unknown scope is KeyNotFoundError", async () => {
    const { secrets } = setup();
    const goShaped = secretValue("Ym9ndXNib2d1c2JvZ3VzYm9ndXNib2d1c2JvZ3Vz", 1);
    await assert.rejects(secrets.decrypt(null, "nope", goShaped), KeyNotFoundError);
    await assert.rejects(
      secrets.decrypt(null, "nope", secretValue("bogus", 1)),
      DecryptionError,
    );
  });
});

describe("SecretAdapter lifecycle", () => {
  it("old values stay readable after revokeKeys, and end with destroyKeys", async () => {
    const { keyManager, secrets } = setup();
    await keyManager.createKey(null, "integration", "stripe");
    const v1 = await secrets.encrypt(null, "stripe", "first");
    await keyManager.rotateKey(null, "integration", "stripe");
    await keyManager.rotateKey(null, "integration", "stripe");
    await keyManager.revokeKeys(null, "integration", "stripe");
    assert.equal(await secrets.decrypt(null, "stripe", v1), "first");
    await keyManager.destroyKeys(null, "integration", "stripe");
    await assert.rejects(secrets.decrypt(null, "stripe", v1), KeyDestroyedError);
  });

  it("a version that disagrees with the one inside the value is DecryptionError", async () => {
    const { keyManager, secrets } = setup();
    await keyManager.createKey(null, "integration", "stripe");
    const value = await secrets.encrypt(null, "stripe", "x");
    await assert.rejects(
      secrets.decrypt(null, "stripe", { ...value, keyVersion: 2 }),
      DecryptionError,
    );
  });

  it("Go-format secrets carry their version next to the content", async () => {
    const { keyManager, secrets } = setup("go");
    await keyManager.createKey(null, "integration", "stripe");
    await keyManager.rotateKey(null, "integration", "stripe");
    const value = await secrets.encrypt(null, "stripe", "go-readable");
    assert.equal(value.keyVersion, 2);
    assert.match(value.content, /^[A-Za-z0-9+/]+=*$/);
    assert.equal(await secrets.decrypt(null, "stripe", value), "go-readable");
  });

  it("bad values are InvalidInputError", async () => {
    const { keyManager, secrets } = setup();
    await keyManager.createKey(null, "integration", "stripe");
    await assert.rejects(
      secrets.encrypt(null, "stripe", 1 as unknown as string),
      InvalidInputError,
    );
    await assert.rejects(
      secrets.decrypt(null, "stripe", null as never),
      InvalidInputError,
    );
    await assert.rejects(
      secrets.decrypt(null, "stripe", secretValue("x", 0)),
      InvalidInputError,
    );
    await assert.rejects(
      secrets.decrypt(null, "stripe", { content: 5 } as never),
      InvalidInputError,
    );
  });
});
