/**
 * Making and opening data keys (DEKs): a fresh random key wrapped under the active system key, and
 * a stored key unwrapped under the system key its row names. Every temporary copy of key material
 * is zeroed before returning.
 *
 * @module
 */
import { randomBytes } from "@noble/ciphers/utils.js";
import { bindKey, type Cipher, type KeyOperations, plainAesGcm } from "./cipher.ts";
import { zeroBytes } from "./encoding.ts";
import {
  DecryptionError,
  EncryptionError,
  type KeyErrorContext,
  SystemKeyNotFoundError,
} from "./errors.ts";
import type { Keyring } from "./keyring.ts";
import type { StoredKey } from "./key_store.ts";

/** A new data key, wrapped: what the key store keeps. */
export interface WrappedDek {
  readonly encryptedDek: Uint8Array;
  readonly systemKeyId: string;
}

/**
 * Generates a random data key of the cipher's key size, wraps it under the keyring's active system
 * key, and zeroes the plaintext key and the system key copy.
 */
export function newWrappedDek(
  keyring: Keyring,
  cipher: Cipher,
  context: KeyErrorContext,
  random: (length: number) => Uint8Array = randomBytes,
): WrappedDek {
  let dek: Uint8Array | null = null;
  const keyId = keyring.activeKeyId;
  const kek = kekOperations(keyring, cipher, keyId);
  try {
    try {
      dek = random(cipher.keySize);
    } catch (error) {
      throw new EncryptionError("random source failed", context, { cause: error });
    }
    if (!(dek instanceof Uint8Array) || dek.length !== cipher.keySize) {
      throw new EncryptionError("random source returned a key of the wrong size", context);
    }
    return { encryptedDek: kek.encrypt(dek), systemKeyId: keyId };
  } finally {
    zeroBytes(dek);
    kek.release();
  }
}

/**
 * Opens a stored key under the system key its row names. The returned key belongs to the caller,
 * who must zero it. Throws {@link SystemKeyNotFoundError} when the keyring lacks that system key and
 * {@link DecryptionError} when the wrapped key does not open.
 */
export function unwrapDek(keyring: Keyring, cipher: Cipher, key: StoredKey): Uint8Array {
  const context = { scope: key.scope, scopeId: key.scopeId, keyVersion: key.keyVersion };
  if (!keyring.has(key.systemKeyId)) throw new SystemKeyNotFoundError(key.systemKeyId, context);
  const kek = kekOperations(keyring, cipher, key.systemKeyId);
  let dek: Uint8Array;
  try {
    dek = kek.decrypt(key.encryptedDek);
  } catch (error) {
    throw new DecryptionError(
      `wrapped data key does not open under system key ${JSON.stringify(key.systemKeyId)}`,
      context,
      { cause: error },
    );
  } finally {
    kek.release();
  }
  if (dek.length !== cipher.keySize) {
    zeroBytes(dek);
    throw new DecryptionError("unwrapped data key has the wrong size", context);
  }
  return dek;
}

/**
 * The system key `keyId` bound to `cipher`: the keyring's prepared key when the cipher is our own
 * AES-GCM and the keyring keeps prepared keys (nothing to wipe), else a copy of the key bytes that
 * `release` zeroes.
 */
export function kekOperations(
  keyring: Keyring,
  cipher: Cipher,
  keyId: string,
): KeyOperations & { release(): void } {
  if (plainAesGcm(cipher) !== null && keyring.preparedKey !== undefined) {
    return bindKey(cipher, keyring.preparedKey(keyId));
  }
  const copy = keyring.key(keyId);
  const bound = bindKey(cipher, copy);
  return {
    encrypt: bound.encrypt,
    decrypt: bound.decrypt,
    release: () => {
      bound.release();
      zeroBytes(copy);
    },
  };
}
