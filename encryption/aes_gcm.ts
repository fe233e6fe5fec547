/**
 * AES-256-GCM for both layers of the envelope (data keys under system keys, values under data
 * keys), from public, audited primitives only: `gcm` from `@noble/ciphers` and the platform's
 * WebCrypto (`crypto.subtle`, native AES-GCM in Deno, Bun and Node). Both produce the same bytes
 * (NIST SP 800-38D, 96-bit nonce, 128-bit tag); the tests hold them to known-answer vectors and to
 * each other on random inputs.
 *
 * Which one runs is a matter of speed, measured in bench/encryption.ts: a WebCrypto call costs a
 * roughly fixed 15–50 µs (an asynchronous operation handed to another thread; it varies with load),
 * noble's pure-JavaScript AES costs per byte plus a key setup per call. noble wins below about
 * 1 KiB, WebCrypto above (2–11× at 10 KiB), so a {@link DataKey} seals and opens short values with
 * noble and long ones with a non-extractable WebCrypto key made on first need. Data keys are
 * wrapped (32 bytes) with noble.
 *
 * @module
 */
import { gcm } from "@noble/ciphers/aes.js";
import { DecryptionError, EncryptionError } from "./errors.ts";

/** Key size of AES-256. */
export const KEY_SIZE = 32;
/** Size of the random GCM nonce: 96 bits. */
export const NONCE_SIZE = 12;
/** Size of the GCM authentication tag: 128 bits. */
export const TAG_SIZE = 16;
/**
 * Values of at least this many bytes go through WebCrypto, shorter ones through noble (the
 * crossover measured on Deno 2.9 and Bun 1.4 lies between 768 B and 1 KiB).
 */
export const WEB_CRYPTO_MIN_BYTES = 1024;

/** What the WebCrypto typings accept: bytes on a plain (not shared) ArrayBuffer. */
type Bytes = Uint8Array<ArrayBuffer>;

/** The platform's WebCrypto, or null where it is missing (then noble does everything). */
let subtle: SubtleCrypto | null = (() => {
  const candidate = (globalThis as { crypto?: { subtle?: SubtleCrypto } }).crypto?.subtle;
  return candidate !== undefined && typeof candidate.encrypt === "function" &&
      typeof candidate.importKey === "function"
    ? candidate
    : null;
})();

/** Whether long values go through WebCrypto here. */
export function webCryptoAvailable(): boolean {
  return subtle !== null;
}

/** `length` bytes from the platform CSPRNG (`crypto.getRandomValues`). */
export function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

function nonEmpty(data: Uint8Array | undefined): Uint8Array | undefined {
  return data === undefined || data.length === 0 ? undefined : data;
}

/** `ciphertext ‖ tag` of `plaintext` under `key` and `nonce`, with noble's `gcm`. */
export function sealWithNoble(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  associatedData?: Uint8Array,
): Uint8Array {
  try {
    return gcm(key, nonce, nonEmpty(associatedData)).encrypt(plaintext);
  } catch (error) {
    throw new EncryptionError("AES-GCM encryption failed", undefined, { cause: error });
  }
}

/** The plaintext of `ciphertext ‖ tag`; a {@link DecryptionError} when it does not authenticate. */
export function openWithNoble(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  associatedData?: Uint8Array,
): Uint8Array {
  if (sealed.length < TAG_SIZE) throw new DecryptionError("ciphertext too short");
  try {
    return gcm(key, nonce, nonEmpty(associatedData)).decrypt(sealed);
  } catch (error) {
    throw new DecryptionError("authentication failed", undefined, { cause: error });
  }
}

/** A non-extractable WebCrypto AES-GCM key from `key`'s bytes (copied before this returns). */
export function importWebCryptoKey(key: Uint8Array): Promise<CryptoKey> {
  if (subtle === null) return Promise.reject(new EncryptionError("WebCrypto is not available"));
  return subtle.importKey("raw", key as Bytes, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

function gcmParams(nonce: Uint8Array, associatedData: Uint8Array | undefined): AesGcmParams {
  const params: AesGcmParams = { name: "AES-GCM", iv: nonce as Bytes, tagLength: TAG_SIZE * 8 };
  if (associatedData !== undefined && associatedData.length > 0) {
    params.additionalData = associatedData as Bytes;
  }
  return params;
}

/** `ciphertext ‖ tag` of `plaintext` under a WebCrypto key; the same bytes as {@link sealWithNoble}. */
export async function sealWithWebCrypto(
  key: CryptoKey,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  associatedData?: Uint8Array,
): Promise<Uint8Array> {
  try {
    return new Uint8Array(
      await subtle!.encrypt(gcmParams(nonce, associatedData), key, plaintext as Bytes),
    );
  } catch (error) {
    throw new EncryptionError("AES-GCM encryption failed", undefined, { cause: error });
  }
}

/** The plaintext of `ciphertext ‖ tag` under a WebCrypto key; {@link DecryptionError} on failure. */
export async function openWithWebCrypto(
  key: CryptoKey,
  nonce: Uint8Array,
  sealed: Uint8Array,
  associatedData?: Uint8Array,
): Promise<Uint8Array> {
  if (sealed.length < TAG_SIZE) throw new DecryptionError("ciphertext too short");
  try {
    return new Uint8Array(
      await subtle!.decrypt(gcmParams(nonce, associatedData), key, sealed as Bytes),
    );
  } catch (error) {
    throw new DecryptionError("authentication failed", undefined, { cause: error });
  }
}

/**
 * Encrypts under `key` with a fresh random nonce and returns `nonce (12) ‖ ciphertext ‖ tag (16)`,
 * the Go library's layout (a wrapped 32-byte key is 60 bytes). Synchronous, with noble: for data
 * keys and other short values.
 */
export function encryptWithKey(
  key: Uint8Array,
  plaintext: Uint8Array,
  associatedData?: Uint8Array,
): Uint8Array {
  const nonce = randomBytes(NONCE_SIZE);
  const sealed = sealWithNoble(key, nonce, plaintext, associatedData);
  const out = new Uint8Array(NONCE_SIZE + sealed.length);
  out.set(nonce, 0);
  out.set(sealed, NONCE_SIZE);
  return out;
}

/** Opens the output of {@link encryptWithKey}; {@link DecryptionError} when it does not authenticate. */
export function decryptWithKey(
  key: Uint8Array,
  data: Uint8Array,
  associatedData?: Uint8Array,
): Uint8Array {
  if (data.length < NONCE_SIZE + TAG_SIZE) throw new DecryptionError("ciphertext too short");
  return openWithNoble(
    key,
    data.subarray(0, NONCE_SIZE),
    data.subarray(NONCE_SIZE),
    associatedData,
  );
}

/**
 * One data key in use. It keeps the key's bytes for noble (short values) and, made on the first
 * long value, a non-extractable WebCrypto key (which no JavaScript can read back). Inputs are read
 * before `seal`/`open` return, whichever path runs, so callers may wipe or reuse their buffers at
 * once. {@link DataKey.destroy} zeroes the bytes and drops the WebCrypto key; an operation already
 * started finishes.
 */
export class DataKey {
  #bytes: Uint8Array | null;
  #web: Promise<CryptoKey> | null = null;

  /** Takes ownership of `bytes` (32): they are zeroed by {@link DataKey.destroy}. */
  constructor(bytes: Uint8Array) {
    if (bytes.length !== KEY_SIZE) throw new EncryptionError("a data key must be 32 bytes");
    this.#bytes = bytes;
  }

  /** Whether {@link DataKey.destroy} has run. */
  get destroyed(): boolean {
    return this.#bytes === null;
  }

  #live(): Uint8Array {
    if (this.#bytes === null) throw new EncryptionError("this data key was released");
    return this.#bytes;
  }

  /** The WebCrypto key, imported on first use (the bytes are copied synchronously). */
  #webKey(bytes: Uint8Array): Promise<CryptoKey> {
    return this.#web ??= importWebCryptoKey(bytes);
  }

  /**
   * `ciphertext ‖ tag` of `plaintext` under `nonce`: synchronously with noble for short values (or
   * without WebCrypto), as a promise from WebCrypto for long ones.
   */
  seal(
    nonce: Uint8Array,
    plaintext: Uint8Array,
    associatedData?: Uint8Array,
  ): Uint8Array | Promise<Uint8Array> {
    const bytes = this.#live();
    if (plaintext.length < WEB_CRYPTO_MIN_BYTES || subtle === null) {
      return sealWithNoble(bytes, nonce, plaintext, associatedData);
    }
    // Copies: the caller may wipe its buffers as soon as this returns.
    const input = plaintext.slice();
    const iv = nonce.slice();
    const aad = associatedData?.slice();
    return this.#webKey(bytes).then(
      (webKey) => sealWithWebCrypto(webKey, iv, input, aad),
      // WebCrypto refused the key (never seen on Deno, Bun or Node): noble does it instead.
      () => sealWithNoble(this.#live(), iv, input, aad),
    ).finally(() => input.fill(0));
  }

  /**
   * The plaintext of `ciphertext ‖ tag` made with `nonce`: synchronously with noble for short
   * values (or without WebCrypto), as a promise from WebCrypto for long ones.
   */
  open(
    nonce: Uint8Array,
    sealed: Uint8Array,
    associatedData?: Uint8Array,
  ): Uint8Array | Promise<Uint8Array> {
    const bytes = this.#live();
    if (sealed.length < WEB_CRYPTO_MIN_BYTES + TAG_SIZE || subtle === null) {
      return openWithNoble(bytes, nonce, sealed, associatedData);
    }
    const input = sealed.slice();
    const iv = nonce.slice();
    const aad = associatedData?.slice();
    return this.#webKey(bytes).then(
      (webKey) => openWithWebCrypto(webKey, iv, input, aad),
      () => openWithNoble(this.#live(), iv, input, aad),
    );
  }

  /** Zeroes the key's bytes and drops its WebCrypto key; any later use throws. */
  destroy(): void {
    this.#bytes?.fill(0);
    this.#bytes = null;
    this.#web = null;
  }
}

/** For tests: run `work` as if the platform had no WebCrypto (noble only), then restore it. */
export async function withoutWebCrypto<T>(work: () => Promise<T>): Promise<T> {
  const saved = subtle;
  subtle = null;
  try {
    return await work();
  } finally {
    subtle = saved;
  }
}
