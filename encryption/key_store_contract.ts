/**
 * The key store contract: scenarios every {@link KeyStore} implementation must pass, run with
 * `node:test` (Deno and Bun). The PostgreSQL store and the in-memory store both run it; run it
 * against your own implementation the same way.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KeyLookup, KeyStore, StoredKey } from "./key_store.ts";
import {
  driveRewrap,
  type RewrapFailure,
  type RewrapRequest,
  type RewrapResult,
} from "./rewrap.ts";

/**
 * One key store under test, opened fresh (empty) for every scenario.
 *
 * @example
 * ```ts
 * import type { KeyStoreHarness } from "@eventsalsa/eventsalsa/testing";
 * const active = <Tx>(h: KeyStoreHarness<Tx>) => h.store.getActiveKey(h.base, "s", "id");
 * ```
 */
export interface KeyStoreHarness<Tx> {
  /** The store. */
  readonly store: KeyStore<Tx>;
  /** The handle for calls outside any transaction (the pool for PostgreSQL). */
  readonly base: Tx;
  /** Commits when `work` resolves, rolls back (and rethrows) when it throws. */
  transaction<T>(work: (tx: Tx) => Promise<T>): Promise<T>;
  /** Writes a raw row as-is, bypassing the store's rules (to set up revocation states). */
  seed(row: {
    scope: string;
    scopeId: string;
    keyVersion: number;
    encryptedDek: Uint8Array;
    systemKeyId: string;
    revoked?: boolean;
  }): Promise<void>;
  /** Releases everything. */
  close(): Promise<void>;
}

/**
 * Opens a fresh, empty key store for one scenario.
 *
 * @example
 * ```ts
 * import type { KeyStoreHarnessFactory } from "@eventsalsa/eventsalsa/testing";
 * declare const factory: KeyStoreHarnessFactory<unknown>;
 * const harness = await factory();
 * await harness.close();
 * ```
 */
export type KeyStoreHarnessFactory<Tx> = () => Promise<KeyStoreHarness<Tx>>;

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

function found(lookup: KeyLookup): StoredKey {
  assert.equal(lookup.status, "found", `expected a key, got ${lookup.status}`);
  return (lookup as { key: StoredKey }).key;
}

function newKey(scope: string, scopeId: string, dek = "enc-dek", systemKeyId = "sys-key-1") {
  return { scope, scopeId, encryptedDek: text(dek), systemKeyId };
}

/** A rewrap request whose per-row work reverses the bytes, or fails for `bad` payloads. */
function fakeRewrap(from: string, to: string, options: Partial<RewrapRequest> = {}): RewrapRequest {
  return {
    fromSystemKeyId: from,
    toSystemKeyId: to,
    batchSize: 1,
    dryRun: false,
    rewrapRow: (row: StoredKey) => {
      if (new TextDecoder().decode(row.encryptedDek) === "bad") throw new Error("corrupt row");
      return row.encryptedDek.slice().reverse();
    },
    ...options,
  };
}

/** A whole rewrap through the store's batches, as `KeyManager.rewrapSystemKeys` runs it. */
function rewrapThrough<Tx>(
  store: KeyStore<Tx>,
  tx: Tx,
  request: RewrapRequest,
): Promise<RewrapResult> {
  return driveRewrap(request, {
    runBatch: (after, limit, rewrap) =>
      store.rewrapBatch(
        tx,
        { fromSystemKeyId: request.fromSystemKeyId, after, limit, dryRun: request.dryRun },
        rewrap,
      ),
    countRemaining: () => store.countKeys(tx, request.fromSystemKeyId),
  });
}

/**
 * Registers the key store scenarios under `describe(name)`.
 *
 * @example
 * ```ts
 * import { keyStoreContract } from "@eventsalsa/eventsalsa/testing";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * keyStoreContract("in memory", () => {
 *   const store = new InMemoryKeyStore();
 *   return Promise.resolve({
 *     store,
 *     base: null,
 *     transaction: (work) => work(null),
 *     seed: (row) => Promise.resolve(store.seed({ ...row, revokedAt: row.revoked ? new Date() : null })),
 *     close: () => Promise.resolve(),
 *   });
 * });
 * ```
 */
export function keyStoreContract<Tx>(name: string, factory: KeyStoreHarnessFactory<Tx>): void {
  const scenario = (title: string, body: (h: KeyStoreHarness<Tx>) => Promise<void>) =>
    it(title, async () => {
      const h = await factory();
      try {
        await body(h);
      } finally {
        await h.close();
      }
    });

  describe(name, () => {
    scenario("39. createKey stores version 1 and getActiveKey returns it", async (h) => {
      const result = await h.store.createKey(
        h.base,
        newKey("user", "u-1", "enc-dek-1", "sys-key-1"),
      );
      assert.equal(result.status, "created");
      const key = found(await h.store.getActiveKey(h.base, "user", "u-1"));
      assert.equal(key.keyVersion, 1);
      assert.deepEqual(key.encryptedDek, text("enc-dek-1"));
      assert.equal(key.systemKeyId, "sys-key-1");
      assert.equal(key.revokedAt, null);
      assert.ok(key.createdAt instanceof Date);
      assert.equal(key.scope, "user");
      assert.equal(key.scopeId, "u-1");
    });

    scenario("40. getKey returns each version's own bytes", async (h) => {
      await h.store.createKey(h.base, newKey("user", "u-1", "dek-one"));
      const rotated = await h.store.rotateKey(h.base, newKey("user", "u-1", "dek-two"));
      assert.equal(rotated.status, "rotated");
      assert.deepEqual(
        found(await h.store.getKey(h.base, "user", "u-1", 1)).encryptedDek,
        text("dek-one"),
      );
      assert.deepEqual(
        found(await h.store.getKey(h.base, "user", "u-1", 2)).encryptedDek,
        text("dek-two"),
      );
    });

    scenario("41/42. lookups of an unknown scope id or version are missing", async (h) => {
      assert.deepEqual(await h.store.getActiveKey(h.base, "user", "nobody"), { status: "missing" });
      assert.deepEqual(await h.store.getKey(h.base, "user", "nobody", 1), { status: "missing" });
      await h.store.createKey(h.base, newKey("user", "u-1"));
      assert.deepEqual(await h.store.getKey(h.base, "user", "u-1", 999), { status: "missing" });
    });

    scenario("43. the highest unrevoked version is active", async (h) => {
      for (const v of [1, 2, 3]) {
        await h.seed({
          scope: "s",
          scopeId: "i",
          keyVersion: v,
          encryptedDek: bytes(v),
          systemKeyId: "k",
        });
      }
      assert.equal(found(await h.store.getActiveKey(h.base, "s", "i")).keyVersion, 3);
    });

    scenario("44. revokeKeys revokes all but the highest version", async (h) => {
      for (const v of [1, 2, 3]) {
        await h.seed({
          scope: "s",
          scopeId: "i",
          keyVersion: v,
          encryptedDek: bytes(v),
          systemKeyId: "k",
        });
      }
      assert.equal(await h.store.revokeKeys(h.base, "s", "i"), 2);
      assert.equal(found(await h.store.getActiveKey(h.base, "s", "i")).keyVersion, 3);
      assert.ok(found(await h.store.getKey(h.base, "s", "i", 1)).revokedAt instanceof Date);
      assert.ok(found(await h.store.getKey(h.base, "s", "i", 2)).revokedAt instanceof Date);
      assert.equal(found(await h.store.getKey(h.base, "s", "i", 3)).revokedAt, null);
      assert.equal(await h.store.revokeKeys(h.base, "s", "i"), 0, "nothing left to revoke");
    });

    scenario("45/46. revokeKeys on one key or on nothing changes nothing", async (h) => {
      await h.store.createKey(h.base, newKey("s", "one"));
      assert.equal(await h.store.revokeKeys(h.base, "s", "one"), 0);
      assert.equal(found(await h.store.getActiveKey(h.base, "s", "one")).keyVersion, 1);
      assert.equal(await h.store.revokeKeys(h.base, "s", "none"), 0);
    });

    scenario("47. destroyKeys deletes every version and leaves a tombstone", async (h) => {
      await h.store.createKey(h.base, newKey("user", "u-1"));
      await h.store.rotateKey(h.base, newKey("user", "u-1"));
      assert.equal(await h.store.destroyKeys(h.base, "user", "u-1"), 2);
      const active = await h.store.getActiveKey(h.base, "user", "u-1");
      assert.equal(active.status, "destroyed");
      const tombstone = (active as Extract<KeyLookup, { status: "destroyed" }>).tombstone;
      assert.equal(tombstone.maxKeyVersion, 2);
      assert.ok(tombstone.destroyedAt instanceof Date);
      assert.equal((await h.store.getKey(h.base, "user", "u-1", 1)).status, "destroyed");
      assert.equal((await h.store.getKey(h.base, "user", "u-1", 2)).status, "destroyed");
      assert.equal((await h.store.getKey(h.base, "user", "u-1", 3)).status, "missing");
    });

    scenario("48. destroyKeys on nothing is a no-op without a tombstone", async (h) => {
      assert.equal(await h.store.destroyKeys(h.base, "user", "ghost"), 0);
      assert.deepEqual(await h.store.getActiveKey(h.base, "user", "ghost"), { status: "missing" });
    });

    scenario("49. scopes are isolated", async (h) => {
      await h.store.createKey(h.base, newKey("scope-a", "id-1", "a"));
      await h.store.createKey(h.base, newKey("scope-b", "id-1", "b"));
      await h.store.destroyKeys(h.base, "scope-a", "id-1");
      assert.equal((await h.store.getActiveKey(h.base, "scope-a", "id-1")).status, "destroyed");
      assert.deepEqual(
        found(await h.store.getActiveKey(h.base, "scope-b", "id-1")).encryptedDek,
        text("b"),
      );
    });

    scenario("createKey refuses a scope id with an active key", async (h) => {
      await h.store.createKey(h.base, newKey("user", "u-1", "first"));
      assert.deepEqual(await h.store.createKey(h.base, newKey("user", "u-1", "second")), {
        status: "exists",
        keyVersion: 1,
      });
      assert.deepEqual(
        found(await h.store.getActiveKey(h.base, "user", "u-1")).encryptedDek,
        text("first"),
      );
    });

    scenario("createKey after destroy continues above the destroyed versions", async (h) => {
      await h.store.createKey(h.base, newKey("user", "u-1"));
      await h.store.rotateKey(h.base, newKey("user", "u-1"));
      await h.store.destroyKeys(h.base, "user", "u-1");
      const again = await h.store.createKey(h.base, newKey("user", "u-1", "reborn"));
      assert.equal(again.status, "created");
      assert.equal((again as { key: StoredKey }).key.keyVersion, 3);
      assert.equal(found(await h.store.getActiveKey(h.base, "user", "u-1")).keyVersion, 3);
      assert.equal((await h.store.getKey(h.base, "user", "u-1", 1)).status, "destroyed");
      await h.store.destroyKeys(h.base, "user", "u-1");
      const tombstone = await h.store.getKey(h.base, "user", "u-1", 3);
      assert.equal(tombstone.status, "destroyed");
      assert.equal(
        (tombstone as Extract<KeyLookup, { status: "destroyed" }>).tombstone.maxKeyVersion,
        3,
      );
    });

    scenario("rotateKey adds the next version and revokes every other", async (h) => {
      await h.store.createKey(h.base, newKey("s", "i"));
      const second = await h.store.rotateKey(h.base, newKey("s", "i", "v2", "sys-key-2"));
      assert.equal(second.status, "rotated");
      const key = (second as { key: StoredKey }).key;
      assert.equal(key.keyVersion, 2);
      assert.equal(key.systemKeyId, "sys-key-2");
      assert.ok(found(await h.store.getKey(h.base, "s", "i", 1)).revokedAt instanceof Date);
      assert.equal(found(await h.store.getActiveKey(h.base, "s", "i")).keyVersion, 2);
    });

    scenario("rotateKey without a key is missing, after destroy is destroyed", async (h) => {
      assert.deepEqual(await h.store.rotateKey(h.base, newKey("s", "none")), { status: "missing" });
      await h.store.createKey(h.base, newKey("s", "gone"));
      await h.store.destroyKeys(h.base, "s", "gone");
      assert.equal((await h.store.rotateKey(h.base, newKey("s", "gone"))).status, "destroyed");
      assert.equal((await h.store.getActiveKey(h.base, "s", "gone")).status, "destroyed");
    });

    scenario("concurrent createKey on one scope id: one created, the rest exist", async (h) => {
      const results = await Promise.all(
        [1, 2, 3, 4].map((n) => h.store.createKey(h.base, newKey("race", "r-1", `dek-${n}`))),
      );
      assert.equal(results.filter((r) => r.status === "created").length, 1);
      assert.equal(results.filter((r) => r.status === "exists").length, 3);
      assert.equal(found(await h.store.getActiveKey(h.base, "race", "r-1")).keyVersion, 1);
      assert.deepEqual((await h.store.getKey(h.base, "race", "r-1", 2)).status, "missing");
    });

    scenario("concurrent rotations: distinct versions, one active", async (h) => {
      await h.store.createKey(h.base, newKey("race", "r-2"));
      const results = await Promise.all(
        [1, 2, 3, 4, 5].map(() => h.store.rotateKey(h.base, newKey("race", "r-2"))),
      );
      const versions = results.map((r) => (r as { key: StoredKey }).key.keyVersion).sort();
      assert.deepEqual(versions, [2, 3, 4, 5, 6]);
      for (let v = 1; v <= 5; v++) {
        assert.ok(found(await h.store.getKey(h.base, "race", "r-2", v)).revokedAt instanceof Date);
      }
      assert.equal(found(await h.store.getActiveKey(h.base, "race", "r-2")).keyVersion, 6);
      assert.equal(found(await h.store.getKey(h.base, "race", "r-2", 6)).revokedAt, null);
    });

    scenario("56. concurrent creates on different scope ids all succeed", async (h) => {
      const ids = Array.from({ length: 20 }, (_, i) => `id-${i}`);
      const results = await Promise.all(
        ids.map((id) => h.store.createKey(h.base, newKey("many", id))),
      );
      assert.ok(results.every((r) => r.status === "created"));
      for (const id of ids) {
        assert.equal(found(await h.store.getActiveKey(h.base, "many", id)).keyVersion, 1);
      }
    });

    scenario("50. createKey in a committed transaction is visible afterwards", async (h) => {
      await h.transaction((tx) => h.store.createKey(tx, newKey("tx", "commit")));
      assert.equal(found(await h.store.getActiveKey(h.base, "tx", "commit")).keyVersion, 1);
    });

    scenario("51. createKey in a rolled-back transaction leaves nothing", async (h) => {
      await assert.rejects(
        h.transaction(async (tx) => {
          await h.store.createKey(tx, newKey("tx", "rollback"));
          assert.equal(found(await h.store.getActiveKey(tx, "tx", "rollback")).keyVersion, 1);
          throw new Error("roll back");
        }),
        /roll back/,
      );
      assert.deepEqual(await h.store.getActiveKey(h.base, "tx", "rollback"), { status: "missing" });
    });

    scenario("52. rotate + revoke rolled back: v1 still active", async (h) => {
      await h.store.createKey(h.base, newKey("tx", "rotate"));
      await assert.rejects(
        h.transaction(async (tx) => {
          await h.store.rotateKey(tx, newKey("tx", "rotate"));
          await h.store.revokeKeys(tx, "tx", "rotate");
          throw new Error("roll back");
        }),
      );
      const active = found(await h.store.getActiveKey(h.base, "tx", "rotate"));
      assert.equal(active.keyVersion, 1);
      assert.equal(active.revokedAt, null);
      assert.equal((await h.store.getKey(h.base, "tx", "rotate", 2)).status, "missing");
    });

    scenario("destroyKeys rolled back with the caller's transaction keeps the key", async (h) => {
      await h.store.createKey(h.base, newKey("tx", "destroy"));
      await assert.rejects(
        h.transaction(async (tx) => {
          assert.equal(await h.store.destroyKeys(tx, "tx", "destroy"), 1);
          throw new Error("roll back");
        }),
      );
      assert.equal(found(await h.store.getActiveKey(h.base, "tx", "destroy")).keyVersion, 1);
    });

    scenario("reads are committed outside transactions only", async (h) => {
      assert.equal(h.store.readsCommitted(h.base), true);
      await h.transaction((tx) => {
        assert.equal(h.store.readsCommitted(tx), false);
        return Promise.resolve();
      });
    });

    scenario("lookups hand out copies", async (h) => {
      await h.store.createKey(h.base, newKey("copy", "c", "abc"));
      found(await h.store.getActiveKey(h.base, "copy", "c")).encryptedDek.fill(0);
      assert.deepEqual(
        found(await h.store.getActiveKey(h.base, "copy", "c")).encryptedDek,
        text("abc"),
      );
    });

    scenario("58. rewrap moves active and revoked rows, leaves others byte for byte", async (h) => {
      await h.seed({
        scope: "secret",
        scopeId: "stripe",
        keyVersion: 1,
        encryptedDek: text("s1"),
        systemKeyId: "old",
        revoked: true,
      });
      await h.seed({
        scope: "secret",
        scopeId: "stripe",
        keyVersion: 2,
        encryptedDek: text("s2"),
        systemKeyId: "old",
      });
      await h.seed({
        scope: "pii",
        scopeId: "user-1",
        keyVersion: 1,
        encryptedDek: text("p1"),
        systemKeyId: "old",
      });
      await h.seed({
        scope: "secret",
        scopeId: "already-new",
        keyVersion: 1,
        encryptedDek: text("n1"),
        systemKeyId: "new",
      });
      const progress: number[] = [];
      const result = await rewrapThrough(
        h.store,
        h.base,
        fakeRewrap("old", "new", { onProgress: (p) => void progress.push(p.rewrappedRows) }),
      );
      assert.equal(result.matchedRows, 3);
      assert.equal(result.rewrappedRows, 3);
      assert.equal(result.skippedRows, 0);
      assert.equal(result.failedRows, 0);
      assert.equal(result.remainingRows, 0);
      assert.equal(result.batches, 3);
      assert.deepEqual(progress, [1, 2, 3]);
      const s1 = found(await h.store.getKey(h.base, "secret", "stripe", 1));
      assert.equal(s1.systemKeyId, "new");
      assert.deepEqual(s1.encryptedDek, text("1s"));
      assert.ok(s1.revokedAt instanceof Date, "revocation is kept");
      assert.deepEqual(
        found(await h.store.getKey(h.base, "pii", "user-1", 1)).encryptedDek,
        text("1p"),
      );
      const untouched = found(await h.store.getKey(h.base, "secret", "already-new", 1));
      assert.deepEqual(untouched.encryptedDek, text("n1"));
    });

    scenario("59. a dry run writes nothing", async (h) => {
      await h.seed({
        scope: "s",
        scopeId: "i",
        keyVersion: 1,
        encryptedDek: text("x1"),
        systemKeyId: "old",
      });
      const result = await rewrapThrough(
        h.store,
        h.base,
        fakeRewrap("old", "new", { dryRun: true }),
      );
      assert.deepEqual(
        { ...result, failures: result.failures.length },
        {
          matchedRows: 1,
          rewrappedRows: 0,
          skippedRows: 0,
          failedRows: 0,
          remainingRows: 1,
          batches: 0,
          dryRun: true,
          failures: 0,
        },
      );
      const row = found(await h.store.getKey(h.base, "s", "i", 1));
      assert.equal(row.systemKeyId, "old");
      assert.deepEqual(row.encryptedDek, text("x1"));
    });

    scenario("60. a second rewrap finds nothing to do", async (h) => {
      await h.seed({
        scope: "s",
        scopeId: "i",
        keyVersion: 1,
        encryptedDek: text("x1"),
        systemKeyId: "old",
      });
      const first = await rewrapThrough(
        h.store,
        h.base,
        fakeRewrap("old", "new", { batchSize: 10 }),
      );
      assert.equal(first.rewrappedRows, 1);
      assert.equal(first.remainingRows, 0);
      const second = await rewrapThrough(
        h.store,
        h.base,
        fakeRewrap("old", "new", { batchSize: 10 }),
      );
      assert.equal(second.matchedRows, 0);
      assert.equal(second.rewrappedRows, 0);
      assert.equal(second.remainingRows, 0);
      assert.equal(second.batches, 0);
    });

    scenario("rewrap reports a bad row, skips it and goes on", async (h) => {
      for (let i = 0; i < 7; i++) {
        await h.seed({
          scope: "s",
          scopeId: `id-${i}`,
          keyVersion: 1,
          encryptedDek: text(i === 3 ? "bad" : `k${i}`),
          systemKeyId: "old",
        });
      }
      const reported: RewrapFailure[] = [];
      const result = await rewrapThrough(
        h.store,
        h.base,
        fakeRewrap("old", "new", { batchSize: 2, onRowError: (f) => void reported.push(f) }),
      );
      assert.equal(result.matchedRows, 7);
      assert.equal(result.rewrappedRows, 6);
      assert.equal(result.failedRows, 1);
      assert.equal(result.remainingRows, 1);
      assert.equal(result.batches, 4);
      assert.deepEqual(result.failures.map((f) => [f.scopeId, f.keyVersion, f.error.message]), [
        ["id-3", 1, "corrupt row"],
      ]);
      assert.equal(reported.length, 1);
      assert.equal(found(await h.store.getKey(h.base, "s", "id-3", 1)).systemKeyId, "old");
      assert.equal(found(await h.store.getKey(h.base, "s", "id-4", 1)).systemKeyId, "new");
    });

    scenario(
      "rewrapBatch reads in key order after the cursor and writes only unmoved rows",
      async (h) => {
        for (
          const [scopeId, systemKeyId] of [["a", "old"], ["b", "old"], ["c", "other"], ["d", "old"]]
        ) {
          await h.seed({
            scope: "s",
            scopeId,
            keyVersion: 1,
            encryptedDek: text(scopeId),
            systemKeyId,
          });
        }
        const seen: string[][] = [];
        const first = await h.store.rewrapBatch(
          h.base,
          { fromSystemKeyId: "old", after: null, limit: 2, dryRun: false },
          (keys) => {
            seen.push(keys.map((k) => k.scopeId));
            // One real update, and one for a row under another system key, which must not be written.
            return [
              { ...keys[0], encryptedDek: text("A"), systemKeyId: "new" },
              { ...keys[0], scopeId: "c", encryptedDek: text("C"), systemKeyId: "new" },
            ];
          },
        );
        assert.deepEqual(first, { read: 2, written: 1 });
        const second = await h.store.rewrapBatch(
          h.base,
          {
            fromSystemKeyId: "old",
            after: { scope: "s", scopeId: "b", keyVersion: 1 },
            limit: 2,
            dryRun: true,
          },
          (keys) => {
            seen.push(keys.map((k) => k.scopeId));
            return keys.map((k) => ({ ...k, encryptedDek: text("X"), systemKeyId: "new" }));
          },
        );
        assert.deepEqual(second, { read: 1, written: 0 }, "a dry run writes nothing");
        assert.deepEqual(seen, [["a", "b"], ["d"]]);
        const a = found(await h.store.getKey(h.base, "s", "a", 1));
        assert.deepEqual([a.systemKeyId, a.encryptedDek], ["new", text("A")]);
        const c = found(await h.store.getKey(h.base, "s", "c", 1));
        assert.deepEqual([c.systemKeyId, c.encryptedDek], ["other", text("c")]);
        assert.equal(found(await h.store.getKey(h.base, "s", "d", 1)).systemKeyId, "old");
        assert.equal(await h.store.countKeys(h.base, "old"), 2);
        assert.equal(await h.store.countKeys(h.base, "new"), 1);
        assert.equal(await h.store.countKeys(h.base, "none"), 0);
      },
    );

    scenario("a failing create in a transaction is a typed result, not an abort", async (h) => {
      await h.store.createKey(h.base, newKey("t", "x"));
      await h.transaction(async (tx) => {
        const again = await h.store.createKey(tx, newKey("t", "x"));
        assert.equal(again.status, "exists");
        // The transaction is still usable after the refusal.
        assert.equal(found(await h.store.getActiveKey(tx, "t", "x")).keyVersion, 1);
      });
    });
  });
}
