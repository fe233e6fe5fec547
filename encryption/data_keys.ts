/**
 * Making and opening data keys (DEKs): a fresh random key wrapped under the active system key, and
 * a stored key unwrapped under the system key its row names. Wrapping is AES-256-GCM without
 * associated data, `nonce ‖ ciphertext ‖ tag` (60 bytes), as the Go library writes it. Every
 * temporary copy of key material is zeroed before returning.
 *
 * @module
 */
import { decryptWithKey, encryptWithKey, KEY_SIZE, randomBytes } from "./aes_gcm.ts";
import { zeroBytes } from "./encoding.ts";
import { DecryptionError, SystemKeyNotFoundError } from "./errors.ts";
import type { Keyring } from "./keyring.ts";
import type { StoredKey } from "./key_store.ts";

/** A new data key, wrapped: what the key store keeps. */
export interface WrappedDek {
  readonly encryptedDek: Uint8Array;
  readonly systemKeyId: string;
}

/** Encryption and decryption under one system key; what the key-wrapping paths use. */
export interface KeyOperations {
  encrypt(plaintext: Uint8Array): Uint8Array;
  decrypt(ciphertext: Uint8Array): Uint8Array;
}

/** The system key `keyId` (a copy from the keyring), bound for wrapping; `release` zeroes the copy. */
export function kekOperations(
  keyring: Keyring,
  keyId: string,
): KeyOperations & { release(): void } {
  const kek = keyring.key(keyId);
  return {
    encrypt: (plaintext) => encryptWithKey(kek, plaintext),
    decrypt: (ciphertext) => decryptWithKey(kek, ciphertext),
    release: () => zeroBytes(kek),
  };
}

/**
 * Generates a random 32-byte data key, wraps it under the keyring's active system key, and zeroes
 * the plaintext key and the system key copy.
 */
export function newWrappedDek(keyring: Keyring): WrappedDek {
  const keyId = keyring.activeKeyId;
  const kek = kekOperations(keyring, keyId);
  const dek = randomBytes(KEY_SIZE);
  try {
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
export function unwrapDek(keyring: Keyring, key: StoredKey): Uint8Array {
  const context = { scope: key.scope, scopeId: key.scopeId, keyVersion: key.keyVersion };
  if (!keyring.has(key.systemKeyId)) throw new SystemKeyNotFoundError(key.systemKeyId, context);
  const kek = kekOperations(keyring, key.systemKeyId);
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
  if (dek.length !== KEY_SIZE) {
    zeroBytes(dek);
    throw new DecryptionError("unwrapped data key has the wrong size", context);
  }
  return dek;
}
