/**
 * The cipher port and its default, AES-256-GCM from `@noble/ciphers`. One cipher serves both layers
 * of the envelope: wrapping data keys under system keys, and encrypting values under data keys.
 *
 * @module
 */
import { gcm } from "@noble/ciphers/aes.js";
import { randomBytes as nobleRandomBytes } from "@noble/ciphers/utils.js";
import { DecryptionError, EncryptionError, InvalidKeySizeError } from "./errors.ts";
import { PreparedAesGcmKey } from "./prepared_key.ts";

/**
 * An authenticated cipher. Implementations must be stateless (safe to share) and synchronous, and
 * must throw {@link InvalidKeySizeError} for a key of the wrong size, {@link DecryptionError} for any
 * ciphertext that does not authenticate (wrong key, tampering, truncation, other associated data),
 * and {@link EncryptionError} when encryption itself fails.
 *
 * @example
 * ```ts
 * import { AesGcmCipher, type Cipher } from "@eventsalsa/eventsalsa/encryption";
 * const cipher: Cipher = new AesGcmCipher();
 * const key = crypto.getRandomValues(new Uint8Array(cipher.keySize));
 * const sealed = cipher.encrypt(key, new TextEncoder().encode("hello"));
 * console.log(new TextDecoder().decode(cipher.decrypt(key, sealed))); // hello
 * ```
 */
export interface Cipher {
  /** Key length in bytes (32 for AES-256-GCM). */
  readonly keySize: number;
  /** Encrypts `plaintext`; the output carries whatever the cipher needs to decrypt (nonce, tag). */
  encrypt(key: Uint8Array, plaintext: Uint8Array, associatedData?: Uint8Array): Uint8Array;
  /** Decrypts and authenticates output of {@link Cipher.encrypt} under the same associated data. */
  decrypt(key: Uint8Array, ciphertext: Uint8Array, associatedData?: Uint8Array): Uint8Array;
}

/**
 * Size of the random GCM nonce: 96 bits.
 *
 * @example
 * ```ts
 * import { GCM_NONCE_SIZE, GCM_TAG_SIZE } from "@eventsalsa/eventsalsa/encryption";
 * const overhead = GCM_NONCE_SIZE + GCM_TAG_SIZE; // 28 bytes on top of each plaintext
 * ```
 */
export const GCM_NONCE_SIZE = 12;
/**
 * Size of the GCM authentication tag: 128 bits.
 *
 * @example
 * ```ts
 * import { GCM_TAG_SIZE } from "@eventsalsa/eventsalsa/encryption";
 * const sealedLength = (plaintextLength: number) => plaintextLength + GCM_TAG_SIZE;
 * ```
 */
export const GCM_TAG_SIZE = 16;
/**
 * Key size of AES-256.
 *
 * @example
 * ```ts
 * import { AES_256_KEY_SIZE } from "@eventsalsa/eventsalsa/encryption";
 * const key = crypto.getRandomValues(new Uint8Array(AES_256_KEY_SIZE));
 * ```
 */
export const AES_256_KEY_SIZE = 32;

/**
 * Options for {@link AesGcmCipher}.
 *
 * @example
 * ```ts
 * import { AesGcmCipher, type AesGcmCipherOptions } from "@eventsalsa/eventsalsa/encryption";
 * // A fixed nonce source, for known-answer tests only: never reuse nonces in production.
 * const options: AesGcmCipherOptions = { randomBytes: (n) => new Uint8Array(n) };
 * const cipher = new AesGcmCipher(options);
 * ```
 */
export interface AesGcmCipherOptions {
  /**
   * Source of nonces; the platform CSPRNG (`crypto.getRandomValues`) when omitted. Replace it only
   * in tests that need fixed vectors: a repeated nonce under one key breaks GCM completely.
   */
  randomBytes?: (length: number) => Uint8Array;
}

/**
 * AES-256-GCM with a fresh random 96-bit nonce per call. Output layout, identical to the Go
 * library's: `nonce (12) ‖ ciphertext ‖ tag (16)`, so a 32-byte wrapped key is 60 bytes and any
 * output is at least 28 bytes.
 *
 * Timing: noble's AES is pure JavaScript with table lookups; see docs/encryption.md for what that
 * means against cache-timing attackers on the same host.
 *
 * @example
 * ```ts
 * import { AesGcmCipher } from "@eventsalsa/eventsalsa/encryption";
 * const cipher = new AesGcmCipher();
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const aad = new TextEncoder().encode("user-pii/u-1");
 * const sealed = cipher.encrypt(key, new TextEncoder().encode("alice@example.com"), aad);
 * cipher.decrypt(key, sealed, aad); // throws DecryptionError with any other aad
 * ```
 */
export class AesGcmCipher implements Cipher {
  /** Always 32. */
  readonly keySize: number = AES_256_KEY_SIZE;
  readonly #random: (length: number) => Uint8Array;

  /** Creates the cipher; see {@link AesGcmCipherOptions}. */
  constructor(options: AesGcmCipherOptions = {}) {
    this.#random = options.randomBytes ?? nobleRandomBytes;
  }

  #checkKey(key: Uint8Array | PreparedAesGcmKey): void {
    if (key instanceof PreparedAesGcmKey) return;
    if (!(key instanceof Uint8Array) || key.length !== AES_256_KEY_SIZE) {
      throw new InvalidKeySizeError(
        "AES-256-GCM key",
        key instanceof Uint8Array ? key.length : 0,
        "exactly 32",
      );
    }
  }

  /**
   * Encrypts under `key` (32 bytes, or a {@link PreparedAesGcmKey} to skip the key setup) with a
   * fresh nonce; `associatedData` is authenticated, not encrypted.
   */
  encrypt(
    key: Uint8Array | PreparedAesGcmKey,
    plaintext: Uint8Array,
    associatedData?: Uint8Array,
  ): Uint8Array {
    const { nonce, sealed } = this.encryptDetached(key, plaintext, associatedData);
    const out = new Uint8Array(GCM_NONCE_SIZE + sealed.length);
    out.set(nonce, 0);
    out.set(sealed, GCM_NONCE_SIZE);
    return out;
  }

  /**
   * Like {@link AesGcmCipher.encrypt}, but returns the nonce and `ciphertext ‖ tag` apart, saving
   * a copy for callers that serialise them separately. `nonce ‖ sealed` is what `encrypt` returns.
   *
   * @example
   * ```ts
   * import { AesGcmCipher } from "@eventsalsa/eventsalsa/encryption";
   * const cipher = new AesGcmCipher();
   * const key = crypto.getRandomValues(new Uint8Array(32));
   * const { nonce, sealed } = cipher.encryptDetached(key, new TextEncoder().encode("hi"));
   * console.log(nonce.length, sealed.length); // 12 18
   * ```
   */
  encryptDetached(
    key: Uint8Array | PreparedAesGcmKey,
    plaintext: Uint8Array,
    associatedData?: Uint8Array,
  ): { nonce: Uint8Array; sealed: Uint8Array } {
    this.#checkKey(key);
    let nonce: Uint8Array;
    try {
      nonce = this.#random(GCM_NONCE_SIZE);
    } catch (error) {
      throw new EncryptionError("random source failed", undefined, { cause: error });
    }
    if (!(nonce instanceof Uint8Array) || nonce.length !== GCM_NONCE_SIZE) {
      throw new EncryptionError("random source returned a nonce of the wrong size");
    }
    try {
      return {
        nonce,
        sealed: key instanceof PreparedAesGcmKey
          ? key.seal(nonce, plaintext, associatedData)
          : gcm(key, nonce, emptyToUndefined(associatedData)).encrypt(plaintext),
      };
    } catch (error) {
      if (error instanceof EncryptionError) throw error;
      throw new EncryptionError("AES-GCM encryption failed", undefined, { cause: error });
    }
  }

  /**
   * Decrypts `nonce ‖ ciphertext ‖ tag` under `key` (bytes or a {@link PreparedAesGcmKey}); any
   * failure to authenticate is a {@link DecryptionError}.
   */
  decrypt(
    key: Uint8Array | PreparedAesGcmKey,
    ciphertext: Uint8Array,
    associatedData?: Uint8Array,
  ): Uint8Array {
    this.#checkKey(key);
    if (ciphertext.length < GCM_NONCE_SIZE + GCM_TAG_SIZE) {
      throw new DecryptionError("ciphertext too short");
    }
    const nonce = ciphertext.subarray(0, GCM_NONCE_SIZE);
    const sealed = ciphertext.subarray(GCM_NONCE_SIZE);
    if (key instanceof PreparedAesGcmKey) return key.open(nonce, sealed, associatedData);
    try {
      return gcm(key, nonce, emptyToUndefined(associatedData)).decrypt(sealed);
    } catch (error) {
      throw new DecryptionError("authentication failed", undefined, { cause: error });
    }
  }
}

function emptyToUndefined(data: Uint8Array | undefined): Uint8Array | undefined {
  return data === undefined || data.length === 0 ? undefined : data;
}

/** `cipher` when it is exactly {@link AesGcmCipher} (a subclass may change the format), else null. */
export function plainAesGcm(cipher: Cipher): AesGcmCipher | null {
  return cipher instanceof AesGcmCipher && cipher.constructor === AesGcmCipher ? cipher : null;
}

/** Encryption and decryption under one key; what the key-wrapping paths use. */
export interface KeyOperations {
  encrypt(plaintext: Uint8Array, associatedData?: Uint8Array): Uint8Array;
  decrypt(ciphertext: Uint8Array, associatedData?: Uint8Array): Uint8Array;
}

/**
 * Binds `key` to `cipher`; with our own AES-GCM, through a prepared key (the setup is paid once, not
 * per call). `release` wipes what the binding made (a prepared key, a copy); never `key` itself.
 */
export function bindKey(
  cipher: Cipher,
  key: Uint8Array | PreparedAesGcmKey,
): KeyOperations & { release(): void } {
  const aes = plainAesGcm(cipher);
  if (aes !== null) {
    const prepared = key instanceof PreparedAesGcmKey ? key : new PreparedAesGcmKey(key);
    return {
      encrypt: (plaintext, associatedData) => aes.encrypt(prepared, plaintext, associatedData),
      decrypt: (ciphertext, associatedData) => aes.decrypt(prepared, ciphertext, associatedData),
      release: () => {
        if (prepared !== key) prepared.destroy();
      },
    };
  }
  if (key instanceof PreparedAesGcmKey) {
    throw new EncryptionError("a prepared AES-GCM key needs AesGcmCipher");
  }
  return {
    encrypt: (plaintext, associatedData) => cipher.encrypt(key, plaintext, associatedData),
    decrypt: (ciphertext, associatedData) => cipher.decrypt(key, ciphertext, associatedData),
    release: () => {},
  };
}
