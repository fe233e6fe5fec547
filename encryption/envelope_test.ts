import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import { AesGcmCipher } from "./cipher.ts";
import { decodeBase64Std, encodeBase64Std, fromHex, utf8Encode } from "./encoding.ts";
import { Envelope } from "./envelope.ts";
import { keyVersionOf } from "./envelope_format.ts";
import {
  DecryptionError,
  InvalidInputError,
  KeyDestroyedError,
  KeyNotFoundError,
  SystemKeyNotFoundError,
} from "./errors.ts";
import { KeyManager } from "./key_manager.ts";
import { keyringFromMap } from "./keyring.ts";
import type { KeyStore } from "./key_store.ts";

const KAT_KEK = Uint8Array.from({ length: 32 }, (_, i) => i);
const KAT_WRAPPED = fromHex(
  "00000000000000000000000135f79ddf60d1163926077b12c08b14d825ae2e67508762b34b3939e21a0d4d6146cbc154a30130ab11e30f4ce3624eec",
)!;
const KAT_ALICE = "AAAAAAAAAAAAAAACWTwvkoCDYc46ROSGJp4WF2afQGxFXz2ZsyccdqGwCkhn";
const KAT_EMPTY = "AAAAAAAAAAAAAAACHmM7QWGU1xz+aG431GloFA==";

/** Counts every call that reaches the store. */
function counting(store: InMemoryKeyStore): { store: KeyStore<unknown>; calls: string[] } {
  const calls: string[] = [];
  const proxy = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (property !== "readsCommitted") calls.push(String(property));
        return value.apply(target, args);
      };
    },
  });
  return { store: proxy, calls };
}

function setup() {
  const memory = new InMemoryKeyStore();
  const { store, calls } = counting(memory);
  const keyring = keyringFromMap(
    { "sys-key-1": crypto.getRandomValues(new Uint8Array(32)) },
    "sys-key-1",
  );
  const keys = new KeyManager({ keyring, store });
  const envelope = new Envelope({ keyring, store });
  return { memory, store, calls, keyring, keys, envelope };
}

/** The Go library's test mock store: tenant/abc v1 wrapped with the KAT KEK under sys-key-1. */
function goSeeded() {
  const memory = new InMemoryKeyStore();
  memory.seed({
    scope: "tenant",
    scopeId: "abc",
    keyVersion: 1,
    encryptedDek: KAT_WRAPPED,
    systemKeyId: "sys-key-1",
  });
  const keyring = keyringFromMap({ "sys-key-1": KAT_KEK }, "sys-key-1");
  return { memory, keyring, envelope: new Envelope({ keyring, store: memory }) };
}

describe("Envelope (scenarios 10-14)", () => {
  it("10. round-trips hello world", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "tenant", "abc");
    const value = await envelope.encrypt(null, "tenant", "abc", "hello world");
    assert.equal(await envelope.decrypt(null, "tenant", "abc", value), "hello world");
  });

  it("11. a version that does not exist is KeyNotFoundError", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "tenant", "abc");
    const value = await envelope.encryptVersioned(null, "tenant", "abc", "x");
    const goFormat = encodeBase64Std(new Uint8Array(40));
    await assert.rejects(
      envelope.decrypt(null, "tenant", "abc", goFormat, { keyVersion: 999 }),
      (error: KeyNotFoundError) => error instanceof KeyNotFoundError && error.keyVersion === 999,
    );
    const moved = value.ciphertext.replace("es2:1:", "es2:999:");
    await assert.rejects(envelope.decrypt(null, "tenant", "abc", moved), KeyNotFoundError);
  });

  it("12. a corrupted character in the middle is rejected", async () => {
    const { keys, envelope, keyring, store } = setup();
    await keys.createKey(null, "tenant", "abc");
    const goWriter = new Envelope({ keyring, store, writeFormat: "go" });
    for (const env of [envelope, goWriter]) {
      const { ciphertext } = await env.encryptVersioned(null, "tenant", "abc", "hello world");
      const middle = Math.floor(ciphertext.length / 2) + 3;
      const corrupted = ciphertext.slice(0, middle) +
        String.fromCharCode(ciphertext.charCodeAt(middle) ^ 0xff) + ciphertext.slice(middle + 1);
      await assert.rejects(
        env.decrypt(null, "tenant", "abc", corrupted, { keyVersion: 1 }),
        DecryptionError,
      );
    }
  });

  it("13. encrypt uses version 1 of a new key", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "tenant", "abc");
    const result = await envelope.encryptVersioned(null, "tenant", "abc", "x");
    assert.equal(result.keyVersion, 1);
    assert.equal(result.format, "es2");
    assert.equal(keyVersionOf(result.ciphertext), 1);
    assert.match(result.ciphertext, /^es2:1:[A-Za-z0-9_-]+$/);
  });

  it("14. encrypting for an unknown subject is KeyNotFoundError", async () => {
    const { envelope } = setup();
    await assert.rejects(
      envelope.encrypt(null, "unknown", "xyz", "x"),
      (error: KeyNotFoundError) =>
        error instanceof KeyNotFoundError && error.scope === "unknown" && error.scopeId === "xyz" &&
        error.keyVersion === null,
    );
  });
});

describe("associated data binds scope, subject, version and context", () => {
  async function twoSubjects() {
    const parts = setup();
    await parts.keys.createKey(null, "user-pii", "victim");
    await parts.keys.createKey(null, "user-pii", "attacker");
    await parts.keys.createKey(null, "other-scope", "victim");
    return parts;
  }

  it("a value copied to another subject fails with DecryptionError", async () => {
    const { envelope } = await twoSubjects();
    const value = await envelope.encrypt(null, "user-pii", "victim", "alice@example.com");
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "attacker", value),
      (error: DecryptionError) =>
        error instanceof DecryptionError && error.scopeId === "attacker" &&
        error.keyVersion === 1 &&
        !error.message.includes("alice"),
    );
    await assert.rejects(envelope.decrypt(null, "other-scope", "victim", value), DecryptionError);
  });

  it("a value whose wrapped key was copied to another subject's row still fails (confused deputy)", async () => {
    const { envelope, memory } = await twoSubjects();
    const value = await envelope.encrypt(null, "user-pii", "victim", "alice@example.com");
    const victimRow = memory.rows().find((r) => r.scopeId === "victim" && r.scope === "user-pii")!;
    // Someone with write access to the key table (but no KEK) copies the victim's wrapped DEK.
    memory.seed({ ...victimRow, scopeId: "attacker", keyVersion: 1 });
    await assert.rejects(envelope.decrypt(null, "user-pii", "attacker", value), DecryptionError);
    assert.equal(await envelope.decrypt(null, "user-pii", "victim", value), "alice@example.com");
  });

  it("a value relabelled with another key version fails", async () => {
    const { envelope, keys } = await twoSubjects();
    const v1 = await envelope.encrypt(null, "user-pii", "victim", "one");
    await keys.rotateKey(null, "user-pii", "victim");
    const v2 = await envelope.encrypt(null, "user-pii", "victim", "two");
    assert.equal(keyVersionOf(v2), 2);
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "victim", v1.replace("es2:1:", "es2:2:")),
      DecryptionError,
    );
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "victim", v2.replace("es2:2:", "es2:1:")),
      DecryptionError,
    );
    assert.equal(await envelope.decrypt(null, "user-pii", "victim", v1), "one");
    assert.equal(await envelope.decrypt(null, "user-pii", "victim", v2), "two");
  });

  it("a context label binds a value to its field", async () => {
    const { envelope } = await twoSubjects();
    const email = await envelope.encrypt(null, "user-pii", "victim", "alice@example.com", {
      context: "email",
    });
    assert.equal(
      await envelope.decrypt(null, "user-pii", "victim", email, { context: "email" }),
      "alice@example.com",
    );
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "victim", email, { context: "name" }),
      DecryptionError,
    );
    await assert.rejects(envelope.decrypt(null, "user-pii", "victim", email), DecryptionError);
  });

  it("an explicit keyVersion must match the embedded one", async () => {
    const { envelope } = await twoSubjects();
    const value = await envelope.encrypt(null, "user-pii", "victim", "x");
    assert.equal(await envelope.decrypt(null, "user-pii", "victim", value, { keyVersion: 1 }), "x");
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "victim", value, { keyVersion: 2 }),
      DecryptionError,
    );
  });
});

describe("Go format interop (Go known-answer vectors)", () => {
  it("decrypts the Go known-answer values with the KAT keys", async () => {
    const { envelope } = goSeeded();
    assert.equal(
      await envelope.decrypt(null, "tenant", "abc", KAT_ALICE, { keyVersion: 1 }),
      "alice@example.com",
    );
    assert.equal(await envelope.decrypt(null, "tenant", "abc", KAT_EMPTY, { keyVersion: 1 }), "");
  });

  it("writes byte-identical Go values when configured (fixed nonce)", async () => {
    const { memory, keyring } = goSeeded();
    const fixed = new AesGcmCipher({
      randomBytes: () => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
    });
    const writer = new Envelope({ keyring, store: memory, cipher: fixed, writeFormat: "go" });
    assert.deepEqual(await writer.encryptVersioned(null, "tenant", "abc", "alice@example.com"), {
      ciphertext: KAT_ALICE,
      keyVersion: 1,
      format: "go",
    });
    assert.equal(await writer.encrypt(null, "tenant", "abc", ""), KAT_EMPTY);
  });

  it("Go values written here are read by a default (es2) envelope", async () => {
    const { memory, keyring, envelope } = goSeeded();
    const writer = new Envelope({ keyring, store: memory, writeFormat: "go" });
    const value = await writer.encrypt(null, "tenant", "abc", "bob");
    assert.match(value, /^[A-Za-z0-9+/]+=*$/);
    assert.equal(keyVersionOf(value), null);
    assert.equal(await envelope.decrypt(null, "tenant", "abc", value, { keyVersion: 1 }), "bob");
  });

  it("base64 with CR/LF inside decrypts (Go parity)", async () => {
    const { envelope } = goSeeded();
    const wrapped = KAT_ALICE.slice(0, 20) + "\r\n" + KAT_ALICE.slice(20, 40) + "\n" +
      KAT_ALICE.slice(40);
    assert.equal(
      await envelope.decrypt(null, "tenant", "abc", wrapped, { keyVersion: 1 }),
      "alice@example.com",
    );
  });

  it("a Go value needs its key version", async () => {
    const { envelope } = goSeeded();
    await assert.rejects(envelope.decrypt(null, "tenant", "abc", KAT_ALICE), InvalidInputError);
  });

  it("a Go value that is not UTF-8 is a DecryptionError as text and exact as bytes", async () => {
    const { memory, keyring, envelope } = goSeeded();
    const writer = new Envelope({ keyring, store: memory, writeFormat: "go" });
    const binary = Uint8Array.from([0xff, 0xfe, 0x00, 0x41]);
    const value = await writer.encryptBytes(null, "tenant", "abc", binary);
    await assert.rejects(
      envelope.decrypt(null, "tenant", "abc", value, { keyVersion: 1 }),
      (error: DecryptionError) => error instanceof DecryptionError && /UTF-8/.test(error.reason),
    );
    assert.deepEqual(
      await envelope.decryptBytes(null, "tenant", "abc", value, { keyVersion: 1 }),
      binary,
    );
  });

  it("a context label cannot be written in the Go format", async () => {
    const { memory, keyring } = goSeeded();
    const writer = new Envelope({ keyring, store: memory, writeFormat: "go" });
    await assert.rejects(
      writer.encrypt(null, "tenant", "abc", "x", { context: "email" }),
      InvalidInputError,
    );
  });
});

describe("key-state errors", () => {
  it("after destroyKeys, decrypting is KeyDestroyedError; never-created is KeyNotFoundError", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "user-pii", "u-1");
    const value = await envelope.encrypt(null, "user-pii", "u-1", "x");
    await keys.destroyKeys(null, "user-pii", "u-1");
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "u-1", value),
      (error: KeyDestroyedError) =>
        error instanceof KeyDestroyedError && error.scope === "user-pii" &&
        error.scopeId === "u-1" &&
        error.keyVersion === 1 && error.destroyedAt instanceof Date,
    );
    await assert.rejects(envelope.encrypt(null, "user-pii", "u-1", "y"), KeyDestroyedError);
    await assert.rejects(envelope.decrypt(null, "user-pii", "never", value), KeyNotFoundError);
    await assert.rejects(
      envelope.decrypt(null, "user-pii", "never", value),
      (e) => !(e instanceof KeyDestroyedError),
    );
  });

  it("a row under a system key missing from the keyring is SystemKeyNotFoundError", async () => {
    const { keys, envelope, store } = setup();
    await keys.createKey(null, "user-pii", "u-1");
    const value = await envelope.encrypt(null, "user-pii", "u-1", "x");
    const rotatedRing = keyringFromMap({ "sys-key-2": new Uint8Array(32).fill(2) }, "sys-key-2");
    const retired = new Envelope({ keyring: rotatedRing, store });
    await assert.rejects(
      retired.decrypt(null, "user-pii", "u-1", value),
      (error: SystemKeyNotFoundError) =>
        error instanceof SystemKeyNotFoundError && error.systemKeyId === "sys-key-1" &&
        error.scopeId === "u-1" && error.keyVersion === 1 && !(error instanceof KeyNotFoundError),
    );
    await assert.rejects(retired.encrypt(null, "user-pii", "u-1", "x"), SystemKeyNotFoundError);
  });

  it("a tampered wrapped key or the wrong KEK bytes under the right id is DecryptionError", async () => {
    const { keys, envelope, memory, store } = setup();
    await keys.createKey(null, "user-pii", "u-1");
    const value = await envelope.encrypt(null, "user-pii", "u-1", "x");
    const wrongBytes = new Envelope({
      keyring: keyringFromMap({ "sys-key-1": new Uint8Array(32).fill(3) }, "sys-key-1"),
      store,
    });
    await assert.rejects(
      wrongBytes.decrypt(null, "user-pii", "u-1", value),
      (error: DecryptionError) =>
        error instanceof DecryptionError && /wrapped data key/.test(error.reason),
    );
    const row = memory.rows()[0];
    const tampered = row.encryptedDek.slice();
    tampered[20] ^= 1;
    memory.seed({ ...row, encryptedDek: tampered });
    await assert.rejects(envelope.decrypt(null, "user-pii", "u-1", value), DecryptionError);
  });
});

describe("bad input gives typed errors and touches nothing", () => {
  it("rejects bad arguments before reaching the store", async () => {
    const { keys, envelope, calls, memory } = setup();
    await keys.createKey(null, "s", "i");
    const good = await envelope.encrypt(null, "s", "i", "x");
    calls.length = 0;
    const before = memory.rows();
    const badEncrypts: [string, () => Promise<unknown>][] = [
      ["empty scope", () => envelope.encrypt(null, "", "i", "x")],
      ["empty scopeId", () => envelope.encrypt(null, "s", "", "x")],
      ["NUL in scope", () => envelope.encrypt(null, "s\u0000", "i", "x")],
      ["number plaintext", () => envelope.encrypt(null, "s", "i", 42 as unknown as string)],
      ["null plaintext", () => envelope.encrypt(null, "s", "i", null as unknown as string)],
      [
        "object plaintext",
        () => envelope.encryptVersioned(null, "s", "i", {} as unknown as string),
      ],
      ["empty context", () => envelope.encrypt(null, "s", "i", "x", { context: "" })],
    ];
    for (const [what, call] of badEncrypts) {
      await assert.rejects(call(), InvalidInputError, what);
    }
    const truncated = good.slice(0, 20);
    const badDecrypts: [string, () => Promise<unknown>, new (...args: never[]) => Error][] = [
      [
        "non-string ciphertext",
        () => envelope.decrypt(null, "s", "i", 7 as unknown as string),
        InvalidInputError,
      ],
      [
        "bad keyVersion option",
        () => envelope.decrypt(null, "s", "i", good, { keyVersion: 0 }),
        InvalidInputError,
      ],
      ["truncated es2", () => envelope.decrypt(null, "s", "i", truncated), DecryptionError],
      [
        "short Go value",
        () =>
          envelope.decrypt(null, "s", "i", encodeBase64Std(new Uint8Array(27)), { keyVersion: 1 }),
        DecryptionError,
      ],
      [
        "non-base64",
        () => envelope.decrypt(null, "s", "i", "%%%not base64%%%", { keyVersion: 1 }),
        DecryptionError,
      ],
      [
        "unpadded base64",
        () => envelope.decrypt(null, "s", "i", "QUJD", { keyVersion: 1 }),
        DecryptionError,
      ],
      ["empty string", () => envelope.decrypt(null, "s", "i", ""), DecryptionError],
      ["es2 without version", () => envelope.decrypt(null, "s", "i", "es2:AAAA"), DecryptionError],
      [
        "es2 version 0",
        () => envelope.decrypt(null, "s", "i", good.replace("es2:1:", "es2:0:")),
        DecryptionError,
      ],
      [
        "es2 version too big",
        () => envelope.decrypt(null, "s", "i", good.replace("es2:1:", "es2:2147483648:")),
        DecryptionError,
      ],
      ["es2 with padding", () => envelope.decrypt(null, "s", "i", good + "="), DecryptionError],
    ];
    for (const [what, call, type] of badDecrypts) {
      await assert.rejects(call(), type, what);
    }
    assert.deepEqual(calls, [], "no bad call reached the store");
    assert.deepEqual(memory.rows(), before);
    assert.equal(await envelope.decrypt(null, "s", "i", good), "x");
  });

  it("construction needs a keyring and a store, and a known format", () => {
    const { keyring, store } = setup();
    assert.throws(() => new Envelope({ keyring, store: undefined as never }), InvalidInputError);
    assert.throws(() => new Envelope({ keyring: undefined as never, store }), InvalidInputError);
    assert.throws(
      () => new Envelope({ keyring, store, writeFormat: "v9" as never }),
      InvalidInputError,
    );
  });
});

describe("bytes API", () => {
  it("round-trips bytes and leaves the caller's array alone", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "integration", "stripe");
    const secret = Uint8Array.from([0, 1, 2, 255]);
    const value = await envelope.encryptBytes(null, "integration", "stripe", secret);
    assert.deepEqual(secret, Uint8Array.from([0, 1, 2, 255]));
    assert.deepEqual(await envelope.decryptBytes(null, "integration", "stripe", value), secret);
  });

  it("es2 payload is nonce, ciphertext and tag (28 bytes of overhead)", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "s", "i");
    const value = await envelope.encrypt(null, "s", "i", "x".repeat(100));
    const payload = value.slice("es2:1:".length).replaceAll("-", "+").replaceAll("_", "/");
    const raw = decodeBase64Std(payload + "=".repeat((4 - (payload.length % 4)) % 4))!;
    assert.equal(raw.length, 128);
    assert.ok(utf8Encode(value).length < 180);
  });
});
