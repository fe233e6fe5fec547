import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { BlindIndex, GoCompatibleHasher, normalizers } from "./blind_index.ts";
import { encodeBase64Std, toHex, utf8Encode } from "./encoding.ts";
import { InvalidInputError, InvalidKeySizeError, KeyringError } from "./errors.ts";

const goHasher = (key: string) => new GoCompatibleHasher(utf8Encode(key));

describe("GoCompatibleHasher (scenarios 15-18, and the Go known-answer vectors)", () => {
  it("matches the Go known-answer vectors for key test-key", () => {
    const hasher = goHasher("test-key");
    assert.equal(
      hasher.hash(""),
      "2711cc23e9ab1b8a9bc0fe991238da92671624a9ebdaf1c1abec06e7e9a14f9b",
    );
    assert.equal(
      hasher.hash("hello"),
      "3dae003f1cd85bdd35ea02a5ce2e492b9ba862592532f0ca31d398da8d2133fa",
    );
    assert.equal(
      hasher.hash("alice@example.com"),
      "f4ec100211f13d19d596a3b4a8d60f6a5ccf3d3a3c3c9fece41d1ff21e5475dd",
    );
  });

  it("15. is deterministic", () => {
    const hasher = goHasher("test-key");
    for (const input of ["", "hello", "the quick brown fox jumps over the lazy dog"]) {
      assert.equal(hasher.hash(input), goHasher("test-key").hash(input));
    }
  });

  it("16. different inputs give different hashes", () => {
    const hasher = goHasher("test-key");
    for (const [a, b] of [["hello", "world"], ["", "a"], ["abc", "abd"]]) {
      assert.notEqual(hasher.hash(a), hasher.hash(b));
    }
  });

  it("17. different keys give different hashes", () => {
    for (const [a, b] of [["key-one", "key-two"], ["a", "ab"]]) {
      assert.notEqual(goHasher(a).hash("same"), goHasher(b).hash("same"));
    }
  });

  it("18. output is 64 lower-case hex characters", () => {
    for (const input of ["", "hi", "x".repeat(10_000)]) {
      assert.match(goHasher("k").hash(input), /^[0-9a-f]{64}$/);
    }
  });

  it("refuses an empty key and non-string values", () => {
    assert.throws(() => new GoCompatibleHasher(new Uint8Array(0)), InvalidKeySizeError);
    assert.throws(() => goHasher("k").hash(5 as unknown as string), InvalidInputError);
  });
});

describe("BlindIndex", () => {
  const key1 = new Uint8Array(32).fill(1);
  const key2 = new Uint8Array(32).fill(2);
  const index = (extra: Partial<ConstructorParameters<typeof BlindIndex>[0]> = {}) =>
    new BlindIndex({ keys: { bi1: key1 }, activeKeyId: "bi1", ...extra });

  it("hashes as <keyId>:HMAC(HMAC(key, domain ‖ 0 ‖ index), value)", () => {
    const label = new Uint8Array([
      ...utf8Encode("eventsalsa/blind-index/v1"),
      0,
      ...utf8Encode("email"),
    ]);
    const indexKey = hmac(sha256, key1, label);
    const expected = `bi1:${toHex(hmac(sha256, indexKey, utf8Encode("alice@example.com")))}`;
    assert.equal(index().hash("email", "alice@example.com"), expected);
  });

  it("separates domains per index name, and differs from the Go hash", () => {
    const bi = index();
    const email = bi.hash("email", "alice@example.com");
    assert.notEqual(email, bi.hash("login", "alice@example.com"));
    assert.notEqual(email.slice(4), new GoCompatibleHasher(key1).hash("alice@example.com"));
    assert.equal(email, bi.hash("email", "alice@example.com"), "deterministic");
  });

  it("requires keys of at least 32 bytes, valid ids and a present active id", () => {
    assert.throws(
      () => new BlindIndex({ keys: { k: new Uint8Array(31) }, activeKeyId: "k" }),
      InvalidKeySizeError,
    );
    assert.throws(
      () => new BlindIndex({ keys: { k: "c2hvcnQ=" }, activeKeyId: "k" }),
      InvalidKeySizeError,
    );
    assert.throws(() => new BlindIndex({ keys: { k: "***" }, activeKeyId: "k" }), KeyringError);
    assert.throws(
      () => new BlindIndex({ keys: { "a:b": key1 }, activeKeyId: "a:b" }),
      KeyringError,
    );
    assert.throws(() => new BlindIndex({ keys: { k: key1 }, activeKeyId: "other" }), KeyringError);
    assert.throws(() => new BlindIndex({ keys: {}, activeKeyId: "k" }), KeyringError);
    const long = new BlindIndex({
      keys: { k: encodeBase64Std(new Uint8Array(64).fill(5)) },
      activeKeyId: "k",
    });
    assert.match(long.hash("i", "v"), /^k:[0-9a-f]{64}$/);
  });

  it("normalizes only when asked", () => {
    const plain = index();
    assert.notEqual(
      plain.hash("email", " Alice@Example.COM "),
      plain.hash("email", "alice@example.com"),
    );
    const normalized = index({
      normalize: { email: [normalizers.nfc, normalizers.trim, normalizers.lowerCase] },
    });
    assert.equal(
      normalized.hash("email", " Alice@Example.COM "),
      normalized.hash("email", "alice@example.com"),
    );
    // NFC: "é" precomposed and decomposed hash alike.
    assert.equal(
      normalized.hash("email", "jos\u00e9@x.org"),
      normalized.hash("email", "jose\u0301@x.org"),
    );
    // Other indexes of the same instance are untouched.
    assert.notEqual(normalized.hash("name", "Alice"), normalized.hash("name", "alice"));
    assert.equal(normalizers.trim("  x\n"), "x");
    assert.equal(normalizers.lowerCase("ÀB"), "àb");
  });

  it("rotates keys: candidates, matches under old keys, needsRehash, keyIdOf", () => {
    const old = index();
    const stored = old.hash("email", "alice@example.com");
    const rotated = new BlindIndex({ keys: { bi1: key1, bi2: key2 }, activeKeyId: "bi2" });
    assert.deepEqual(rotated.keyIds, ["bi2", "bi1"]);
    const candidates = rotated.candidates("email", "alice@example.com");
    assert.equal(candidates.length, 2);
    assert.ok(candidates[0].startsWith("bi2:"));
    assert.equal(candidates[1], stored);
    assert.equal(rotated.matches("email", "alice@example.com", stored), true);
    assert.equal(rotated.matches("email", "bob@example.com", stored), false);
    assert.equal(rotated.needsRehash(stored), true);
    assert.equal(rotated.needsRehash(rotated.hash("email", "alice@example.com")), false);
    assert.equal(rotated.keyIdOf(stored), "bi1");
    assert.equal(rotated.keyIdOf("garbage"), null);
    assert.equal(rotated.keyIdOf(`bi1:${"A".repeat(64)}`), null);
    const retired = new BlindIndex({ keys: { bi2: key2 }, activeKeyId: "bi2" });
    assert.equal(retired.matches("email", "alice@example.com", stored), false);
  });

  it("bad index names and values are InvalidInputError", () => {
    const bi = index();
    assert.throws(() => bi.hash("", "x"), InvalidInputError);
    assert.throws(() => bi.hash("a\u0000b", "x"), InvalidInputError);
    assert.throws(() => bi.hash("email", null as unknown as string), InvalidInputError);
    assert.throws(() => bi.candidates("email", 3 as unknown as string), InvalidInputError);
    assert.throws(
      () => index({ normalize: { email: ["trim" as unknown as (s: string) => string] } }),
      InvalidInputError,
    );
  });

  it("copies its keys", () => {
    const material = new Uint8Array(32).fill(9);
    const bi = new BlindIndex({ keys: { k: material }, activeKeyId: "k" });
    const before = bi.hash("i", "v");
    material.fill(0);
    assert.equal(bi.hash("i", "v"), before);
  });
});
