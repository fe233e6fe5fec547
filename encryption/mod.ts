/**
 * Envelope encryption for event-sourced systems on PostgreSQL: personal data and secrets encrypted
 * under data keys (DEKs), one set per scope id (a user, a tenant) within a scope (`user-pii`),
 * which are wrapped under system keys (KEKs) from a keyring. Destroying a scope id's keys
 * (crypto-shredding) makes all of its data unreadable, even in an append-only event log. Also:
 * HMAC-SHA-256 blind indexes, an optional DEK cache, and rewrap of every DEK from one system key to
 * another.
 *
 * - AES-256-GCM with a fresh random 96-bit nonce per encryption: `@noble/ciphers` for short values
 *   and data keys, the platform's WebCrypto for values of 1 KiB and more.
 * - Values are self-describing (`es2:<keyVersion>:<base64url>`), and their associated data binds
 *   scope, scope id and key version: a value copied to another scope id fails to decrypt.
 * - Values written by the Go library (bare base64) stay readable; the key table has Go's columns
 *   (to share the Go services' table, name it: `GO_KEYS_TABLE`).
 * - Typed errors: `KeyNotFoundError` (never created), `KeyDestroyedError` (shredded),
 *   `SystemKeyNotFoundError` (KEK missing from the keyring), `DecryptionError` (tampered or
 *   misplaced), `KeyExistsError`, `InvalidInputError`, `InvalidKeySizeError`, `KeyringError`.
 * - Every operation takes the caller's postgres.js transaction, so "append `UserDeleted` + destroy
 *   the key" commits or rolls back as one.
 *
 * Limits (JavaScript cannot guarantee that key material or plaintext leaves memory, and deleted
 * keys live on in backups and WAL) are written down in docs/encryption.md. Types shared with the
 * store (`SqlExecutor`, `Telemetry`) are exported by `@eventsalsa/eventsalsa/store`.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import {
 *   createEncryption,
 *   KeyDestroyedError,
 *   keyringFromMap,
 *   migrate,
 *   PostgresKeyStore,
 * } from "@eventsalsa/eventsalsa/encryption";
 *
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrate(sql); // creates encryption_keys and encryption_keys_tombstones
 * const encryption = createEncryption({
 *   // In production: keyringFromFiles / keyringFromEnv with `openssl rand -base64 32` keys.
 *   keyring: keyringFromMap({ "kek-1": crypto.getRandomValues(new Uint8Array(32)) }, "kek-1"),
 *   store: new PostgresKeyStore(),
 * });
 * const pii = encryption.pii("user-pii");
 *
 * // Registration: create the user's key and encrypt in the same transaction as the event.
 * const email = await sql.begin(async (tx) => {
 *   await encryption.keyManager.createKey(tx, "user-pii", "u-1");
 *   return await pii.encrypt(tx, "u-1", "alice@example.com");
 * });
 * console.log(await pii.decrypt(sql, "u-1", email)); // alice@example.com
 *
 * // Deletion: append `UserDeleted` and destroy the key as one unit of work.
 * await sql.begin((tx) => encryption.keyManager.destroyKeys(tx, "user-pii", "u-1"));
 * await pii.decrypt(sql, "u-1", email).catch((error) => {
 *   console.log(error instanceof KeyDestroyedError); // true
 * });
 * await sql.end();
 * ```
 *
 * @module
 */
export {
  CipherOperationError,
  DecryptionError,
  EncryptionError,
  InvalidInputError,
  InvalidKeySizeError,
  KeyDestroyedError,
  type KeyErrorContext,
  KeyExistsError,
  KeyNotFoundError,
  KeyringError,
  SystemKeyNotFoundError,
} from "./errors.ts";
export {
  type EnvKeyringOptions,
  type FileKeyringOptions,
  type Keyring,
  keyringFromEnv,
  keyringFromFiles,
  keyringFromMap,
  SYSTEM_KEY_SIZE,
  type SystemKeyMaterial,
} from "./keyring.ts";
export type {
  CreateKeyResult,
  KeyLookup,
  KeyStore,
  KeyTombstone,
  NewKey,
  RewrapBatch,
  RotateKeyResult,
  StoredKey,
} from "./key_store.ts";
export { KeyManager, type KeyManagerOptions } from "./key_manager.ts";
export {
  type DecryptOptions,
  type EncryptOptions,
  Envelope,
  type EnvelopeOptions,
  type VersionedCiphertext,
} from "./envelope.ts";
export { type EnvelopeFormat, keyVersionOf } from "./envelope_format.ts";
export { isEmptyValue, PiiAdapter, type PiiAdapterOptions, REDACTED } from "./pii.ts";
export { isEmptySecret, SecretAdapter, type SecretValue, secretValue } from "./secret.ts";
export {
  BlindIndex,
  type BlindIndexOptions,
  GoCompatibleHasher,
  MIN_BLIND_INDEX_KEY_SIZE,
  type Normalizer,
  normalizers,
} from "./blind_index.ts";
export { DekCache, type DekCacheOptions } from "./dek_cache.ts";
export {
  RewrapAbortedError,
  type RewrapFailure,
  type RewrapProgress,
  type RewrapResult,
  type RewrapSystemKeysOptions,
} from "./rewrap.ts";
export { createEncryption, type Encryption, type EncryptionOptions } from "./encryption.ts";
export {
  type EncryptionMigrationOptions,
  GO_KEYS_TABLE,
  type KeyStoreTableOptions,
  migrate,
  migrationSql,
} from "./migration.ts";
export { PostgresKeyStore, type PostgresKeyStoreOptions } from "./postgres_key_store.ts";
