import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";
import {
  decryptWithKey,
  openWithNoble,
  sealWithNoble,
  WEB_CRYPTO_MIN_BYTES,
  withoutWebCrypto,
} from "./aes_gcm.ts";
import { DekCache } from "./dek_cache.ts";
import {
  decodeBase64Std,
  decodeBase64Url,
  encodeBase64Std,
  encodeBase64Url,
  fromHex,
  utf8Encode,
} from "./encoding.ts";
import { Envelope } from "./envelope.ts";
import { es2AssociatedData, keyVersionOf } from "./envelope_format.ts";
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
const KAT_DEK = Uint8Array.from({ length: 32 }, (_, i) => i + 0x20);
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

  it("writes Go's layout under the Go DEK: nonce, then what Go's sealing gives for it", async () => {
    const { memory, keyring } = goSeeded();
    const writer = new Envelope({ keyring, store: memory, writeFormat: "go" });
    // The KAT DEK is the one the seeded row wraps; under the KAT nonce it seals to KAT_ALICE.
    const katNonce = decodeBase64Std(KAT_ALICE)!.subarray(0, 12);
    assert.deepEqual(
      sealWithNoble(KAT_DEK, katNonce, utf8Encode("alice@example.com")),
      decodeBase64Std(KAT_ALICE)!.subarray(12),
    );
    for (const text of ["alice@example.com", "", "x".repeat(3000)]) {
      const value = await writer.encryptVersioned(null, "tenant", "abc", text);
      assert.deepEqual([value.keyVersion, value.format], [1, "go"]);
      const raw = decodeBase64Std(value.ciphertext)!;
      assert.equal(raw.length, 12 + utf8Encode(text).length + 16);
      const nonce = raw.subarray(0, 12);
      assert.deepEqual(raw.subarray(12), sealWithNoble(KAT_DEK, nonce, utf8Encode(text)));
    }
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

describe("strings and bytes: the types are what the runtime accepts", () => {
  it("encrypt takes strings only, encryptBytes bytes only, encryptVersioned either", async () => {
    const { keys, envelope, calls } = setup();
    await keys.createKey(null, "s", "i");
    calls.length = 0;
    await assert.rejects(
      envelope.encrypt(null, "s", "i", new Uint8Array([1]) as unknown as string),
      (error: InvalidInputError) =>
        error instanceof InvalidInputError && /encryptBytes/.test(error.message),
    );
    await assert.rejects(
      envelope.encryptBytes(null, "s", "i", "text" as unknown as Uint8Array),
      (error: InvalidInputError) =>
        error instanceof InvalidInputError && /use encrypt for strings/.test(error.message),
    );
    assert.deepEqual(calls, [], "refused before any lookup");
    const text = await envelope.encryptVersioned(null, "s", "i", "é");
    const bytes = await envelope.encryptVersioned(null, "s", "i", utf8Encode("é"));
    assert.equal(await envelope.decrypt(null, "s", "i", text.ciphertext), "é");
    assert.equal(await envelope.decrypt(null, "s", "i", bytes.ciphertext), "é");
  });

  it("a context label follows the stored-text rule (no lone surrogate, at most 1,024 bytes)", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "s", "i");
    for (const context of ["\uD800", "a\u0000", "é".repeat(513)]) {
      await assert.rejects(envelope.encrypt(null, "s", "i", "x", { context }), InvalidInputError);
    }
    const value = await envelope.encrypt(null, "s", "i", "x", { context: "é".repeat(512) });
    assert.equal(await envelope.decrypt(null, "s", "i", value, { context: "é".repeat(512) }), "x");
  });
});

describe("long values (WebCrypto) and short ones (noble) give one format", () => {
  const sizes = [0, 100, WEB_CRYPTO_MIN_BYTES - 1, WEB_CRYPTO_MIN_BYTES, 10_240, 100_000];

  it("every size round-trips with and without the DEK cache, both formats, both directions", async () => {
    const memory = new InMemoryKeyStore();
    const keyring = keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1");
    await new KeyManager({ keyring, store: memory }).createKey(null, "s", "i");
    const plain = new Envelope({ keyring, store: memory });
    const cached = new Envelope({ keyring, store: memory, cache: new DekCache() });
    const go = new Envelope({ keyring, store: memory, writeFormat: "go", cache: new DekCache() });
    for (const size of sizes) {
      const bytes = new Uint8Array(size).map((_, i) => (i * 31 + size) & 255);
      const text = "é".repeat(size >> 1);
      for (const [writer, reader] of [[plain, cached], [cached, plain], [cached, cached]]) {
        // Twice: the second time the cached envelope serves from its cache.
        for (let round = 0; round < 2; round++) {
          const sealed = await writer.encryptBytes(null, "s", "i", bytes, { context: "f" });
          assert.deepEqual(
            await reader.decryptBytes(null, "s", "i", sealed, { context: "f" }),
            bytes,
            `${size} bytes`,
          );
          const sealedText = await writer.encrypt(null, "s", "i", text);
          assert.equal(await reader.decrypt(null, "s", "i", sealedText), text, `${size} text`);
        }
      }
      const goValue = await go.encryptBytes(null, "s", "i", bytes);
      assert.deepEqual(await plain.decryptBytes(null, "s", "i", goValue, { keyVersion: 1 }), bytes);
      assert.deepEqual(await go.decryptBytes(null, "s", "i", goValue, { keyVersion: 1 }), bytes);
    }
  });

  it("a long value is checked as strictly as a short one", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "s", "i");
    await keys.createKey(null, "s", "j");
    const value = await envelope.encrypt(null, "s", "i", "x".repeat(5000));
    const raw = decodeBase64Url(value.slice("es2:1:".length))!;
    raw[100] ^= 1;
    const tampered = "es2:1:" + encodeBase64Url(raw);
    await assert.rejects(envelope.decrypt(null, "s", "i", tampered), DecryptionError);
    await assert.rejects(envelope.decrypt(null, "s", "j", value), DecryptionError);
    await assert.rejects(
      envelope.decrypt(null, "s", "i", value, { context: "c" }),
      DecryptionError,
    );
  });

  it("without WebCrypto, noble does every size, in the same format", async () => {
    const { keys, envelope, keyring, store } = setup();
    await keys.createKey(null, "s", "i");
    const withWeb = await envelope.encrypt(null, "s", "i", "y".repeat(20_000));
    await withoutWebCrypto(async () => {
      const cached = new Envelope({ keyring, store, cache: new DekCache() });
      for (let round = 0; round < 2; round++) {
        assert.equal(await cached.decrypt(null, "s", "i", withWeb), "y".repeat(20_000));
        const nobleOnly = await cached.encrypt(null, "s", "i", "z".repeat(20_000));
        assert.equal(await envelope.decrypt(null, "s", "i", nobleOnly), "z".repeat(20_000));
      }
    });
  });

  it("plaintext buffers may be wiped as soon as the call returns", async () => {
    const { keys, envelope } = setup();
    await keys.createKey(null, "s", "i");
    for (const size of [10, 5000]) {
      const original = crypto.getRandomValues(new Uint8Array(size));
      const buffer = original.slice();
      const pending = envelope.encryptBytes(null, "s", "i", buffer);
      buffer.fill(0);
      assert.deepEqual(await envelope.decryptBytes(null, "s", "i", await pending), original);
    }
  });

  it("a value sealed through WebCrypto opens with noble's gcm (es2 layout and binding)", async () => {
    const { keys, envelope, memory, keyring } = setup();
    await keys.createKey(null, "s", "i");
    const value = await envelope.encrypt(null, "s", "i", "q".repeat(4096), { context: "f" });
    const raw = decodeBase64Url(value.slice("es2:1:".length))!;
    assert.equal(raw.length, 12 + 4096 + 16);
    const dek = decryptWithKey(keyring.key("sys-key-1"), memory.rows()[0].encryptedDek);
    const opened = openWithNoble(
      dek,
      raw.subarray(0, 12),
      raw.subarray(12),
      es2AssociatedData("s", "i", 1, "f"),
    );
    assert.equal(new TextDecoder().decode(opened), "q".repeat(4096));
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
