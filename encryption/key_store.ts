/**
 * The key store port: where wrapped data keys (DEKs) live. Implementations: `PostgresKeyStore`
 * (this folder) and `InMemoryKeyStore` (`@eventsalsa/eventsalsa/testing`). Every method takes the
 * caller's transaction handle first, so key changes commit or roll back with the caller's other
 * writes ("append `UserDeleted` + destroy the key" is one unit of work).
 *
 * The store only ever sees wrapped keys; wrapping, unwrapping and every rule about key material
 * live in the key manager and the envelope.
 *
 * @module
 */

/**
 * One stored data key: a version of a scope id's key, wrapped under a system key.
 *
 * @example
 * ```ts
 * import type { StoredKey } from "@eventsalsa/eventsalsa/encryption";
 * function describe(key: StoredKey): string {
 *   return `${key.scope}/${key.scopeId} v${key.keyVersion} under ${key.systemKeyId}` +
 *     (key.revokedAt === null ? " (active)" : " (revoked)");
 * }
 * ```
 */
export interface StoredKey {
  /** The kind of key and data, e.g. `"user-pii"` or `"integration-secrets"`. */
  readonly scope: string;
  /** The id within the scope, e.g. a user id. */
  readonly scopeId: string;
  /** 1-based version within the scope id. */
  readonly keyVersion: number;
  /** The data key wrapped under the system key (60 bytes with AES-256-GCM). */
  readonly encryptedDek: Uint8Array;
  /** Id of the system key that wrapped it. */
  readonly systemKeyId: string;
  /** When the version was created. */
  readonly createdAt: Date;
  /** When it was retired from encrypting (it still decrypts), or `null` while usable. */
  readonly revokedAt: Date | null;
}

/**
 * What is left of a scope id whose keys were destroyed: the fact, the time, and the highest version
 * destroyed, so later lookups say "destroyed" instead of "not found".
 *
 * @example
 * ```ts
 * import type { KeyTombstone } from "@eventsalsa/eventsalsa/encryption";
 * const tombstone: KeyTombstone = {
 *   scope: "user-pii",
 *   scopeId: "u-1",
 *   maxKeyVersion: 1,
 *   destroyedAt: new Date(),
 * };
 * ```
 */
export interface KeyTombstone {
  /** The scope. */
  readonly scope: string;
  /** The scope id. */
  readonly scopeId: string;
  /** Every version up to this one was destroyed. */
  readonly maxKeyVersion: number;
  /** When the last destruction happened. */
  readonly destroyedAt: Date;
}

/**
 * The answer to a key lookup: the key, a tombstone (destroyed), or nothing (never created).
 *
 * @example
 * ```ts
 * import type { KeyLookup } from "@eventsalsa/eventsalsa/encryption";
 * function explain(lookup: KeyLookup): string {
 *   switch (lookup.status) {
 *     case "found": return `v${lookup.key.keyVersion}`;
 *     case "destroyed": return `destroyed at ${lookup.tombstone.destroyedAt.toISOString()}`;
 *     case "missing": return "never created";
 *   }
 * }
 * ```
 */
export type KeyLookup =
  | { readonly status: "found"; readonly key: StoredKey }
  | { readonly status: "destroyed"; readonly tombstone: KeyTombstone }
  | { readonly status: "missing" };

/**
 * A freshly wrapped data key to store; the store picks its version.
 *
 * @example
 * ```ts
 * import type { NewKey } from "@eventsalsa/eventsalsa/encryption";
 * const key: NewKey = {
 *   scope: "user-pii",
 *   scopeId: "u-1",
 *   encryptedDek: new Uint8Array(60),
 *   systemKeyId: "kek-1",
 * };
 * ```
 */
export interface NewKey {
  /** The scope. */
  readonly scope: string;
  /** The scope id. */
  readonly scopeId: string;
  /** The wrapped data key. */
  readonly encryptedDek: Uint8Array;
  /** Id of the system key that wrapped it. */
  readonly systemKeyId: string;
}

/**
 * Outcome of {@link KeyStore.createKey}: created, or refused because the scope id already has an
 * active key (`keyVersion` is `null` when a concurrent writer won and the version is unknown).
 *
 * @example
 * ```ts
 * import type { CreateKeyResult } from "@eventsalsa/eventsalsa/encryption";
 * const created = (r: CreateKeyResult): boolean => r.status === "created";
 * ```
 */
export type CreateKeyResult =
  | { readonly status: "created"; readonly key: StoredKey }
  | { readonly status: "exists"; readonly keyVersion: number | null };

/**
 * Outcome of {@link KeyStore.rotateKey}: the new version, or why there was nothing to rotate.
 *
 * @example
 * ```ts
 * import type { RotateKeyResult } from "@eventsalsa/eventsalsa/encryption";
 * const version = (r: RotateKeyResult): number | null =>
 *   r.status === "rotated" ? r.key.keyVersion : null;
 * ```
 */
export type RotateKeyResult =
  | { readonly status: "rotated"; readonly key: StoredKey }
  | { readonly status: "destroyed"; readonly tombstone: KeyTombstone }
  | { readonly status: "missing" };

/**
 * Which keys one batch of a rewrap reads: see {@link KeyStore.rewrapBatch}.
 *
 * @example
 * ```ts
 * import type { RewrapBatch } from "@eventsalsa/eventsalsa/encryption";
 * const first: RewrapBatch = { fromSystemKeyId: "kek-2025", after: null, limit: 100, dryRun: false };
 * ```
 */
export interface RewrapBatch {
  /** The system key the keys to read are wrapped under. */
  readonly fromSystemKeyId: string;
  /**
   * Read only keys after this one in (scope, scopeId, keyVersion) order; `null` for the first
   * batch.
   */
  readonly after: Pick<StoredKey, "scope" | "scopeId" | "keyVersion"> | null;
  /** Most keys to read. */
  readonly limit: number;
  /** Read without locking and write nothing. */
  readonly dryRun: boolean;
}

/**
 * Storage of wrapped data keys. Implementations must make `createKey` and `rotateKey` atomic per
 * scope id: of two concurrent `createKey` calls exactly one creates, the other gets `exists`; of
 * concurrent rotations each creates its own version and afterwards exactly one version is active.
 *
 * Versions: a scope id's first key is version 1, or one above the highest destroyed version when
 * its keys were destroyed before (so old ciphertext keeps failing with "destroyed"); a rotation
 * creates the highest version so far plus one.
 *
 * @example
 * ```ts
 * import type { KeyStore } from "@eventsalsa/eventsalsa/encryption";
 * async function activeVersion<Tx>(store: KeyStore<Tx>, tx: Tx): Promise<number | null> {
 *   const lookup = await store.getActiveKey(tx, "user-pii", "u-1");
 *   return lookup.status === "found" ? lookup.key.keyVersion : null;
 * }
 * ```
 */
export interface KeyStore<Tx> {
  /** The highest version that is not revoked, or a tombstone, or `missing`. */
  getActiveKey(tx: Tx, scope: string, scopeId: string): Promise<KeyLookup>;
  /** Exactly `keyVersion`, revoked or not; a tombstone when that version was destroyed. */
  getKey(tx: Tx, scope: string, scopeId: string, keyVersion: number): Promise<KeyLookup>;
  /** Stores the scope id's first active key, unless it already has one. */
  createKey(tx: Tx, key: NewKey): Promise<CreateKeyResult>;
  /** Stores a new highest version and revokes every other version, if the scope id has an active key. */
  rotateKey(tx: Tx, key: NewKey): Promise<RotateKeyResult>;
  /** Revokes every unrevoked version except the highest; returns how many were revoked. */
  revokeKeys(tx: Tx, scope: string, scopeId: string): Promise<number>;
  /** Deletes every version and leaves a tombstone; returns how many versions were deleted. */
  destroyKeys(tx: Tx, scope: string, scopeId: string): Promise<number>;
  /**
   * One batch of a system-key rewrap (`KeyManager.rewrapSystemKeys` drives the batches and does
   * the cryptography). In one transaction of its own (or in `tx` when it is one): read up to
   * `batch.limit` keys wrapped under `batch.fromSystemKeyId` that come after `batch.after` in
   * (scope, scopeId, keyVersion) order, in that order, locking them against other rewraps and
   * skipping keys others hold locked (no locks in a dry run); pass them to `rewrap` once; write
   * each key it returns (new `encryptedDek` and `systemKeyId`) only if its row is still under
   * `batch.fromSystemKeyId`, and nothing in a dry run; commit. Returns how many keys were read and
   * how many writes took effect.
   */
  rewrapBatch(
    tx: Tx,
    batch: RewrapBatch,
    rewrap: (keys: StoredKey[]) => StoredKey[],
  ): Promise<{ read: number; written: number }>;
  /** How many keys are wrapped under system key `systemKeyId`. */
  countKeys(tx: Tx, systemKeyId: string): Promise<number>;
  /**
   * Whether reads through `tx` can only see committed rows, so the DEK cache may keep what they
   * return. A PostgreSQL transaction can see its own uncommitted keys (which a rollback would
   * turn into phantoms), so only reads through the pool qualify.
   */
  readsCommitted(tx: Tx): boolean;
}
