import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DataKey,
  decryptWithKey,
  encryptWithKey,
  importWebCryptoKey,
  openWithNoble,
  openWithWebCrypto,
  sealWithNoble,
  sealWithWebCrypto,
  WEB_CRYPTO_MIN_BYTES,
  webCryptoAvailable,
  withoutWebCrypto,
} from "./aes_gcm.ts";
import { decodeBase64Std, encodeBase64Std, fromHex, toHex, utf8Encode } from "./encoding.ts";
import { DecryptionError, EncryptionError } from "./errors.ts";

const hex = (text: string): Uint8Array => fromHex(text)!;
/** Random bytes; `getRandomValues` fills at most 65,536 at a time. */
const random = (length: number): Uint8Array => {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 65_536) crypto.getRandomValues(out.subarray(i, i + 65_536));
  return out;
};

/** Both implementations, behind one shape: synchronous noble, asynchronous WebCrypto. */
const implementations = [
  {
    name: "noble",
    seal: (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array) =>
      Promise.resolve(sealWithNoble(key, nonce, plaintext, aad)),
    open: (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array) =>
      Promise.resolve().then(() => openWithNoble(key, nonce, sealed, aad)),
  },
  {
    name: "WebCrypto",
    seal: async (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array) =>
      sealWithWebCrypto(await importWebCryptoKey(key), nonce, plaintext, aad),
    open: async (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array) =>
      openWithWebCrypto(await importWebCryptoKey(key), nonce, sealed, aad),
  },
];

// The AES-256 cases (13-16) of "The Galois/Counter Mode of Operation" (McGrew and Viega), the
// test vectors NIST SP 800-38D refers to. Expected: ciphertext ‖ tag.
const K15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const P15 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
  "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const C15 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" +
  "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
const GCM_VECTORS = [
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

// The Go library's known answers: KEK = bytes 0..31, DEK = bytes 0x20..0x3f, nonces …01 / …02.
const GO_KEK = Uint8Array.from({ length: 32 }, (_, i) => i);
const GO_DEK = Uint8Array.from({ length: 32 }, (_, i) => i + 0x20);
const GO_WRAPPED =
  "00000000000000000000000135f79ddf60d1163926077b12c08b14d825ae2e67508762b34b3939e21a0d4d6146cbc154a30130ab11e30f4ce3624eec";
const GO_ALICE = "AAAAAAAAAAAAAAACWTwvkoCDYc46ROSGJp4WF2afQGxFXz2ZsyccdqGwCkhn";
const GO_EMPTY = "AAAAAAAAAAAAAAACHmM7QWGU1xz+aG431GloFA==";
const nonceEnding = (last: number): Uint8Array => {
  const nonce = new Uint8Array(12);
  nonce[11] = last;
  return nonce;
};

describe("AES-256-GCM known answers, for noble and for WebCrypto", () => {
  it("WebCrypto is there on this runtime (Deno and Bun both have it)", () => {
    assert.equal(webCryptoAvailable(), true);
  });

  for (const impl of implementations) {
    for (const vector of GCM_VECTORS) {
      it(`${impl.name}: GCM test case ${vector.name}`, async () => {
        const aad = vector.aad === "" ? undefined : hex(vector.aad);
        const sealed = await impl.seal(
          hex(vector.key),
          hex(vector.nonce),
          hex(vector.plaintext),
          aad,
        );
        assert.equal(toHex(sealed), vector.sealed);
        assert.deepEqual(
          await impl.open(hex(vector.key), hex(vector.nonce), sealed, aad),
          hex(vector.plaintext),
        );
      });
    }

    it(`${impl.name}: Go's wrapped DEK, alice@example.com and empty value`, async () => {
      const wrapped = hex(GO_WRAPPED);
      assert.equal(
        toHex(await impl.seal(GO_KEK, nonceEnding(1), GO_DEK)),
        GO_WRAPPED.slice(24),
      );
      assert.deepEqual(
        await impl.open(GO_KEK, wrapped.subarray(0, 12), wrapped.subarray(12)),
        GO_DEK,
      );
      for (const [value, plaintext] of [[GO_ALICE, "alice@example.com"], [GO_EMPTY, ""]] as const) {
        const raw = decodeBase64Std(value)!;
        const sealed = await impl.seal(GO_DEK, nonceEnding(2), utf8Encode(plaintext));
        assert.equal(encodeBase64Std(new Uint8Array([...nonceEnding(2), ...sealed])), value);
        assert.deepEqual(
          await impl.open(GO_DEK, raw.subarray(0, 12), raw.subarray(12)),
          utf8Encode(plaintext),
        );
      }
    });

    it(`${impl.name}: any change to ciphertext, tag, nonce, key or associated data fails`, async () => {
      const key = random(32);
      const nonce = random(12);
      const aad = random(16);
      const sealed = await impl.seal(key, nonce, random(40), aad);
      for (let i = 0; i < sealed.length; i += 7) {
        const tampered = sealed.slice();
        tampered[i] ^= 1;
        await assert.rejects(impl.open(key, nonce, tampered, aad), DecryptionError, `byte ${i}`);
      }
      const otherNonce = nonce.slice();
      otherNonce[11] ^= 0x80;
      await assert.rejects(impl.open(key, otherNonce, sealed, aad), DecryptionError);
      await assert.rejects(impl.open(random(32), nonce, sealed, aad), DecryptionError);
      await assert.rejects(impl.open(key, nonce, sealed, aad.subarray(1)), DecryptionError);
      await assert.rejects(impl.open(key, nonce, sealed), DecryptionError);
      await assert.rejects(impl.open(key, nonce, sealed.subarray(0, 15), aad), DecryptionError);
    });
  }

  it("empty associated data is the same as none (so Go's values, without any, open either way)", async () => {
    const key = random(32);
    const nonce = random(12);
    const sealed = sealWithNoble(key, nonce, utf8Encode("free"));
    for (const impl of implementations) {
      assert.deepEqual(await impl.open(key, nonce, sealed, new Uint8Array(0)), utf8Encode("free"));
    }
  });
});

describe("noble and WebCrypto agree on random inputs", () => {
  it("identical ciphertexts for the same key, nonce, plaintext and associated data; each opens the other's", async () => {
    const lengths = [
      ...Array.from({ length: 80 }, (_, i) => i),
      ...Array.from({ length: 40 }, () => Math.floor(Math.random() * 4096)),
      WEB_CRYPTO_MIN_BYTES - 1,
      WEB_CRYPTO_MIN_BYTES,
      WEB_CRYPTO_MIN_BYTES + 1,
      10_240,
      65_537,
    ];
    for (const length of lengths) {
      const key = random(32);
      const nonce = random(12);
      const plaintext = random(length);
      const aad = length % 3 === 0 ? undefined : random(Math.floor(Math.random() * 64));
      const webKey = await importWebCryptoKey(key);
      const fromNoble = sealWithNoble(key, nonce, plaintext, aad);
      const fromWeb = await sealWithWebCrypto(webKey, nonce, plaintext, aad);
      assert.deepEqual(fromWeb, fromNoble, `length ${length}`);
      assert.deepEqual(await openWithWebCrypto(webKey, nonce, fromNoble, aad), plaintext);
      assert.deepEqual(openWithNoble(key, nonce, fromWeb, aad), plaintext);
    }
  });

  it("agree on inputs at odd offsets of larger buffers", async () => {
    const view = (bytes: Uint8Array): Uint8Array => {
      const buffer = new Uint8Array(bytes.length + 3);
      buffer.set(bytes, 3);
      return buffer.subarray(3);
    };
    for (const length of [17, 4099]) {
      const key = random(32);
      const nonce = random(12);
      const plaintext = random(length);
      const aad = random(33);
      const expected = sealWithNoble(key, nonce, plaintext, aad);
      const webKey = await importWebCryptoKey(view(key));
      assert.deepEqual(
        await sealWithWebCrypto(webKey, view(nonce), view(plaintext), view(aad)),
        expected,
      );
      assert.deepEqual(sealWithNoble(view(key), view(nonce), view(plaintext), view(aad)), expected);
    }
  });
});

describe("encryptWithKey / decryptWithKey (data-key wrapping)", () => {
  it("writes nonce ‖ ciphertext ‖ tag with a fresh nonce each time, 60 bytes for a key", () => {
    const a = encryptWithKey(GO_KEK, GO_DEK);
    const b = encryptWithKey(GO_KEK, GO_DEK);
    assert.equal(a.length, 60);
    assert.notDeepEqual(a.subarray(0, 12), b.subarray(0, 12));
    assert.deepEqual(decryptWithKey(GO_KEK, a), GO_DEK);
    assert.deepEqual(decryptWithKey(GO_KEK, hex(GO_WRAPPED)), GO_DEK);
  });

  it("short, foreign or tampered input is DecryptionError", () => {
    for (const length of [0, 1, 12, 27]) {
      assert.throws(
        () => decryptWithKey(GO_KEK, new Uint8Array(length)),
        (error: DecryptionError) =>
          error instanceof DecryptionError && error.reason === "ciphertext too short",
      );
    }
    assert.throws(() => decryptWithKey(random(32), hex(GO_WRAPPED)), DecryptionError);
    const tampered = hex(GO_WRAPPED);
    tampered[30] ^= 1;
    assert.throws(() => decryptWithKey(GO_KEK, tampered), DecryptionError);
  });
});

describe("DataKey", () => {
  it("short values synchronously with noble, long ones through WebCrypto, same bytes", async () => {
    const bytes = random(32);
    const copy = bytes.slice();
    const key = new DataKey(bytes);
    const nonce = random(12);
    const aad = random(16);
    const short = random(WEB_CRYPTO_MIN_BYTES - 1);
    const long = random(WEB_CRYPTO_MIN_BYTES);
    const sealedShort = key.seal(nonce, short, aad);
    assert.ok(sealedShort instanceof Uint8Array, "noble, synchronous");
    assert.deepEqual(sealedShort, sealWithNoble(copy, nonce, short, aad));
    const sealedLong = key.seal(nonce, long, aad);
    assert.ok(sealedLong instanceof Promise, "WebCrypto, asynchronous");
    assert.deepEqual(await sealedLong, sealWithNoble(copy, nonce, long, aad));
    assert.deepEqual(key.open(nonce, sealedShort, aad), short);
    assert.deepEqual(await key.open(nonce, await sealedLong, aad), long);
    await assert.rejects(
      Promise.resolve(key.open(nonce, await sealedLong, random(16))),
      DecryptionError,
    );
  });

  it("reads its inputs before returning: callers may wipe them at once", async () => {
    const key = new DataKey(random(32));
    const nonce = random(12);
    const plaintext = random(5000);
    const expected = plaintext.slice();
    const pendingNonce = nonce.slice();
    const sealed = key.seal(nonce, plaintext);
    plaintext.fill(0);
    nonce.fill(0);
    const bytes = await sealed;
    const input = bytes.slice();
    const opened = key.open(pendingNonce, bytes);
    bytes.fill(0);
    pendingNonce.fill(0);
    assert.deepEqual(await opened, expected);
    assert.equal(input.length, 5016);
  });

  it("destroy zeroes the key bytes; later use throws, an operation already started finishes", async () => {
    const bytes = random(32);
    const copy = bytes.slice();
    const key = new DataKey(bytes);
    const nonce = random(12);
    const plaintext = random(4096);
    const aad = random(16);
    const aadCopy = aad.slice();
    // The first long value imports the WebCrypto key: from the bytes as they are now.
    const pending = key.seal(nonce, plaintext, aad);
    key.destroy();
    key.destroy(); // idempotent
    aad.fill(0);
    assert.equal(key.destroyed, true);
    assert.deepEqual(bytes, new Uint8Array(32));
    assert.deepEqual(await pending, sealWithNoble(copy, nonce, plaintext, aadCopy));
    assert.throws(() => key.seal(nonce, random(10)), EncryptionError);
    assert.throws(() => key.open(nonce, random(40)), EncryptionError);
    assert.throws(() => new DataKey(random(16)), EncryptionError);
  });

  it("without WebCrypto every size goes through noble, with the same bytes", async () => {
    const bytes = random(32);
    const copy = bytes.slice();
    const nonce = random(12);
    const long = random(20_000);
    await withoutWebCrypto(() => {
      const key = new DataKey(bytes);
      const sealed = key.seal(nonce, long);
      assert.ok(sealed instanceof Uint8Array);
      assert.deepEqual(sealed, sealWithNoble(copy, nonce, long));
      assert.deepEqual(key.open(nonce, sealed as Uint8Array), long);
      return Promise.resolve();
    });
    assert.equal(webCryptoAvailable(), true, "restored");
  });
});
