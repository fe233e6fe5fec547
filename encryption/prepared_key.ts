/**
 * A prepared AES-256-GCM key: the AES key expansion and the GHASH multiplication table computed
 * once and reused for every value under that key. `gcm(key, nonce)` from `@noble/ciphers` builds
 * both for every call, which is most of the work for short values (a 100-byte field costs about as
 * much to set up as to encrypt), so hot keys (the data keys in the DEK cache) are worth preparing.
 *
 * GCM itself (NIST SP 800-38D, 96-bit nonces only) is composed here from noble's reviewed parts:
 * `unsafe.expandKeyLE`, `unsafe.encryptBlock` and `unsafe.ctr32` for AES, and its `GHASH`, whose
 * table we keep and whose running state we give a fresh object per value. Those are lower-level
 * noble interfaces (pinned in deno.json and package.json); the tests compare every result with
 * noble's own `gcm` and with the platform's WebCrypto, and check the NIST vectors, so an upgrade
 * that changed them fails loudly.
 *
 * @module
 */
import { unsafe } from "@noble/ciphers/aes.js";
import { GHASH } from "@noble/ciphers/_polyval.js";
import { DecryptionError, EncryptionError, InvalidKeySizeError } from "./errors.ts";

const BLOCK = 16;
const NONCE_SIZE = 12;
const TAG_SIZE = 16;
/** GCM's plaintext limit, 2^39 - 256 bits. */
const MAX_PLAINTEXT = 2 ** 36 - 32;

/** One run of noble's GHASH: its (protected) running state and flags, and the calls we make. */
interface GhashRun {
  s0: number;
  s1: number;
  s2: number;
  s3: number;
  finished: boolean;
  destroyed: boolean;
  update(data: Uint8Array): unknown;
  digestInto(out: Uint8Array): void;
}

/** `bytes`, or an aligned copy when it does not start on a 4-byte boundary (noble reads u32s). */
function aligned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
}

/**
 * An AES-256-GCM key prepared for many operations: 96-bit nonces, 128-bit tags, the same bytes as
 * `gcm(key, nonce, associatedData)` from `@noble/ciphers`. It holds key material (the expanded key
 * and the hash key's table) until {@link PreparedAesGcmKey.destroy} wipes it; the DEK cache does
 * that when a key leaves it. Pass one to {@link AesGcmCipher} methods in place of the key bytes.
 *
 * @example
 * ```ts
 * import { AesGcmCipher, PreparedAesGcmKey } from "@eventsalsa/eventsalsa/encryption";
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const prepared = new PreparedAesGcmKey(key);
 * const cipher = new AesGcmCipher();
 * try {
 *   const sealed = cipher.encrypt(prepared, new TextEncoder().encode("alice@example.com"));
 *   console.log(new TextDecoder().decode(cipher.decrypt(key, sealed))); // alice@example.com
 * } finally {
 *   prepared.destroy();
 * }
 * ```
 */
export class PreparedAesGcmKey {
  #expanded: Uint32Array;
  /** Holds the table for the hash key H = AES_K(0^128); never absorbs data itself. */
  #hash: GHASH;
  #destroyed = false;

  /** Expands `key` (32 bytes, copied: the caller may wipe its array afterwards). */
  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length !== 32) {
      throw new InvalidKeySizeError(
        "AES-256-GCM key",
        key instanceof Uint8Array ? key.length : 0,
        "exactly 32",
      );
    }
    this.#expanded = unsafe.expandKeyLE(key);
    const hashKey = unsafe.encryptBlock(this.#expanded, new Uint8Array(BLOCK));
    // Values here are field-sized, so the small table (GHASH picks 2-bit windows for ≤ 1 KiB):
    // measured ~17 KiB of heap per key, ~17 MiB for a full default DEK cache (1,000 keys).
    this.#hash = new GHASH(hashKey, 1024);
    hashKey.fill(0);
  }

  /** Whether {@link PreparedAesGcmKey.destroy} has run. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Encrypts with the given 12-byte nonce and returns `ciphertext ‖ tag`. The nonce must never
   * repeat under this key.
   *
   * @example
   * ```ts
   * import { PreparedAesGcmKey } from "@eventsalsa/eventsalsa/encryption";
   * const prepared = new PreparedAesGcmKey(new Uint8Array(32));
   * const nonce = crypto.getRandomValues(new Uint8Array(12));
   * const sealed = prepared.seal(nonce, new Uint8Array([1, 2, 3]));
   * console.log(sealed.length); // 19
   * ```
   */
  seal(nonce: Uint8Array, plaintext: Uint8Array, associatedData?: Uint8Array): Uint8Array {
    this.#checkUsable();
    checkNonce(nonce);
    if (!(plaintext instanceof Uint8Array)) {
      throw new EncryptionError("plaintext must be a Uint8Array");
    }
    if (plaintext.length > MAX_PLAINTEXT) {
      throw new EncryptionError("plaintext exceeds the AES-GCM limit of 2^36 - 32 bytes");
    }
    const out = new Uint8Array(plaintext.length + TAG_SIZE);
    const counter = this.#initialCounter(nonce);
    const tagMask = unsafe.ctr32(this.#expanded, false, counter, new Uint8Array(BLOCK));
    // ctr32 advanced `counter` to inc32(J0), where the payload's keystream starts.
    const body = out.subarray(0, plaintext.length);
    const input = aligned(plaintext);
    unsafe.ctr32(this.#expanded, false, counter, input, body);
    if (input !== plaintext) input.fill(0);
    this.#tagInto(associatedData, body, tagMask, out.subarray(plaintext.length));
    counter.fill(0);
    return out;
  }

  /**
   * Authenticates and decrypts `ciphertext ‖ tag` made with `nonce`; a {@link DecryptionError} when
   * it does not authenticate (nothing is decrypted then).
   *
   * @example
   * ```ts
   * import { PreparedAesGcmKey } from "@eventsalsa/eventsalsa/encryption";
   * const prepared = new PreparedAesGcmKey(new Uint8Array(32));
   * const nonce = crypto.getRandomValues(new Uint8Array(12));
   * const sealed = prepared.seal(nonce, new Uint8Array([1, 2, 3]));
   * console.log(prepared.open(nonce, sealed)); // Uint8Array(3) [ 1, 2, 3 ]
   * ```
   */
  open(nonce: Uint8Array, sealed: Uint8Array, associatedData?: Uint8Array): Uint8Array {
    this.#checkUsable();
    checkNonce(nonce);
    if (!(sealed instanceof Uint8Array) || sealed.length < TAG_SIZE) {
      throw new DecryptionError("ciphertext too short");
    }
    const body = aligned(sealed.subarray(0, sealed.length - TAG_SIZE));
    const counter = this.#initialCounter(nonce);
    const tagMask = unsafe.ctr32(this.#expanded, false, counter, new Uint8Array(BLOCK));
    const expected = new Uint8Array(TAG_SIZE);
    this.#tagInto(associatedData, body, tagMask, expected);
    // Constant time in the tag's contents; verified before any plaintext exists.
    let difference = 0;
    for (let i = 0; i < TAG_SIZE; i++) difference |= expected[i] ^ sealed[body.length + i];
    if (difference !== 0) {
      counter.fill(0);
      throw new DecryptionError("authentication failed");
    }
    const plaintext = unsafe.ctr32(this.#expanded, false, counter, body);
    counter.fill(0);
    return plaintext;
  }

  /**
   * Wipes the expanded key and the hash table; any later use throws. Best effort, like every wipe
   * in JavaScript: it clears these arrays, not copies the engine may have made.
   *
   * @example
   * ```ts
   * import { PreparedAesGcmKey } from "@eventsalsa/eventsalsa/encryption";
   * const prepared = new PreparedAesGcmKey(new Uint8Array(32));
   * prepared.destroy();
   * console.log(prepared.destroyed); // true
   * ```
   */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#expanded.fill(0);
    this.#hash.destroy();
  }

  #checkUsable(): void {
    if (this.#destroyed) throw new EncryptionError("this prepared AES-GCM key was destroyed");
  }

  /** J0 = nonce ‖ 0^31 ‖ 1, the counter block of a 96-bit nonce. */
  #initialCounter(nonce: Uint8Array): Uint8Array {
    const counter = new Uint8Array(BLOCK);
    counter.set(nonce);
    counter[BLOCK - 1] = 1;
    return counter;
  }

  /** tag = GHASH_H(A ‖ pad ‖ C ‖ pad ‖ [len(A)]64 ‖ [len(C)]64) xor AES_K(J0), into `out`. */
  #tagInto(
    associatedData: Uint8Array | undefined,
    ciphertext: Uint8Array,
    tagMask: Uint8Array,
    out: Uint8Array,
  ): void {
    // A fresh running state over the shared table: noble's GHASH keeps both on one object, and
    // its table is what costs. The template itself never absorbs anything.
    const state = Object.create(this.#hash) as GhashRun;
    state.s0 =
      state.s1 =
      state.s2 =
      state.s3 =
        0;
    state.finished = false;
    state.destroyed = false;
    const aadLength = associatedData?.length ?? 0;
    if (aadLength > 0) state.update(associatedData!);
    state.update(ciphertext);
    const lengths = new Uint8Array(BLOCK);
    const view = new DataView(lengths.buffer);
    writeBits(view, 0, aadLength);
    writeBits(view, 8, ciphertext.length);
    state.update(lengths);
    const digest = new Uint8Array(BLOCK);
    state.digestInto(digest);
    for (let i = 0; i < TAG_SIZE; i++) out[i] = digest[i] ^ tagMask[i];
    digest.fill(0);
    tagMask.fill(0);
  }
}

function checkNonce(nonce: Uint8Array): void {
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_SIZE) {
    throw new EncryptionError("an AES-GCM nonce must be 12 bytes");
  }
}

/** The bit length of `bytes` bytes as a big-endian u64 at `offset`. */
function writeBits(view: DataView, offset: number, bytes: number): void {
  const bits = bytes * 8;
  view.setUint32(offset, Math.floor(bits / 2 ** 32));
  view.setUint32(offset + 4, bits >>> 0);
}
