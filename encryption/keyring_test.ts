import process from "node:process";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeBase64Std } from "./encoding.ts";
import { InvalidKeySizeError, KeyringError, SystemKeyNotFoundError } from "./errors.ts";
import { keyringFromEnv, keyringFromFiles, keyringFromMap } from "./keyring.ts";

const bytes0to31 = Uint8Array.from({ length: 32 }, (_, i) => i);
const KAT_FILE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

describe("keyringFromFiles", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "eventsalsa-keyring-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("78. reads a standard-base64 key file (trailing newline) and its KAT encoding", async () => {
    assert.equal(encodeBase64Std(bytes0to31), KAT_FILE);
    await writeFile(join(dir, "k1"), `${KAT_FILE}\n`);
    const keyring = await keyringFromFiles({
      keyPaths: { k1: join(dir, "k1") },
      activeKeyId: "k1",
    });
    const active = keyring.activeKey();
    assert.equal(active.keyId, "k1");
    assert.deepEqual(active.key, bytes0to31);
  });

  it("79. a missing file is a KeyringError naming the key", async () => {
    await assert.rejects(
      keyringFromFiles({ keyPaths: { k1: join(dir, "absent") }, activeKeyId: "k1" }),
      (error: KeyringError) =>
        error instanceof KeyringError && error.keyId === "k1" && /ENOENT/.test(error.message),
    );
  });

  it("80. contents that are not base64 are a KeyringError", async () => {
    await writeFile(join(dir, "bad"), "not-valid-base64!!!");
    await assert.rejects(
      keyringFromFiles({ keyPaths: { k1: join(dir, "bad") }, activeKeyId: "k1" }),
      KeyringError,
    );
  });

  it("81. a key that is not 32 bytes is InvalidKeySizeError", async () => {
    await writeFile(join(dir, "short"), btoa("tooshort"));
    await assert.rejects(
      keyringFromFiles({ keyPaths: { k1: join(dir, "short") }, activeKeyId: "k1" }),
      (error: InvalidKeySizeError) =>
        error instanceof InvalidKeySizeError && error.actualSize === 8,
    );
  });

  it("an active id not among the files is a KeyringError, not a crash", async () => {
    await writeFile(join(dir, "k1"), KAT_FILE);
    await assert.rejects(
      keyringFromFiles({ keyPaths: { k1: join(dir, "k1") }, activeKeyId: "k9" }),
      KeyringError,
    );
    await assert.rejects(keyringFromFiles({ keyPaths: {}, activeKeyId: "k1" }), KeyringError);
  });
});

describe("keyringFromMap", () => {
  const k1 = new Uint8Array(32).fill(1);
  const k2 = new Uint8Array(32).fill(2);

  it("82/83. returns the active key and a key by id", () => {
    const keyring = keyringFromMap({ k1, k2 }, "k1");
    assert.deepEqual(keyring.activeKey(), { keyId: "k1", key: k1 });
    assert.deepEqual(keyring.key("k2"), k2);
    assert.deepEqual(keyring.keyIds, ["k1", "k2"]);
    assert.equal(keyring.has("k2"), true);
    assert.equal(keyring.activeKeyId, "k1");
  });

  it("84. an unknown id is SystemKeyNotFoundError", () => {
    const keyring = keyringFromMap({ k1 }, "k1");
    assert.throws(
      () => keyring.key("k3"),
      (error: SystemKeyNotFoundError) =>
        error instanceof SystemKeyNotFoundError && error.systemKeyId === "k3",
    );
    assert.equal(keyring.has("k3"), false);
  });

  it("85. an active id that is not present throws KeyringError", () => {
    assert.throws(() => keyringFromMap({ k1 }, "missing"), KeyringError);
  });

  it("validates every key's size and id at construction", () => {
    assert.throws(() => keyringFromMap({ k1: new Uint8Array(3) }, "k1"), InvalidKeySizeError);
    assert.throws(() => keyringFromMap({ k1: new Uint8Array(33) }, "k1"), InvalidKeySizeError);
    assert.throws(() => keyringFromMap({ "": k1 }, ""), KeyringError);
    assert.throws(() => keyringFromMap({ "has space": k1 }, "has space"), KeyringError);
    assert.throws(() => keyringFromMap({}, "k1"), KeyringError);
    assert.throws(() => keyringFromMap({ k1: 42 as unknown as Uint8Array }, "k1"), KeyringError);
  });

  it("accepts base64 text keys (whitespace trimmed) and rejects the URL alphabet", () => {
    const keyring = keyringFromMap({ k1: `  ${KAT_FILE}\n` }, "k1");
    assert.deepEqual(keyring.key("k1"), bytes0to31);
    const urlSafe = encodeBase64Std(new Uint8Array(32).fill(0xfb)).replaceAll("+", "-").replaceAll(
      "/",
      "_",
    );
    assert.throws(() => keyringFromMap({ k1: urlSafe }, "k1"), KeyringError);
  });

  it("copies keys in and out: no caller can change the keyring", () => {
    const material = new Uint8Array(32).fill(7);
    const keyring = keyringFromMap(new Map([["k1", material]]), "k1");
    material.fill(0);
    const copy = keyring.key("k1");
    copy.fill(0);
    keyring.activeKey().key.fill(0);
    assert.deepEqual(keyring.key("k1"), new Uint8Array(32).fill(7));
  });

  it("never shows key bytes when serialized or in errors", () => {
    const keyring = keyringFromMap({ k1 }, "k1");
    assert.equal(JSON.stringify(keyring), '{"activeKeyId":"k1","keyIds":["k1"]}');
    try {
      keyringFromMap({ k1: encodeBase64Std(new Uint8Array(31).fill(0xab)) }, "k1");
      assert.fail("expected an error");
    } catch (error) {
      assert.ok(error instanceof InvalidKeySizeError);
      assert.doesNotMatch((error as Error).message, /q6ur|abab/i);
    }
  });
});

describe("keyringFromEnv", () => {
  it("reads keys from environment variables", () => {
    const keyring = keyringFromEnv({
      variables: { old: "KEK_OLD", new: "KEK_NEW" },
      activeKeyId: "new",
      env: { KEK_OLD: KAT_FILE, KEK_NEW: `${encodeBase64Std(new Uint8Array(32).fill(9))}\n` },
    });
    assert.deepEqual(keyring.key("old"), bytes0to31);
    assert.deepEqual(keyring.activeKey().key, new Uint8Array(32).fill(9));
  });

  it("an unset or empty variable is a KeyringError naming the variable", () => {
    assert.throws(
      () => keyringFromEnv({ variables: { k1: "NOPE" }, activeKeyId: "k1", env: {} }),
      (error: KeyringError) => error instanceof KeyringError && /NOPE/.test(error.message),
    );
    assert.throws(
      () => keyringFromEnv({ variables: { k1: "EMPTY" }, activeKeyId: "k1", env: { EMPTY: " " } }),
      KeyringError,
    );
  });

  it("bad base64 or size in a variable fails at construction", () => {
    assert.throws(
      () => keyringFromEnv({ variables: { k1: "K" }, activeKeyId: "k1", env: { K: "%%%" } }),
      KeyringError,
    );
    assert.throws(
      () =>
        keyringFromEnv({ variables: { k1: "K" }, activeKeyId: "k1", env: { K: btoa("short") } }),
      InvalidKeySizeError,
    );
  });

  it("reads the process environment by default", () => {
    const name = `EVENTSALSA_TEST_KEK_${crypto.randomUUID().slice(0, 8).toUpperCase()}`;
    process.env[name] = KAT_FILE;
    try {
      const keyring = keyringFromEnv({ variables: { k1: name }, activeKeyId: "k1" });
      assert.deepEqual(keyring.key("k1"), bytes0to31);
    } finally {
      delete process.env[name];
    }
  });
});
