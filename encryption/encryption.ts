/**
 * `createEncryption`: one call that wires a keyring, a key store and an optional DEK cache into a
 * key manager, an envelope and the adapters, all sharing the same parts.
 *
 * @module
 */
import { DekCache, type DekCacheOptions } from "./dek_cache.ts";
import { Envelope } from "./envelope.ts";
import type { EnvelopeFormat } from "./envelope_format.ts";
import { InvalidInputError } from "./errors.ts";
import { KeyManager } from "./key_manager.ts";
import type { Keyring } from "./keyring.ts";
import type { KeyStore } from "./key_store.ts";
import { PiiAdapter, type PiiAdapterOptions } from "./pii.ts";
import { SecretAdapter } from "./secret.ts";
import type { Telemetry } from "../internal/telemetry.ts";

/**
 * Options of {@link createEncryption}.
 *
 * @example
 * ```ts
 * import { type EncryptionOptions, keyringFromMap, PostgresKeyStore } from "@eventsalsa/eventsalsa/encryption";
 * import type { SqlExecutor } from "@eventsalsa/eventsalsa/store";
 * const options: EncryptionOptions<SqlExecutor> = {
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new PostgresKeyStore(),
 *   cache: { maxEntries: 10_000, ttlMs: 30_000 },
 * };
 * ```
 */
export interface EncryptionOptions<Tx> {
  /** System keys. */
  keyring: Keyring;
  /** Where wrapped data keys live. */
  store: KeyStore<Tx>;
  /**
   * The DEK cache: off when omitted or `false` (every operation reads the store, so shredding by
   * another process takes effect at once); `true` for the defaults; options or an instance
   * otherwise. See `DekCache` for its cross-process limits.
   */
  cache?: boolean | DekCacheOptions | DekCache;
  /** Format of new values: `"es2"` (default) or `"go"`; see `EnvelopeOptions.writeFormat`. */
  writeFormat?: EnvelopeFormat;
  /**
   * OpenTelemetry `{ tracer }`: spans for key operations (create, rotate, revoke, destroy,
   * rewrap) and for encryptions and decryptions that fetch their key from the store. See
   * `KeyManagerOptions.telemetry` and `EnvelopeOptions.telemetry`. No telemetry when omitted.
   */
  telemetry?: Telemetry;
}

/**
 * The wired-up component: key manager, envelope and adapters sharing one keyring, store and cache.
 * Adapters are made per scope: `pii(scope)` and `secrets(scope)`.
 *
 * @example
 * ```ts
 * import type { Encryption } from "@eventsalsa/eventsalsa/encryption";
 * async function register(encryption: Encryption<unknown>, userId: string, email: string): Promise<string> {
 *   await encryption.keyManager.createKey(null, "user-pii", userId);
 *   return await encryption.pii("user-pii").encrypt(null, userId, email);
 * }
 * ```
 */
export interface Encryption<Tx> {
  /** Key lifecycle and rewrap. */
  readonly keyManager: KeyManager<Tx>;
  /** Value encryption. */
  readonly envelope: Envelope<Tx>;
  /** The shared DEK cache (size, invalidate, clear; no access to keys), or `null` when off. */
  readonly cache: DekCache | null;
  /** A PII adapter for one scope: personal data, one key per scope id, shredded at once. */
  pii<ID = string>(scope: string, options?: PiiAdapterOptions): PiiAdapter<Tx, ID>;
  /** A secret adapter for one scope: secrets under rotating keys. */
  secrets<ID = string>(scope: string): SecretAdapter<Tx, ID>;
}

/**
 * Builds the encryption component. It is usable without the event store and the worker; the
 * key store decides where keys live (`PostgresKeyStore`, or `InMemoryKeyStore` from `testing`).
 *
 * @example
 * ```ts
 * import { createEncryption, keyringFromEnv, PostgresKeyStore } from "@eventsalsa/eventsalsa/encryption";
 * import postgres from "postgres";
 * import process from "node:process";
 * const sql = postgres(process.env.DATABASE_URL!);
 * const encryption = createEncryption({
 *   keyring: keyringFromEnv({ variables: { k1: "EVENTSALSA_KEK_1" }, activeKeyId: "k1" }),
 *   store: new PostgresKeyStore(),
 * });
 * const pii = encryption.pii("user-pii");
 * const email = await sql.begin(async (tx) => {
 *   await encryption.keyManager.createKey(tx, "user-pii", "u-1");
 *   return await pii.encrypt(tx, "u-1", "alice@example.com");
 * });
 * ```
 */
export function createEncryption<Tx>(options: EncryptionOptions<Tx>): Encryption<Tx> {
  if (options === null || typeof options !== "object") {
    throw new InvalidInputError("encryption options are required");
  }
  const setting = options.cache;
  let cache: DekCache | null;
  if (setting === undefined || setting === false) cache = null;
  else if (setting === true) cache = new DekCache();
  else if (setting instanceof DekCache) cache = setting;
  else if (typeof setting === "object" && setting !== null) cache = new DekCache(setting);
  else throw new InvalidInputError("cache must be a boolean, DekCacheOptions or a DekCache");
  const keyManager = new KeyManager({
    keyring: options.keyring,
    store: options.store,
    telemetry: options.telemetry,
  });
  const envelope = new Envelope({
    keyring: options.keyring,
    store: options.store,
    cache,
    writeFormat: options.writeFormat,
    telemetry: options.telemetry,
  });
  return {
    keyManager,
    envelope,
    cache,
    pii: <ID = string>(scope: string, piiOptions?: PiiAdapterOptions): PiiAdapter<Tx, ID> =>
      new PiiAdapter<Tx, ID>(envelope, scope, piiOptions),
    secrets: <ID = string>(scope: string): SecretAdapter<Tx, ID> =>
      new SecretAdapter<Tx, ID>(envelope, scope),
  };
}
