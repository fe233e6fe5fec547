import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type postgres from "postgres";
import { type TestDatabase, testDatabase } from "../testing/test_database.ts";
import { decryptWithKey, encryptWithKey } from "./aes_gcm.ts";
import { toHex } from "./encoding.ts";
import { keyStoreContract, type KeyStoreHarness } from "./key_store_contract.ts";
import type { SqlExecutor } from "../store/mod.ts";
import {
  createEncryption,
  DekCache,
  KeyDestroyedError,
  KeyExistsError,
  keyringFromMap,
  migrate,
  migrationSql,
  PostgresKeyStore,
  RewrapAbortedError,
} from "./mod.ts";

function postgresHarness(prepare: boolean): () => Promise<KeyStoreHarness<SqlExecutor>> {
  return async () => {
    const db = await testDatabase({ prepare });
    await migrate(db.sql);
    const store = new PostgresKeyStore();
    return {
      store,
      base: db.sql,
      transaction: <T>(work: (tx: SqlExecutor) => Promise<T>) =>
        db.sql.begin((tx) => work(tx)) as Promise<T>,
      seed: async (row) => {
        await db.sql.unsafe(
          `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id,
             revoked_at) VALUES ($1, $2, $3, decode($4, 'hex'), $5, CASE WHEN $6 THEN now() END)`,
          [
            row.scope,
            row.scopeId,
            row.keyVersion,
            toHex(row.encryptedDek),
            row.systemKeyId,
            row.revoked ?? false,
          ],
        );
      },
      close: () => db.close(),
    };
  };
}

keyStoreContract("PostgresKeyStore (prepare: true)", postgresHarness(true));
keyStoreContract("PostgresKeyStore (prepare: false)", postgresHarness(false));

const kek = (fill: number): Uint8Array => new Uint8Array(32).fill(fill);

/** Skips a multi-connection scenario on the embedded PGlite, printing why. */
function skip(t: { skip(message?: string): void }, db: TestDatabase): void {
  console.log(`skipped: ${db.concurrencySkipReason}`);
  t.skip(db.concurrencySkipReason!);
}

/** Resolves once a backend of `applicationName` waits for a lock (polls pg_stat_activity). */
async function lockWaiter(sql: postgres.Sql, applicationName: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const [row] = await sql`SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = ${applicationName} AND wait_event_type = 'Lock'`;
    if (row.n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no backend of ${applicationName} waited for a lock within 5 s`);
}

describe("PostgresKeyStore on PostgreSQL", () => {
  let db: TestDatabase;
  before(async () => {
    db = await testDatabase();
    await migrate(db.sql);
  });
  after(() => db.close());

  it("57. applying the migration again succeeds", async () => {
    await migrate(db.sql);
    await db.sql.unsafe(migrationSql());
  });

  it("54. a custom schema-qualified table works", async () => {
    const schema = `${db.schema}_custom`;
    await migrate(db.sql, { table: `${schema}.custom_keys`, createSchema: true });
    try {
      const store = new PostgresKeyStore({ table: `${schema}.custom_keys` });
      const created = await store.createKey(db.sql, {
        scope: "s",
        scopeId: "i",
        encryptedDek: new Uint8Array([1, 2, 3]),
        systemKeyId: "k",
      });
      assert.equal(created.status, "created");
      const lookup = await store.getActiveKey(db.sql, "s", "i");
      assert.equal(lookup.status, "found");
      const [row] = await db.sql.unsafe(
        `SELECT count(*)::int AS n FROM ${schema}.custom_keys`,
      );
      assert.equal(row.n, 1);
      await store.destroyKeys(db.sql, "s", "i");
      const [tomb] = await db.sql.unsafe(
        `SELECT max_key_version FROM ${schema}.custom_keys_tombstones`,
      );
      assert.equal(tomb.max_key_version, 1);
    } finally {
      await db.sql.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    }
  });

  it("55. the table's primary key rejects a duplicate raw insert", async () => {
    const insert = () =>
      db.sql.unsafe(
        `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
         VALUES ('dup', 'd', 1, '\\x01', 'k')`,
      );
    await insert();
    await assert.rejects(insert(), (error: { code?: string }) => error.code === "23505");
  });

  it("the DDL's CHECK constraints hold (empty scope, version 0)", async () => {
    await assert.rejects(
      db.sql.unsafe(
        `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
         VALUES ('', 'x', 1, '\\x01', 'k')`,
      ),
      (error: { code?: string }) => error.code === "23514",
    );
    await assert.rejects(
      db.sql.unsafe(
        `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
         VALUES ('s', 'x', 0, '\\x01', 'k')`,
      ),
      (error: { code?: string }) => error.code === "23514",
    );
  });

  it("a subject with only revoked rows gets a version above all of them", async () => {
    await db.sql.unsafe(
      `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id, revoked_at)
       VALUES ('go', 'revoked-only', 1, '\\x01', 'k', now())`,
    );
    const result = await new PostgresKeyStore().createKey(db.sql, {
      scope: "go",
      scopeId: "revoked-only",
      encryptedDek: new Uint8Array([2]),
      systemKeyId: "k",
    });
    assert.equal(result.status === "created" && result.key.keyVersion, 2);
  });

  it("a create racing a writer that takes no lock (a Go service) yields exists", async (t) => {
    if (!db.supportsConcurrency) return skip(t, db);
    const goService = db.connect({ max: 1 });
    let commit!: () => void;
    const committed = new Promise<void>((resolve) => (commit = resolve));
    let inserted!: () => void;
    const insertedOnce = new Promise<void>((resolve) => (inserted = resolve));
    const writer = goService.begin(async (tx) => {
      await tx.unsafe(
        `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
         VALUES ('go', 'racer', 1, '\\x01', 'k')`,
      );
      inserted();
      await committed;
    });
    await insertedOnce;
    const pool = db.connect({ max: 1, connection: { application_name: "es-enc-go-race" } });
    // Our insert of v1 waits on the uncommitted row, then does nothing once it commits.
    const ours = new PostgresKeyStore().createKey(pool, {
      scope: "go",
      scopeId: "racer",
      encryptedDek: new Uint8Array([2]),
      systemKeyId: "k",
    });
    await lockWaiter(db.sql, "es-enc-go-race");
    commit();
    await writer;
    assert.deepEqual(await ours, { status: "exists", keyVersion: null });
    await goService.end();
    await pool.end();
  });

  it("two transactions creating one subject: one key and one KeyExistsError", async (t) => {
    if (!db.supportsConcurrency) return skip(t, db);
    const other = db.connect({ max: 2, connection: { application_name: "es-enc-create-race" } });
    const encryption = createEncryption({
      keyring: keyringFromMap({ k1: kek(1) }, "k1"),
      store: new PostgresKeyStore(),
    });
    let releaseFirst!: () => void;
    const firstHolds = new Promise<void>((resolve) => (releaseFirst = resolve));
    let firstCreated!: () => void;
    const created = new Promise<void>((resolve) => (firstCreated = resolve));
    const first = db.sql.begin(async (tx) => {
      const version = await encryption.keyManager.createKey(tx, "race", "pg-1");
      firstCreated();
      await firstHolds; // keep the transaction open while the second one tries
      return version;
    });
    await created;
    const second = other.begin((tx) => encryption.keyManager.createKey(tx, "race", "pg-1"));
    const outcome = second.then(() => "created", (error) => error);
    // The second transaction waits on the subject lock until the first commits.
    await lockWaiter(db.sql, "es-enc-create-race");
    releaseFirst();
    assert.equal(await first, 1);
    assert.ok((await outcome) instanceof KeyExistsError);
    const [row] = await db
      .sql`SELECT count(*)::int AS n FROM encryption_keys WHERE scope_id = 'pg-1'`;
    assert.equal(row.n, 1);
    await other.end();
  });

  it("concurrent rotations from many connections never leave two active versions", async (t) => {
    if (!db.supportsConcurrency) return skip(t, db);
    const pool = db.connect({ max: 8 });
    const { keyManager } = createEncryption({
      keyring: keyringFromMap({ k1: kek(1) }, "k1"),
      store: new PostgresKeyStore(),
    });
    await keyManager.createKey(pool, "race", "rot");
    const versions = await Promise.all(
      Array.from({ length: 8 }, () => pool.begin((tx) => keyManager.rotateKey(tx, "race", "rot"))),
    );
    assert.deepEqual(versions.sort((a, b) => a - b), [2, 3, 4, 5, 6, 7, 8, 9]);
    const rows = await pool`SELECT key_version FROM encryption_keys
      WHERE scope = 'race' AND scope_id = 'rot' AND revoked_at IS NULL`;
    assert.deepEqual(rows.map((r) => r.key_version), [9]);
    await pool.end();
  });

  it("append UserDeleted + destroyKeys commit or roll back as one", async () => {
    await db.sql`CREATE TABLE user_events (user_id text, event_type text)`;
    const encryption = createEncryption({
      keyring: keyringFromMap({ k1: kek(1) }, "k1"),
      store: new PostgresKeyStore(),
    });
    const pii = encryption.pii("user-pii");
    const email = await db.sql.begin(async (tx) => {
      await encryption.keyManager.createKey(tx, "user-pii", "u-del");
      return await pii.encrypt(tx, "u-del", "alice@example.com");
    });
    await assert.rejects(
      db.sql.begin(async (tx) => {
        await tx`INSERT INTO user_events VALUES ('u-del', 'UserDeleted')`;
        await encryption.keyManager.destroyKeys(tx, "user-pii", "u-del");
        throw new Error("crash before commit");
      }),
      /crash before commit/,
    );
    assert.equal(await pii.decrypt(db.sql, "u-del", email), "alice@example.com");
    await db.sql.begin(async (tx) => {
      await tx`INSERT INTO user_events VALUES ('u-del', 'UserDeleted')`;
      await encryption.keyManager.destroyKeys(tx, "user-pii", "u-del");
    });
    await assert.rejects(pii.decrypt(db.sql, "u-del", email), KeyDestroyedError);
    const [row] = await db.sql`SELECT count(*)::int AS n FROM user_events`;
    assert.equal(row.n, 1);
  });

  it("the DEK cache is filled only from committed reads and dropped by destroyKeys", async () => {
    const cache = new DekCache({ ttlMs: 60_000 });
    const encryption = createEncryption({
      keyring: keyringFromMap({ k1: kek(1) }, "k1"),
      store: new PostgresKeyStore(),
      cache,
    });
    const pii = encryption.pii("user-pii");
    // Created and used inside a transaction that rolls back: nothing may be cached.
    await assert.rejects(
      db.sql.begin(async (tx) => {
        await encryption.keyManager.createKey(tx, "user-pii", "phantom");
        await pii.encrypt(tx, "phantom", "x");
        throw new Error("roll back");
      }),
    );
    assert.equal(cache.size, 0);
    await encryption.keyManager.createKey(db.sql, "user-pii", "cached");
    const value = await pii.encrypt(db.sql, "cached", "bob@example.com");
    assert.equal(cache.size, 1);
    assert.equal(await pii.decrypt(db.sql, "cached", value), "bob@example.com");
    await db.sql.begin((tx) => encryption.keyManager.destroyKeys(tx, "user-pii", "cached"));
    assert.equal(cache.size, 0);
    await assert.rejects(pii.decrypt(db.sql, "cached", value), KeyDestroyedError);
  });

  it("works through a pool with prepare: false", async () => {
    // PGlite serves one session, held by db.sql; the contract runs prepare: false there anyway.
    const pool = db.supportsConcurrency ? db.connect({ prepare: false }) : db.sql;
    const encryption = createEncryption({
      keyring: keyringFromMap({ k1: kek(1) }, "k1"),
      store: new PostgresKeyStore(),
    });
    const secrets = encryption.secrets("integration");
    await encryption.keyManager.createKey(pool, "integration", "stripe");
    const v1 = await secrets.encrypt(pool, "stripe", "sk_1");
    await pool.begin((tx) => encryption.keyManager.rotateKey(tx, "integration", "stripe"));
    const v2 = await secrets.encrypt(pool, "stripe", "sk_2");
    assert.equal(await secrets.decrypt(pool, "stripe", v1), "sk_1");
    assert.equal(await secrets.decrypt(pool, "stripe", v2), "sk_2");
    if (pool !== db.sql) await pool.end();
  });
});

describe("rewrapSystemKeys on PostgreSQL", () => {
  let db: TestDatabase;
  before(async () => {
    db = await testDatabase();
    await migrate(db.sql);
  });
  after(() => db.close());

  const oldKek = kek(0x11);
  const newKek = kek(0x22);
  const keyring = () => keyringFromMap({ old: oldKek, new: newKek }, "new");

  async function seedWrapped(
    sql: postgres.Sql,
    count: number,
    prefix: string,
  ): Promise<Uint8Array[]> {
    const deks: Uint8Array[] = [];
    const scopeIds: string[] = [];
    const wrapped: string[] = [];
    for (let i = 0; i < count; i++) {
      const dek = crypto.getRandomValues(new Uint8Array(32));
      deks.push(dek);
      scopeIds.push(`${prefix}-${String(i).padStart(6, "0")}`);
      wrapped.push(toHex(encryptWithKey(oldKek, dek)));
    }
    await sql.unsafe(
      `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
       SELECT 'bulk', s, 1, decode(k, 'hex'), 'old' FROM unnest($1::text[], $2::text[]) AS u(s, k)`,
      [scopeIds, wrapped] as never,
    );
    return deks;
  }

  it("rewraps 10,000 keys with one corrupt row: reported, skipped, the rest moved", async () => {
    const deks = await seedWrapped(db.sql, 10_000, "r");
    // Corrupt one row: flip every bit of one tag byte (overwriting it with a constant would leave
    // the row intact whenever the byte already had that value, one run in 256).
    await db.sql`UPDATE encryption_keys
      SET encrypted_key = set_byte(encrypted_key, 59, get_byte(encrypted_key, 59) # 255)
      WHERE scope_id = 'r-004321'`;
    const { keyManager } = createEncryption({ keyring: keyring(), store: new PostgresKeyStore() });
    const progress: number[] = [];
    const failures: string[] = [];
    const result = await keyManager.rewrapSystemKeys(db.sql, {
      from: "old",
      to: "new",
      batchSize: 1000,
      onProgress: (p) => void progress.push(p.matchedRows),
      onRowError: (f) => void failures.push(`${f.scopeId}: ${f.error.name}`),
    });
    assert.equal(result.matchedRows, 10_000);
    assert.equal(result.rewrappedRows, 9_999);
    assert.equal(result.failedRows, 1);
    assert.equal(result.skippedRows, 0);
    assert.equal(result.remainingRows, 1);
    assert.equal(result.batches, 10);
    assert.deepEqual(failures, ["r-004321: DecryptionError"]);
    assert.deepEqual(progress, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]);
    // Spot-check: rewrapped rows open under the new key to the same DEK.
    for (const i of [0, 4320, 4322, 9999]) {
      const id = `r-${String(i).padStart(6, "0")}`;
      const [row] = await db.sql`SELECT encrypted_key, system_key_id FROM encryption_keys
        WHERE scope_id = ${id}`;
      assert.equal(row.system_key_id, "new");
      assert.deepEqual(decryptWithKey(newKek, new Uint8Array(row.encrypted_key)), deks[i]);
    }
    // A rerun only meets the bad row again.
    const again = await keyManager.rewrapSystemKeys(db.sql, {
      from: "old",
      to: "new",
      batchSize: 1000,
    });
    assert.deepEqual([
      again.matchedRows,
      again.rewrappedRows,
      again.failedRows,
      again.remainingRows,
    ], [
      1,
      0,
      1,
      1,
    ]);
    await db.sql`DELETE FROM encryption_keys WHERE scope = 'bulk'`;
  });

  it("62. values stay readable after rewrap with only the new key in the keyring", async () => {
    const store = new PostgresKeyStore();
    const before = createEncryption({ keyring: keyringFromMap({ old: oldKek }, "old"), store });
    await before.keyManager.createKey(db.sql, "secret", "history");
    const alpha = await before.secrets("secret").encrypt(db.sql, "history", "alpha");
    await before.keyManager.rotateKey(db.sql, "secret", "history");
    const beta = await before.secrets("secret").encrypt(db.sql, "history", "beta");
    const during = createEncryption({ keyring: keyring(), store });
    const result = await during.keyManager.rewrapSystemKeys(db.sql, { from: "old", to: "new" });
    assert.equal(result.rewrappedRows, 2);
    const after = createEncryption({ keyring: keyringFromMap({ new: newKek }, "new"), store });
    assert.equal(await after.secrets("secret").decrypt(db.sql, "history", alpha), "alpha");
    assert.equal(await after.secrets("secret").decrypt(db.sql, "history", beta), "beta");
    await db.sql`DELETE FROM encryption_keys`;
  });

  it("61. two concurrent rewraps share the rows and move every one once", async (t) => {
    if (!db.supportsConcurrency) return skip(t, db);
    await seedWrapped(db.sql, 10, "c");
    const other = db.connect({ max: 2 });
    const { keyManager } = createEncryption({ keyring: keyring(), store: new PostgresKeyStore() });
    const [a, b] = await Promise.all([
      keyManager.rewrapSystemKeys(db.sql, { from: "old", to: "new", batchSize: 1 }),
      keyManager.rewrapSystemKeys(other, { from: "old", to: "new", batchSize: 1 }),
    ]);
    assert.equal(a.rewrappedRows + b.rewrappedRows, 10);
    assert.equal(a.failedRows + b.failedRows, 0);
    const [row] = await db
      .sql`SELECT count(*)::int AS n FROM encryption_keys WHERE system_key_id = 'old'`;
    assert.equal(row.n, 0);
    await other.end();
    await db.sql`DELETE FROM encryption_keys`;
  });

  it("a rewrap inside the caller's transaction rolls back with it", async () => {
    await seedWrapped(db.sql, 5, "t");
    const { keyManager } = createEncryption({ keyring: keyring(), store: new PostgresKeyStore() });
    await assert.rejects(
      db.sql.begin(async (tx) => {
        const result = await keyManager.rewrapSystemKeys(tx, {
          from: "old",
          to: "new",
          batchSize: 2,
        });
        assert.equal(result.rewrappedRows, 5);
        assert.equal(result.remainingRows, 0);
        throw new Error("roll back");
      }),
    );
    const [row] = await db
      .sql`SELECT count(*)::int AS n FROM encryption_keys WHERE system_key_id = 'old'`;
    assert.equal(row.n, 5);
    await db.sql`DELETE FROM encryption_keys`;
  });

  it("a failing progress callback stops the run with partial totals", async () => {
    await seedWrapped(db.sql, 6, "p");
    const { keyManager } = createEncryption({ keyring: keyring(), store: new PostgresKeyStore() });
    const error = await keyManager.rewrapSystemKeys(db.sql, {
      from: "old",
      to: "new",
      batchSize: 2,
      onProgress: (p) => {
        if (p.batches === 2) throw new Error("operator abort");
      },
    }).then(() => null, (e) => e);
    assert.ok(error instanceof RewrapAbortedError);
    assert.equal(error.result.rewrappedRows, 4);
    assert.equal(error.result.batches, 2);
    const [row] = await db
      .sql`SELECT count(*)::int AS n FROM encryption_keys WHERE system_key_id = 'old'`;
    assert.equal(row.n, 2, "committed batches stay committed");
    await db.sql`DELETE FROM encryption_keys`;
  });
});
