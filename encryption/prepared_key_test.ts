import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { gcm } from "@noble/ciphers/aes.js";
import { AesGcmCipher } from "./cipher.ts";
import { DecryptionError, EncryptionError, InvalidKeySizeError } from "./errors.ts";
import { PreparedAesGcmKey } from "./prepared_key.ts";

const hex = (text: string): Uint8Array =>
  Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));
const random = (length: number): Uint8Array<ArrayBuffer> =>
  crypto.getRandomValues(new Uint8Array(length));
/** A view that starts at an odd offset, as a slice of a larger buffer would. */
const unaligned = (bytes: Uint8Array): Uint8Array => {
  const buffer = new Uint8Array(bytes.length + 1);
  buffer.set(bytes, 1);
  return buffer.subarray(1);
};

// The AES-256 cases (13-16) of "The Galois/Counter Mode of Operation" (McGrew and Viega), the
// test vectors NIST SP 800-38D refers to. Expected: ciphertext ‖ tag.
const K15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const P15 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
  "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const C15 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" +
  "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
const VECTORS = [
  {
    name: "13: zero key, empty plaintext",
    key: "00".repeat(32),
    nonce: "00".repeat(12),
    aad: "",
    plaintext: "",
    sealed: "530f8afbc74536b9a963b4f1c4cb738b",
  },
  {
    name: "14: zero key, one zero block",
    key: "00".repeat(32),
    nonce: "00".repeat(12),
    aad: "",
    plaintext: "00".repeat(16),
    sealed: "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919",
  },
  {
    name: "15: four blocks",
    key: K15,
    nonce: "cafebabefacedbaddecaf888",
    aad: "",
    plaintext: P15,
    sealed: C15 + "b094dac5d93471bdec1a502270e3cc6c",
  },
  {
    name: "16: partial last block and 20 bytes of associated data",
    key: K15,
    nonce: "cafebabefacedbaddecaf888",
    aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
    plaintext: P15.slice(0, 120),
    sealed: C15.slice(0, 120) + "76fc6ece0f4e1768cddf8853bb2d551b",
  },
];

describe("PreparedAesGcmKey", () => {
  for (const vector of VECTORS) {
    it(`GCM test case ${vector.name}`, () => {
      const prepared = new PreparedAesGcmKey(hex(vector.key));
      const aad = vector.aad === "" ? undefined : hex(vector.aad);
      const sealed = prepared.seal(hex(vector.nonce), hex(vector.plaintext), aad);
      assert.deepEqual(sealed, hex(vector.sealed));
      assert.deepEqual(prepared.open(hex(vector.nonce), sealed, aad), hex(vector.plaintext));
    });
  }

  it("matches noble's gcm for every length 0-300, with and without associated data", () => {
    const key = random(32);
    const prepared = new PreparedAesGcmKey(key);
    for (let length = 0; length <= 300; length++) {
      const plaintext = random(length);
      const nonce = random(12);
      const aad = length % 3 === 0 ? undefined : random(length % 41);
      const expected = gcm(key, nonce, aad?.length ? aad : undefined).encrypt(plaintext);
      const sealed = prepared.seal(nonce, plaintext, aad);
      assert.deepEqual(sealed, expected, `length ${length}`);
      assert.deepEqual(prepared.open(nonce, sealed, aad), plaintext, `length ${length}`);
    }
  });

  it("matches noble's gcm for large values and for inputs at odd offsets", () => {
    const key = random(32);
    const prepared = new PreparedAesGcmKey(key);
    for (const length of [1024, 4099, 65_536]) {
      const plaintext = random(length);
      const nonce = random(12);
      const aad = random(33);
      const expected = gcm(key, nonce, aad).encrypt(plaintext);
      const sealed = prepared.seal(unaligned(nonce), unaligned(plaintext), unaligned(aad));
      assert.deepEqual(sealed, expected, `length ${length}`);
      assert.deepEqual(prepared.open(nonce, unaligned(sealed), aad), plaintext);
    }
  });

  it("matches the platform's WebCrypto AES-GCM (an independent implementation)", async () => {
    for (const length of [0, 1, 15, 16, 17, 100, 257]) {
      const key = random(32);
      const nonce = random(12);
      const aad = random(length % 20);
      const plaintext = random(length);
      const webKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
      const expected = new Uint8Array(
        await crypto.subtle.encrypt(
          { name: "AES-GCM", iv: nonce, additionalData: aad },
          webKey,
          plaintext,
        ),
      );
      assert.deepEqual(new PreparedAesGcmKey(key).seal(nonce, plaintext, aad), expected);
    }
  });

  it("keeps no state between values: interleaved calls give the one-shot results", () => {
    const key = random(32);
    const prepared = new PreparedAesGcmKey(key);
    const inputs = Array.from({ length: 20 }, (_, i) => ({
      nonce: random(12),
      plaintext: random(i * 7),
      aad: random(i % 5),
    }));
    const sealed = inputs.map(({ nonce, plaintext, aad }) => prepared.seal(nonce, plaintext, aad));
    // Open in reverse order, and fail one in between: a failure leaves nothing behind either.
    for (let i = inputs.length - 1; i >= 0; i--) {
      const { nonce, plaintext, aad } = inputs[i];
      assert.throws(() => prepared.open(random(12), sealed[i], aad), DecryptionError);
      assert.deepEqual(sealed[i], gcm(key, nonce, aad.length ? aad : undefined).encrypt(plaintext));
      assert.deepEqual(prepared.open(nonce, sealed[i], aad), plaintext);
    }
  });

  it("rejects any change to ciphertext, tag, nonce or associated data", () => {
    const prepared = new PreparedAesGcmKey(random(32));
    const nonce = random(12);
    const aad = random(16);
    const sealed = prepared.seal(nonce, random(40), aad);
    for (let i = 0; i < sealed.length; i++) {
      const tampered = sealed.slice();
      tampered[i] ^= 1;
      assert.throws(() => prepared.open(nonce, tampered, aad), DecryptionError, `byte ${i}`);
    }
    const otherNonce = nonce.slice();
    otherNonce[11] ^= 0x80;
    assert.throws(() => prepared.open(otherNonce, sealed, aad), DecryptionError);
    assert.throws(() => prepared.open(nonce, sealed, aad.subarray(1)), DecryptionError);
    assert.throws(() => prepared.open(nonce, sealed), DecryptionError);
    assert.throws(() => prepared.open(nonce, sealed.subarray(0, 15), aad), DecryptionError);
    assert.throws(
      () => new PreparedAesGcmKey(random(32)).open(nonce, sealed, aad),
      DecryptionError,
    );
  });

  it("checks its inputs: key size, nonce size, types", () => {
    assert.throws(() => new PreparedAesGcmKey(random(16)), InvalidKeySizeError);
    assert.throws(() => new PreparedAesGcmKey("k" as unknown as Uint8Array), InvalidKeySizeError);
    const prepared = new PreparedAesGcmKey(random(32));
    assert.throws(() => prepared.seal(random(16), random(1)), EncryptionError);
    assert.throws(() => prepared.open(random(8), random(32)), EncryptionError);
    assert.throws(() => prepared.seal(random(12), "x" as unknown as Uint8Array), EncryptionError);
  });

  it("copies the key: wiping the caller's array does not change it", () => {
    const key = random(32);
    const copy = key.slice();
    const prepared = new PreparedAesGcmKey(key);
    key.fill(0);
    const nonce = random(12);
    assert.deepEqual(
      prepared.seal(nonce, random(0).fill(0)),
      gcm(copy, nonce).encrypt(new Uint8Array()),
    );
  });

  it("is unusable after destroy", () => {
    const prepared = new PreparedAesGcmKey(random(32));
    const nonce = random(12);
    const sealed = prepared.seal(nonce, random(10));
    prepared.destroy();
    prepared.destroy(); // idempotent
    assert.equal(prepared.destroyed, true);
    assert.throws(() => prepared.seal(nonce, random(10)), EncryptionError);
    assert.throws(() => prepared.open(nonce, sealed), EncryptionError);
  });

  it("AesGcmCipher takes a prepared key wherever it takes key bytes", () => {
    const key = random(32);
    const prepared = new PreparedAesGcmKey(key);
    const cipher = new AesGcmCipher();
    const aad = random(16);
    const plaintext = new TextEncoder().encode("alice@example.com");
    assert.deepEqual(cipher.decrypt(key, cipher.encrypt(prepared, plaintext, aad), aad), plaintext);
    assert.deepEqual(cipher.decrypt(prepared, cipher.encrypt(key, plaintext, aad), aad), plaintext);
    const { nonce, sealed } = cipher.encryptDetached(prepared, plaintext);
    assert.deepEqual(gcm(key, nonce).decrypt(sealed), plaintext);
    assert.throws(
      () => cipher.decrypt(prepared, cipher.encrypt(random(32), plaintext)),
      DecryptionError,
    );
  });
});
