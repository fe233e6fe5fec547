/**
 * The PostgreSQL key store (postgres.js). It reads and writes the Go library's `encryption_keys`
 * table, plus a tombstone table of its own.
 *
 * @module
 */
import { textArrayLiteral } from "../internal/postgres_array.ts";
import { inTransaction, isPool, type SqlExecutor } from "../internal/postgres_client.ts";
import { run } from "../internal/postgres_query.ts";
import { copyBytes, toHex } from "./encoding.ts";
import { KeyExistsError } from "./errors.ts";
import type {
  CreateKeyResult,
  KeyLookup,
  KeyStore,
  KeyTombstone,
  NewKey,
  RewrapBatch,
  RotateKeyResult,
  StoredKey,
} from "./key_store.ts";
import { type KeyStoreTableOptions, keyStoreTables } from "./migration.ts";

/**
 * Options of {@link PostgresKeyStore}: the table names (see {@link KeyStoreTableOptions}).
 *
 * @example
 * ```ts
 * import { GO_KEYS_TABLE, PostgresKeyStore, type PostgresKeyStoreOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: PostgresKeyStoreOptions = { table: GO_KEYS_TABLE }; // the Go services' table
 * const store = new PostgresKeyStore(options);
 * ```
 */
export type PostgresKeyStoreOptions = KeyStoreTableOptions;

/** First key of the two-key advisory lock that serialises key changes per scope id. */
export const KEY_LOCK_CLASS = 1_163_086_681;

type Row = unknown[];

const KEY_COLUMNS = "key_version, encrypted_key, system_key_id, created_at, revoked_at";

/**
 * The PostgreSQL {@link KeyStore}. Stateless apart from its table names, so one instance serves
 * every connection. Every method takes the caller's postgres.js transaction (`sql.begin(tx => …)`)
 * and never commits it; given the pool instead, a write opens its own transaction. Works with
 * postgres.js `prepare: true` and `prepare: false` (PgBouncer transaction mode).
 *
 * Race safety: `createKey`, `rotateKey` and `destroyKeys` take a transaction-scoped advisory lock
 * per scope id, so concurrent calls on one scope id run one after another (the second sees the
 * first's committed result), and insert with `ON CONFLICT DO NOTHING`, so a writer that takes no
 * lock (a Go service) yields `KeyExistsError`, never a raw unique violation.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { createEncryption, keyringFromFiles, migrate, PostgresKeyStore } from "@eventsalsa/eventsalsa/encryption";
 * const sql = postgres(process.env.DATABASE_URL!);
 * await migrate(sql);
 * const encryption = createEncryption({
 *   keyring: await keyringFromFiles({ keyPaths: { k1: "/run/secrets/k1" }, activeKeyId: "k1" }),
 *   store: new PostgresKeyStore(),
 * });
 * await sql.begin((tx) => encryption.keyManager.createKey(tx, "user-pii", "u-1"));
 * ```
 */
export class PostgresKeyStore implements KeyStore<SqlExecutor> {
  /** The keys table as configured (unquoted text). */
  readonly table: string;
  /** The tombstone table as configured (unquoted text). */
  readonly tombstoneTable: string;
  readonly #getKeySql: string;
  readonly #getActiveSql: string;
  readonly #lockSql: string;
  readonly #createSql: string;
  readonly #rotateSql: string;
  readonly #revokeSql: string;
  readonly #destroySql: string;
  readonly #rewrapSelectFirstSql: string;
  readonly #rewrapSelectNextSql: string;
  readonly #rewrapUpdateSql: string;
  readonly #countSql: string;

  /** Validates the table names (lower case, optionally schema-qualified) and prepares the SQL. */
  constructor(options: PostgresKeyStoreOptions = {}) {
    const { keys, tombstones } = keyStoreTables(options);
    this.table = keys.text;
    this.tombstoneTable = tombstones.text;
    const T = keys.quoted;
    const TT = tombstones.quoted;
    const subject = "scope = $1::text AND scope_id = $2::text";
    const tombstoneJoin = `LEFT JOIN ${TT} AS t ON t.scope = s.scope AND t.scope_id = s.scope_id`;
    const input = "(SELECT $1::text AS scope, $2::text AS scope_id) AS s";
    this.#getKeySql = `SELECT k.key_version, k.encrypted_key, k.system_key_id, k.created_at,
        k.revoked_at, t.max_key_version, t.destroyed_at
      FROM ${input}
      LEFT JOIN ${T} AS k ON k.scope = s.scope AND k.scope_id = s.scope_id AND k.key_version = $3::int4
      ${tombstoneJoin}`;
    this.#getActiveSql = `SELECT k.key_version, k.encrypted_key, k.system_key_id, k.created_at,
        k.revoked_at, t.max_key_version, t.destroyed_at
      FROM ${input}
      LEFT JOIN LATERAL (SELECT ${KEY_COLUMNS} FROM ${T}
        WHERE scope = s.scope AND scope_id = s.scope_id AND revoked_at IS NULL
        ORDER BY key_version DESC LIMIT 1) AS k ON true
      ${tombstoneJoin}`;
    this.#lockSql =
      `SELECT pg_advisory_xact_lock(${KEY_LOCK_CLASS}, hashtext($1::text || chr(31) || $2::text))`;
    const state = `state AS (
        SELECT (SELECT max(key_version) FROM ${T} WHERE ${subject}) AS max_version,
          (SELECT max(key_version) FROM ${T} WHERE ${subject} AND revoked_at IS NULL) AS active_version,
          (SELECT max_key_version FROM ${TT} WHERE ${subject}) AS destroyed_version
      )`;
    const insert = (condition: string) =>
      `inserted AS (
        INSERT INTO ${T} (scope, scope_id, key_version, encrypted_key, system_key_id)
        SELECT $1::text, $2::text,
          GREATEST(coalesce(max_version, 0), coalesce(destroyed_version, 0)) + 1,
          decode($3::text, 'hex'), $4::text
        FROM state WHERE ${condition}
        ON CONFLICT DO NOTHING
        RETURNING key_version, created_at
      )`;
    this.#createSql = `WITH ${state}, ${insert("active_version IS NULL")}
      SELECT (SELECT key_version FROM inserted), (SELECT created_at FROM inserted),
        (SELECT active_version FROM state)`;
    // The UPDATE sees the snapshot from before the INSERT, so it revokes every older version.
    this.#rotateSql = `WITH ${state}, ${insert("active_version IS NOT NULL")},
      revoked AS (
        UPDATE ${T} SET revoked_at = now()
        WHERE ${subject} AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM inserted)
        RETURNING 1
      )
      SELECT (SELECT key_version FROM inserted), (SELECT created_at FROM inserted),
        (SELECT active_version FROM state), t.max_key_version, t.destroyed_at
      FROM ${input} ${tombstoneJoin}`;
    this.#revokeSql = `UPDATE ${T} SET revoked_at = now()
      WHERE ${subject} AND revoked_at IS NULL
        AND key_version < (SELECT max(key_version) FROM ${T} WHERE ${subject})
      RETURNING key_version`;
    this.#destroySql = `WITH deleted AS (
        DELETE FROM ${T} WHERE ${subject} RETURNING key_version
      ),
      tombstone AS (
        INSERT INTO ${TT} AS t (scope, scope_id, max_key_version, destroyed_at)
        SELECT $1::text, $2::text, max(key_version), now() FROM deleted HAVING count(*) > 0
        ON CONFLICT (scope, scope_id) DO UPDATE
          SET max_key_version = GREATEST(t.max_key_version, excluded.max_key_version),
            destroyed_at = excluded.destroyed_at
        RETURNING 1
      )
      SELECT count(*)::int FROM deleted`;
    const rewrapSelect = (after: string) =>
      `SELECT scope, scope_id, ${KEY_COLUMNS} FROM ${T}
      WHERE system_key_id = $1::text${after}
      ORDER BY scope, scope_id, key_version LIMIT $2::int4`;
    this.#rewrapSelectFirstSql = rewrapSelect("");
    this.#rewrapSelectNextSql = rewrapSelect(
      " AND (scope, scope_id, key_version) > ($3::text, $4::text, $5::int4)",
    );
    this.#rewrapUpdateSql = `UPDATE ${T} AS k
      SET encrypted_key = decode(u.encrypted_key, 'hex'), system_key_id = u.system_key_id
      FROM unnest($2::text[], $3::text[], $4::int4[], $5::text[], $6::text[])
        AS u(scope, scope_id, key_version, encrypted_key, system_key_id)
      WHERE k.scope = u.scope AND k.scope_id = u.scope_id AND k.key_version = u.key_version
        AND k.system_key_id = $1::text
      RETURNING 1`;
    this.#countSql = `SELECT count(*)::int FROM ${T} WHERE system_key_id = $1::text`;
  }

  #lookup(
    scope: string,
    scopeId: string,
    row: Row | undefined,
    keyVersion: number | null,
  ): KeyLookup {
    if (row !== undefined && row[0] !== null) {
      return { status: "found", key: toStoredKey(scope, scopeId, row) };
    }
    if (row !== undefined && row[5] !== null) {
      const tombstone = toTombstone(scope, scopeId, row[5], row[6]);
      if (keyVersion === null || keyVersion <= tombstone.maxKeyVersion) {
        return { status: "destroyed", tombstone };
      }
    }
    return { status: "missing" };
  }

  /** See {@link KeyStore.getActiveKey}. */
  async getActiveKey(tx: SqlExecutor, scope: string, scopeId: string): Promise<KeyLookup> {
    const rows = await run(tx, this.#getActiveSql, [scope, scopeId]);
    return this.#lookup(scope, scopeId, rows[0], null);
  }

  /** See {@link KeyStore.getKey}. */
  async getKey(
    tx: SqlExecutor,
    scope: string,
    scopeId: string,
    keyVersion: number,
  ): Promise<KeyLookup> {
    const rows = await run(tx, this.#getKeySql, [scope, scopeId, keyVersion]);
    return this.#lookup(scope, scopeId, rows[0], keyVersion);
  }

  /** See {@link KeyStore.createKey}. */
  createKey(tx: SqlExecutor, key: NewKey): Promise<CreateKeyResult> {
    return inTransaction(tx, async (t) => {
      const row = await this.#writeLocked(t, this.#createSql, key);
      if (row[0] === null) return { status: "exists", keyVersion: row[2] as number | null };
      return { status: "created", key: newStoredKey(key, row) };
    });
  }

  /** Takes the subject's lock, then runs a create or rotate statement for `key`. */
  async #writeLocked(t: SqlExecutor, text: string, key: NewKey): Promise<Row> {
    await run(t, this.#lockSql, [key.scope, key.scopeId]);
    const [row] = await run(t, text, [
      key.scope,
      key.scopeId,
      toHex(key.encryptedDek),
      key.systemKeyId,
    ]);
    return row;
  }

  /** See {@link KeyStore.rotateKey}. */
  rotateKey(tx: SqlExecutor, key: NewKey): Promise<RotateKeyResult> {
    return inTransaction(tx, async (t) => {
      const row = await this.#writeLocked(t, this.#rotateSql, key);
      if (row[0] !== null) return { status: "rotated", key: newStoredKey(key, row) };
      if (row[2] !== null) {
        // An active key exists but the insert collided: a writer that does not take our lock.
        throw new KeyExistsError({ scope: key.scope, scopeId: key.scopeId, keyVersion: null });
      }
      if (row[3] !== null) {
        return {
          status: "destroyed",
          tombstone: toTombstone(key.scope, key.scopeId, row[3], row[4]),
        };
      }
      return { status: "missing" };
    });
  }

  /** See {@link KeyStore.revokeKeys}. */
  async revokeKeys(tx: SqlExecutor, scope: string, scopeId: string): Promise<number> {
    const rows = await run(tx, this.#revokeSql, [scope, scopeId]);
    return rows.length;
  }

  /** See {@link KeyStore.destroyKeys}. */
  destroyKeys(tx: SqlExecutor, scope: string, scopeId: string): Promise<number> {
    return inTransaction(tx, async (t) => {
      await run(t, this.#lockSql, [scope, scopeId]);
      const [row] = await run(t, this.#destroySql, [scope, scopeId]);
      return row[0] as number;
    });
  }

  /**
   * See {@link KeyStore.rewrapBatch}. Given the pool, the batch is a transaction of its own; given
   * a transaction, it runs in it. Rows are read in (scope, scope_id, key_version) order with
   * `FOR UPDATE SKIP LOCKED` (no locks in a dry run) and written with one compare-and-set
   * `UPDATE`.
   */
  rewrapBatch(
    tx: SqlExecutor,
    batch: RewrapBatch,
    rewrap: (keys: StoredKey[]) => StoredKey[],
  ): Promise<{ read: number; written: number }> {
    const lock = batch.dryRun ? "" : " FOR UPDATE SKIP LOCKED";
    const after = batch.after;
    return inTransaction(tx, async (t) => {
      const rows = after === null
        ? await run(t, this.#rewrapSelectFirstSql + lock, [batch.fromSystemKeyId, batch.limit])
        : await run(t, this.#rewrapSelectNextSql + lock, [
          batch.fromSystemKeyId,
          batch.limit,
          after.scope,
          after.scopeId,
          after.keyVersion,
        ]);
      const keys = rows.map((row) => toStoredKey(row[0] as string, row[1] as string, row.slice(2)));
      const updates = rewrap(keys);
      let written = 0;
      if (updates.length > 0 && !batch.dryRun) {
        const done = await run(t, this.#rewrapUpdateSql, [
          batch.fromSystemKeyId,
          textArrayLiteral(updates.map((u) => u.scope)),
          textArrayLiteral(updates.map((u) => u.scopeId)),
          textArrayLiteral(updates.map((u) => String(u.keyVersion))),
          textArrayLiteral(updates.map((u) => toHex(u.encryptedDek))),
          textArrayLiteral(updates.map((u) => u.systemKeyId)),
        ]);
        written = done.length;
      }
      return { read: rows.length, written };
    });
  }

  /** See {@link KeyStore.countKeys}. */
  async countKeys(tx: SqlExecutor, systemKeyId: string): Promise<number> {
    const [row] = await run(tx, this.#countSql, [systemKeyId]);
    return row[0] as number;
  }

  /**
   * True for the pool: its reads see only committed keys. False for a transaction, which may see
   * its own uncommitted keys (a rollback would leave a cached phantom).
   */
  readsCommitted(tx: SqlExecutor): boolean {
    return isPool(tx);
  }
}

/** The key a create or rotate statement just wrote: its version and time from `row`. */
function newStoredKey(key: NewKey, row: Row): StoredKey {
  return {
    scope: key.scope,
    scopeId: key.scopeId,
    keyVersion: row[0] as number,
    encryptedDek: copyBytes(key.encryptedDek),
    systemKeyId: key.systemKeyId,
    createdAt: row[1] as Date,
    revokedAt: null,
  };
}

function toStoredKey(scope: string, scopeId: string, row: Row): StoredKey {
  return {
    scope,
    scopeId,
    keyVersion: row[0] as number,
    // A plain copy: postgres.js may hand out views on a shared buffer.
    encryptedDek: copyBytes(row[1] as Uint8Array),
    systemKeyId: row[2] as string,
    createdAt: row[3] as Date,
    revokedAt: (row[4] as Date | null) ?? null,
  };
}

function toTombstone(
  scope: string,
  scopeId: string,
  maxKeyVersion: unknown,
  destroyedAt: unknown,
): KeyTombstone {
  return {
    scope,
    scopeId,
    maxKeyVersion: maxKeyVersion as number,
    destroyedAt: destroyedAt as Date,
  };
}
