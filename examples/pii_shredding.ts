/**
 * Personal data in an append-only log, and the right to erasure: each user's PII is encrypted
 * under the user's own data key; deleting the user appends `UserDeleted` and destroys the key in
 * one transaction. The events stay; the PII in them can never be read again.
 *
 *   deno run -A examples/pii_shredding.ts
 */
import { exact, migrate as migrateStore, noStream, PostgresStore } from "../store/mod.ts";
import {
  createEncryption,
  KeyDestroyedError,
  keyringFromMap,
  migrate as migrateEncryption,
  PostgresKeyStore,
} from "../encryption/mod.ts";
import { connect } from "./connect.ts";

const db = await connect();
try {
  await migrateStore(db.sql);
  await migrateEncryption(db.sql);
  const store = new PostgresStore();
  const encryption = createEncryption({
    // Production: keyringFromFiles({ keyPaths: { "kek-2026": "/run/secrets/kek.b64" }, activeKeyId: "kek-2026" })
    keyring: keyringFromMap({ "kek-2026": crypto.getRandomValues(new Uint8Array(32)) }, "kek-2026"),
    store: new PostgresKeyStore(),
  });
  const pii = encryption.pii("user-pii");
  const userId = `user-${crypto.randomUUID().slice(0, 8)}`;
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

  await db.sql.begin(async (tx) => {
    await encryption.keyManager.createKey(tx, "user-pii", userId);
    await store.append(tx, noStream(), [{
      aggregateType: "User",
      aggregateId: userId,
      eventType: "UserRegistered",
      payload: json({ email: await pii.encrypt(tx, userId, "ada@example.com") }),
    }]);
  });
  const read = async () => {
    const [registered] = (await store.readStream(db.sql, "User", userId)).events;
    const { email } = JSON.parse(new TextDecoder().decode(registered.payload));
    return await pii.decrypt(db.sql, userId, email);
  };
  console.log(`before deletion: ${await read()}`);

  // Key rotation never makes old values unreadable: the version travels inside each value.
  await encryption.keyManager.rotateKey(db.sql, "user-pii", userId);
  console.log(`after a key rotation: ${await read()}`);

  await db.sql.begin(async (tx) => {
    await store.append(tx, exact(1), [{
      aggregateType: "User",
      aggregateId: userId,
      eventType: "UserDeleted",
      payload: json({ reason: "right to erasure" }),
    }]);
    await encryption.keyManager.destroyKeys(tx, "user-pii", userId);
  });
  try {
    await read();
    throw new Error("the shredded e-mail should not decrypt");
  } catch (error) {
    if (!(error instanceof KeyDestroyedError)) throw error;
    const events = (await store.readStream(db.sql, "User", userId)).events.map((e) => e.eventType);
    console.log(`after deletion: ${error.name}; the events remain: ${events.join(", ")}`);
  }
} finally {
  await db.close();
}
