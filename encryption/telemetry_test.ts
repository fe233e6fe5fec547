// OpenTelemetry of the encryption component on PostgreSQL with the real SDK: spans of the key
// operations and of encryptions/decryptions that fetch their key from the store (none for DEK
// cache hits), errors recorded, and no key material, plaintext or ciphertext in any attribute.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { otel } from "../internal/otel_support_test.ts";
import { testDatabase } from "../testing/test_database.ts";
import {
  createEncryption,
  InvalidInputError,
  KeyDestroyedError,
  KeyManager,
  keyringFromMap,
  migrate,
  PostgresKeyStore,
} from "./mod.ts";

const T = { timeout: 60_000 };
const SCOPE = "eventsalsa.encryption.scope";
const SCOPE_ID = "eventsalsa.encryption.scope_id";

describe("encryption telemetry", () => {
  it("key operations and key fetches are spans naming the subject, never secrets", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const kek = crypto.getRandomValues(new Uint8Array(32));
      const encryption = createEncryption({
        keyring: keyringFromMap({ k1: kek }, "k1"),
        store: new PostgresKeyStore(),
        cache: true,
        telemetry: o.telemetry,
      });
      const pii = encryption.pii("user-pii");
      const { value, second } = await o.tracer.startActiveSpan("register", async (parent) => {
        try {
          await encryption.keyManager.createKey(db.sql, "user-pii", "u-1");
          await encryption.keyManager.rotateKey(db.sql, "user-pii", "u-1");
          const value = await pii.encrypt(db.sql, "u-1", "alice@example.com");
          // Not cached either: the cache refuses a subject for its ttl after an invalidation
          // (the rotation).
          const second = await pii.encrypt(db.sql, "u-1", "bob@example.com");
          return { value, second };
        } finally {
          parent.end();
        }
      });
      encryption.cache!.clear();
      assert.equal(await pii.decrypt(db.sql, "u-1", value), "alice@example.com");
      assert.equal(await pii.decrypt(db.sql, "u-1", second), "bob@example.com", "cached");
      // Rotation revoked version 1 already: nothing left to revoke.
      assert.equal(await encryption.keyManager.revokeKeys(db.sql, "user-pii", "u-1"), 0);
      assert.equal(await encryption.keyManager.destroyKeys(db.sql, "user-pii", "u-1"), 2);
      await assert.rejects(pii.decrypt(db.sql, "u-1", value), KeyDestroyedError);

      const [parent] = o.spans("register");
      const subject = { [SCOPE]: "user-pii", [SCOPE_ID]: "u-1" };
      const [create] = o.spans("eventsalsa.encryption.create_key");
      assert.deepEqual(create.attributes, { ...subject, "eventsalsa.encryption.key_version": 1 });
      assert.equal(create.parentSpanContext?.spanId, parent.spanContext().spanId);
      const [rotate] = o.spans("eventsalsa.encryption.rotate_key");
      assert.deepEqual(rotate.attributes, { ...subject, "eventsalsa.encryption.key_version": 2 });
      const [revoke] = o.spans("eventsalsa.encryption.revoke_keys");
      assert.deepEqual(revoke.attributes, {
        ...subject,
        "eventsalsa.encryption.revoked_versions": 0,
      });
      const [destroy] = o.spans("eventsalsa.encryption.destroy_keys");
      assert.deepEqual(destroy.attributes, {
        ...subject,
        "eventsalsa.encryption.destroyed_versions": 2,
      });

      const fetches = o.spans("eventsalsa.encryption.fetch_key");
      assert.deepEqual(
        fetches.map((s) => [s.attributes["eventsalsa.encryption.purpose"], s.status.code]),
        [["encrypt", 0], ["encrypt", 0], ["decrypt", 0], ["decrypt", 2]],
        "one fetch per cache miss; the second decryption after clear() was a cache hit",
      );
      assert.deepEqual(fetches[0].attributes, {
        ...subject,
        "eventsalsa.encryption.purpose": "encrypt",
        "eventsalsa.encryption.key_version": 2,
      });
      assert.equal(fetches[0].parentSpanContext?.spanId, parent.spanContext().spanId);
      const failed = fetches[3];
      assert.equal(failed.attributes["error.type"], "KeyDestroyedError");
      assert.equal(failed.attributes["eventsalsa.encryption.key_version"], 2);
      assert.equal(failed.events[0]?.name, "exception");

      // Nothing secret anywhere: no plaintext, ciphertext, or key bytes in any span.
      const kekText = [Array.from(kek).join(","), btoa(String.fromCharCode(...kek))];
      const dump = JSON.stringify(
        o.spans().map((s) => ({ a: s.attributes, e: s.events, m: s.status.message })),
      );
      for (const secret of ["alice@example.com", "bob@example.com", value, second, ...kekText]) {
        assert.ok(!dump.includes(secret), `no ${secret.slice(0, 12)}… in telemetry`);
      }
    } finally {
      await o.close();
      await db.close();
    }
  });

  it("rewrap is a span with its counts; a bad telemetry option is rejected", T, async () => {
    const db = await testDatabase();
    const o = otel();
    try {
      await migrate(db.sql);
      const keyring = keyringFromMap({
        old: crypto.getRandomValues(new Uint8Array(32)),
        new: crypto.getRandomValues(new Uint8Array(32)),
      }, "old");
      const store = new PostgresKeyStore();
      const plain = new KeyManager({ keyring, store });
      await plain.createKey(db.sql, "tenant", "a");
      await plain.createKey(db.sql, "tenant", "b");
      assert.equal(o.spans().length, 0, "a manager without telemetry makes no spans");
      const traced = new KeyManager({ keyring, store, telemetry: o.telemetry });
      const result = await traced.rewrapSystemKeys(db.sql, { from: "old", to: "new" });
      assert.equal(result.rewrappedRows, 2);
      const [span] = o.spans("eventsalsa.encryption.rewrap");
      assert.deepEqual(span.attributes, {
        "eventsalsa.encryption.from_system_key": "old",
        "eventsalsa.encryption.to_system_key": "new",
        "eventsalsa.encryption.dry_run": false,
        "eventsalsa.encryption.rewrapped_rows": 2,
        "eventsalsa.encryption.failed_rows": 0,
        "eventsalsa.encryption.remaining_rows": 0,
      });
      assert.throws(
        () => new KeyManager({ keyring, store, telemetry: { tracer: {} as never } }),
        InvalidInputError,
      );
      assert.throws(
        () => createEncryption({ keyring, store, telemetry: { meter: 1 as never } }),
        InvalidInputError,
      );
    } finally {
      await o.close();
      await db.close();
    }
  });
});
