import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AesGcmCipher } from "./cipher.ts";
import { decodeBase64Std, encodeBase64Std, fromHex, toHex, utf8Encode } from "./encoding.ts";
import { DecryptionError, EncryptionError, InvalidKeySizeError } from "./errors.ts";

const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const text = (value: string) => utf8Encode(value);
const kek = Uint8Array.from({ length: 32 }, (_, i) => i);
const dek = Uint8Array.from({ length: 32 }, (_, i) => i + 0x20);
const fixedNonce = (last: number) => () => {
  const nonce = new Uint8Array(12);
  nonce[11] = last;
  return nonce;
};

describe("AES-256-GCM cipher", () => {
  const cipher = new AesGcmCipher();

  it("1. round-trips a message", () => {
    const key = random(32);
    const sealed = cipher.encrypt(key, text("hello, envelope encryption!"));
    assert.equal(
      new TextDecoder().decode(cipher.decrypt(key, sealed)),
      "hello, envelope encryption!",
    );
  });

  it("2. round-trips the empty plaintext", () => {
    const key = random(32);
    const sealed = cipher.encrypt(key, new Uint8Array(0));
    assert.equal(sealed.length, 28);
    assert.deepEqual(cipher.decrypt(key, sealed), new Uint8Array(0));
  });

  it("3. decrypting with another key fails with DecryptionError", () => {
    const sealed = cipher.encrypt(random(32), text("secret"));
    assert.throws(() => cipher.decrypt(random(32), sealed), DecryptionError);
  });

  it("4. encrypting with a wrong key length is InvalidKeySizeError", () => {
    for (const length of [0, 15, 16, 24, 31, 33, 64]) {
      assert.throws(
        () => cipher.encrypt(new Uint8Array(length), text("x")),
        InvalidKeySizeError,
        `${length}`,
      );
    }
  });

  it("5. decrypting with a wrong key length is InvalidKeySizeError, checked first", () => {
    for (const length of [0, 16, 31, 33]) {
      assert.throws(
        () => cipher.decrypt(new Uint8Array(length), new Uint8Array(100)),
        InvalidKeySizeError,
      );
    }
  });

  it("6. ciphertexts shorter than nonce + tag are DecryptionError", () => {
    for (const length of [0, 1, 12, 27]) {
      assert.throws(
        () => cipher.decrypt(random(32), new Uint8Array(length)),
        (error: DecryptionError) =>
          error instanceof DecryptionError && error.reason === "ciphertext too short",
      );
    }
  });

  it("7. a flipped tag byte is DecryptionError", () => {
    const key = random(32);
    const sealed = cipher.encrypt(key, text("tamper me"));
    sealed[sealed.length - 1] ^= 1;
    assert.throws(() => cipher.decrypt(key, sealed), DecryptionError);
  });

  it("8. every encryption draws a fresh nonce", () => {
    const key = random(32);
    const a = cipher.encrypt(key, text("same"));
    const b = cipher.encrypt(key, text("same"));
    assert.notDeepEqual(a.subarray(0, 12), b.subarray(0, 12));
  });

  it("9. keySize is 32", () => {
    assert.equal(cipher.keySize, 32);
  });

  it("associated data is authenticated: other or missing AAD fails", () => {
    const key = random(32);
    const sealed = cipher.encrypt(key, text("bound"), text("user-pii/u-1"));
    assert.deepEqual(cipher.decrypt(key, sealed, text("user-pii/u-1")), text("bound"));
    assert.throws(() => cipher.decrypt(key, sealed, text("user-pii/u-2")), DecryptionError);
    assert.throws(() => cipher.decrypt(key, sealed), DecryptionError);
    // Empty AAD is the same as none (GCM), so Go's values (no AAD) decrypt either way.
    const plain = cipher.encrypt(key, text("free"));
    assert.deepEqual(cipher.decrypt(key, plain, new Uint8Array(0)), text("free"));
  });

  it("a failing or misbehaving random source is EncryptionError", () => {
    const failing = new AesGcmCipher({
      randomBytes: () => {
        throw new Error("entropy exhausted");
      },
    });
    assert.throws(() => failing.encrypt(random(32), text("x")), EncryptionError);
    const short = new AesGcmCipher({ randomBytes: () => new Uint8Array(4) });
    assert.throws(() => short.encrypt(random(32), text("x")), EncryptionError);
  });
});

describe("Go known-answer vectors", () => {
  it("wraps the DEK under the KEK with nonce …01 to the 60-byte vector, and back", () => {
    const expected =
      "00000000000000000000000135f79ddf60d1163926077b12c08b14d825ae2e67508762b34b3939e21a0d4d6146cbc154a30130ab11e30f4ce3624eec";
    const wrapped = new AesGcmCipher({ randomBytes: fixedNonce(1) }).encrypt(kek, dek);
    assert.equal(wrapped.length, 60);
    assert.equal(toHex(wrapped), expected);
    assert.deepEqual(new AesGcmCipher().decrypt(kek, fromHex(expected)!), dek);
  });

  it("encrypts alice@example.com under the DEK with nonce …02 to the Go base64, and back", () => {
    const expected = "AAAAAAAAAAAAAAACWTwvkoCDYc46ROSGJp4WF2afQGxFXz2ZsyccdqGwCkhn";
    const sealed = new AesGcmCipher({ randomBytes: fixedNonce(2) }).encrypt(
      dek,
      text("alice@example.com"),
    );
    assert.equal(sealed.length, 45);
    assert.equal(encodeBase64Std(sealed), expected);
    assert.deepEqual(
      new AesGcmCipher().decrypt(dek, decodeBase64Std(expected)!),
      text("alice@example.com"),
    );
  });

  it("encrypts the empty plaintext to the 40-character vector, and back", () => {
    const expected = "AAAAAAAAAAAAAAACHmM7QWGU1xz+aG431GloFA==";
    const sealed = new AesGcmCipher({ randomBytes: fixedNonce(2) }).encrypt(dek, new Uint8Array(0));
    assert.equal(encodeBase64Std(sealed), expected);
    assert.deepEqual(
      new AesGcmCipher().decrypt(dek, decodeBase64Std(expected)!),
      new Uint8Array(0),
    );
  });
});
