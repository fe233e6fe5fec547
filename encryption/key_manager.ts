/**
 * The key manager: the lifecycle of data keys, one set of versions per (scope, scope id) (create,
 * rotate, revoke, destroy), and the rewrap of data keys from one system key to another.
 * Runtime-agnostic: it talks to a {@link KeyStore} port.
 *
 * @module
 */
import { kekOperations, newWrappedDek } from "./data_keys.ts";
import { invalidateEverywhere } from "./dek_cache.ts";
import {
  InvalidInputError,
  KeyDestroyedError,
  KeyExistsError,
  KeyNotFoundError,
  SystemKeyNotFoundError,
} from "./errors.ts";
import type { Keyring } from "./keyring.ts";
import type { KeyStore } from "./key_store.ts";
import {
  checkRewrapOptions,
  driveRewrap,
  rewrapKey,
  type RewrapResult,
  type RewrapSystemKeysOptions,
} from "./rewrap.ts";
import { checkSubject } from "./validation.ts";
import {
  checkTelemetry,
  inSpan,
  type Telemetry,
  type TelemetryTracer,
} from "../internal/telemetry.ts";
import { keySpan } from "./telemetry.ts";

/**
 * What a {@link KeyManager} is built from.
 *
 * @example
 * ```ts
 * import { KeyManager, type KeyManagerOptions, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const options: KeyManagerOptions<unknown> = {
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 * };
 * const keys = new KeyManager(options);
 * ```
 */
export interface KeyManagerOptions<Tx> {
  /** System keys; new data keys are wrapped under the active one. */
  keyring: Keyring;
  /** Where wrapped data keys live. */
  store: KeyStore<Tx>;
  /**
   * OpenTelemetry: with a `tracer`, a span per create, rotate, revoke, destroy and rewrap, naming
   * the scope, the scope id and the resulting version or count (never key material). No telemetry
   * when omitted; a `meter` is not used.
   */
  telemetry?: Telemetry;
}

/**
 * Creates, rotates, revokes and destroys data keys, one set of versions per (scope, scopeId).
 * Every method takes the caller's transaction first and never commits it; with PostgreSQL, pass
 * the pool instead and the manager opens its own transaction where it writes.
 *
 * - `createKey` is race-safe: of two concurrent calls one creates version 1 and the other throws
 *   {@link KeyExistsError}.
 * - `rotateKey` adds a version and revokes the others; concurrent rotations each add a version and
 *   exactly one stays active.
 * - `revokeKeys` retires all but the newest version from encrypting; revoked versions still decrypt.
 * - `destroyKeys` deletes every version (crypto-shredding) and leaves a tombstone, so decrypting
 *   old values throws `KeyDestroyedError` instead of `KeyNotFoundError`.
 *
 * `rotateKey`, `revokeKeys` and `destroyKeys` clear the scope id from every DEK cache of this
 * process at once (not from other processes' caches: see `DekCache`).
 *
 * @example
 * ```ts
 * import { KeyManager, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const keys = new KeyManager({
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 * });
 * await keys.createKey(null, "integration", "stripe"); // 1
 * await keys.rotateKey(null, "integration", "stripe"); // 2
 * await keys.activeKeyVersion(null, "integration", "stripe"); // 2
 * await keys.destroyKeys(null, "integration", "stripe"); // 2 versions destroyed
 * ```
 */
export class KeyManager<Tx> {
  readonly #keyring: Keyring;
  readonly #store: KeyStore<Tx>;
  readonly #tracer: TelemetryTracer | null;

  /** Builds a manager; see {@link KeyManagerOptions}. */
  constructor(options: KeyManagerOptions<Tx>) {
    if (options === null || typeof options !== "object") {
      throw new InvalidInputError("key manager options are required");
    }
    if (options.keyring === undefined || options.keyring === null) {
      throw new InvalidInputError("key manager: keyring is required");
    }
    if (options.store === undefined || options.store === null) {
      throw new InvalidInputError("key manager: store is required");
    }
    this.#keyring = options.keyring;
    this.#store = options.store;
    this.#tracer =
      checkTelemetry(options.telemetry, (message) => new InvalidInputError(message))?.tracer ??
        null;
  }

  /**
   * Creates the scope id's first data key and returns its version: 1, or one above the highest
   * version destroyed earlier. Throws {@link KeyExistsError} when the scope id has an active key.
   *
   * @example
   * ```ts
   * import { KeyExistsError, type KeyManager } from "@eventsalsa/eventsalsa/encryption";
   * declare const keys: KeyManager<unknown>;
   * try {
   *   await keys.createKey(null, "user-pii", "u-1");
   * } catch (error) {
   *   if (!(error instanceof KeyExistsError)) throw error;
   * }
   * ```
   */
  createKey(tx: Tx, scope: string, scopeId: string): Promise<number> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#createKey(tx, scope, scopeId);
    return keySpan(
      tracer,
      "create_key",
      scope,
      scopeId,
      "key_version",
      () => this.#createKey(tx, scope, scopeId),
    );
  }

  async #createKey(tx: Tx, scope: string, scopeId: string): Promise<number> {
    checkSubject(scope, scopeId);
    const wrapped = newWrappedDek(this.#keyring);
    const result = await this.#store.createKey(tx, { scope, scopeId, ...wrapped });
    if (result.status === "exists") {
      throw new KeyExistsError({ scope, scopeId, keyVersion: result.keyVersion });
    }
    return result.key.keyVersion;
  }

  /**
   * Adds a new version wrapped under the active system key, revokes the older ones (they still
   * decrypt) and returns the new version. Throws {@link KeyNotFoundError} when the scope id has no
   * key and {@link KeyDestroyedError} when its keys were destroyed.
   *
   * @example
   * ```ts
   * import type { KeyManager } from "@eventsalsa/eventsalsa/encryption";
   * declare const keys: KeyManager<unknown>;
   * const version = await keys.rotateKey(null, "integration", "stripe");
   * ```
   */
  rotateKey(tx: Tx, scope: string, scopeId: string): Promise<number> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#rotateKey(tx, scope, scopeId);
    return keySpan(
      tracer,
      "rotate_key",
      scope,
      scopeId,
      "key_version",
      () => this.#rotateKey(tx, scope, scopeId),
    );
  }

  async #rotateKey(tx: Tx, scope: string, scopeId: string): Promise<number> {
    checkSubject(scope, scopeId);
    const wrapped = newWrappedDek(this.#keyring);
    invalidateEverywhere(scope, scopeId);
    const result = await this.#store.rotateKey(tx, { scope, scopeId, ...wrapped });
    if (result.status === "destroyed") {
      throw new KeyDestroyedError({ scope, scopeId }, result.tombstone.destroyedAt);
    }
    if (result.status === "missing") throw new KeyNotFoundError({ scope, scopeId });
    return result.key.keyVersion;
  }

  /**
   * Revokes every version but the newest: they stop being used for encryption but still decrypt.
   * Returns how many versions were revoked (0 for an unknown scope id, no error).
   *
   * @example
   * ```ts
   * import type { KeyManager } from "@eventsalsa/eventsalsa/encryption";
   * declare const keys: KeyManager<unknown>;
   * await keys.revokeKeys(null, "integration", "stripe");
   * ```
   */
  revokeKeys(tx: Tx, scope: string, scopeId: string): Promise<number> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#revokeKeys(tx, scope, scopeId);
    return keySpan(
      tracer,
      "revoke_keys",
      scope,
      scopeId,
      "revoked_versions",
      () => this.#revokeKeys(tx, scope, scopeId),
    );
  }

  async #revokeKeys(tx: Tx, scope: string, scopeId: string): Promise<number> {
    checkSubject(scope, scopeId);
    invalidateEverywhere(scope, scopeId);
    return await this.#store.revokeKeys(tx, scope, scopeId);
  }

  /**
   * Crypto-shredding: deletes every version of the scope id's key and leaves a tombstone. Values
   * encrypted under them can no longer be decrypted (`KeyDestroyedError`). Returns how many versions
   * were destroyed (0 for an unknown scope id, no error). Run it in the same transaction as the event
   * that records the deletion. Copies in backups, WAL and replicas are out of its reach: see
   * docs/encryption.md.
   *
   * @example
   * ```ts
   * import type { KeyManager } from "@eventsalsa/eventsalsa/encryption";
   * import type postgres from "postgres";
   * declare const keys: KeyManager<postgres.TransactionSql>;
   * declare const sql: postgres.Sql;
   * await sql.begin(async (tx) => {
   *   // await store.append(tx, ..., [{ eventType: "UserDeleted", ... }]);
   *   await keys.destroyKeys(tx, "user-pii", "u-1");
   * });
   * ```
   */
  destroyKeys(tx: Tx, scope: string, scopeId: string): Promise<number> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#destroyKeys(tx, scope, scopeId);
    return keySpan(
      tracer,
      "destroy_keys",
      scope,
      scopeId,
      "destroyed_versions",
      () => this.#destroyKeys(tx, scope, scopeId),
    );
  }

  async #destroyKeys(tx: Tx, scope: string, scopeId: string): Promise<number> {
    checkSubject(scope, scopeId);
    invalidateEverywhere(scope, scopeId);
    try {
      return await this.#store.destroyKeys(tx, scope, scopeId);
    } finally {
      // Again after the write, so nothing cached in between survives.
      invalidateEverywhere(scope, scopeId);
    }
  }

  /**
   * The scope id's active key version. Throws {@link KeyNotFoundError} or
   * {@link KeyDestroyedError}.
   *
   * @example
   * ```ts
   * import type { KeyManager } from "@eventsalsa/eventsalsa/encryption";
   * declare const keys: KeyManager<unknown>;
   * console.log(await keys.activeKeyVersion(null, "integration", "stripe"));
   * ```
   */
  async activeKeyVersion(tx: Tx, scope: string, scopeId: string): Promise<number> {
    checkSubject(scope, scopeId);
    const lookup = await this.#store.getActiveKey(tx, scope, scopeId);
    if (lookup.status === "found") return lookup.key.keyVersion;
    if (lookup.status === "destroyed") {
      throw new KeyDestroyedError({ scope, scopeId }, lookup.tombstone.destroyedAt);
    }
    throw new KeyNotFoundError({ scope, scopeId });
  }

  /**
   * Moves every data key wrapped under system key `from` to system key `to`, in batches, without
   * changing the data keys (no application ciphertext changes). Both keys must be in the keyring.
   * With PostgreSQL, pass the pool: each batch is its own transaction (`FOR UPDATE SKIP LOCKED`), so
   * an interrupted run keeps its finished batches and a rerun picks up the rest; given a transaction,
   * all batches run inside it. A row that cannot be rewrapped is reported (`onRowError`,
   * `failures`) and left as it is; the run goes on. `dryRun` checks every row without writing.
   *
   * Operator sequence: load both keys, make `to` active, dry run, rewrap until `remainingRows` is 0
   * and `failedRows` is 0, and only then drop `from` from the keyring.
   *
   * @example
   * ```ts
   * import type { KeyManager } from "@eventsalsa/eventsalsa/encryption";
   * import type postgres from "postgres";
   * declare const keys: KeyManager<postgres.Sql>;
   * declare const sql: postgres.Sql;
   * const result = await keys.rewrapSystemKeys(sql, {
   *   from: "kek-2024",
   *   to: "kek-2025",
   *   batchSize: 500,
   *   onProgress: (p) => console.log(`${p.rewrappedRows} rewrapped`),
   * });
   * console.log(result.remainingRows, result.failedRows);
   * ```
   */
  rewrapSystemKeys(tx: Tx, options: RewrapSystemKeysOptions): Promise<RewrapResult> {
    const tracer = this.#tracer;
    if (tracer === null) return this.#rewrapSystemKeys(tx, options);
    return inSpan(tracer, "eventsalsa.encryption.rewrap", {}, async (span) => {
      const result = await this.#rewrapSystemKeys(tx, options);
      // System key ids are names, never key material.
      span.setAttribute("eventsalsa.encryption.from_system_key", options.from);
      span.setAttribute("eventsalsa.encryption.to_system_key", options.to);
      span.setAttribute("eventsalsa.encryption.dry_run", result.dryRun);
      span.setAttribute("eventsalsa.encryption.rewrapped_rows", result.rewrappedRows);
      span.setAttribute("eventsalsa.encryption.failed_rows", result.failedRows);
      span.setAttribute("eventsalsa.encryption.remaining_rows", result.remainingRows);
      return result;
    });
  }

  async #rewrapSystemKeys(tx: Tx, options: RewrapSystemKeysOptions): Promise<RewrapResult> {
    const checked = checkRewrapOptions(options);
    for (const id of [checked.from, checked.to]) {
      if (!this.#keyring.has(id)) throw new SystemKeyNotFoundError(id);
    }
    const fromKek = kekOperations(this.#keyring, checked.from);
    const toKek = kekOperations(this.#keyring, checked.to);
    const store = this.#store;
    try {
      return await driveRewrap({
        fromSystemKeyId: checked.from,
        toSystemKeyId: checked.to,
        batchSize: checked.batchSize,
        dryRun: checked.dryRun,
        rewrapRow: (row) => rewrapKey(fromKek, toKek, row),
        onProgress: options.onProgress,
        onRowError: options.onRowError,
      }, {
        runBatch: (after, limit, rewrap) =>
          store.rewrapBatch(
            tx,
            { fromSystemKeyId: checked.from, after, limit, dryRun: checked.dryRun },
            rewrap,
          ),
        countRemaining: () => store.countKeys(tx, checked.from),
      });
    } finally {
      fromKek.release();
      toKek.release();
    }
  }
}
