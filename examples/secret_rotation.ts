/**
 * Secrets under rotating keys: an integration's API token is encrypted under the scope's current
 * key version; after a rotation new values use the new version while old ones stay readable, until
 * the old versions are revoked and destroyed.
 *
 *   deno run -A examples/secret_rotation.ts
 */
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
  await migrateEncryption(db.sql);
  const encryption = createEncryption({
    keyring: keyringFromMap({ "kek-1": crypto.getRandomValues(new Uint8Array(32)) }, "kek-1"),
    store: new PostgresKeyStore(),
  });
  const { keyManager } = encryption;
  const secrets = encryption.secrets("integration"); // the scope, fixed like pii("user-pii")
  const tenant = `tenant-${crypto.randomUUID().slice(0, 8)}`;
  await keyManager.createKey(db.sql, "integration", tenant);
  const first = await secrets.encrypt(db.sql, tenant, "sk_live_first");
  await keyManager.rotateKey(db.sql, "integration", tenant);
  const second = await secrets.encrypt(db.sql, tenant, "sk_live_second");
  console.log(`first token under key v${first.keyVersion}, second under v${second.keyVersion}`);
  console.log(
    `both readable: ${await secrets.decrypt(db.sql, tenant, first)}, ` +
      `${await secrets.decrypt(db.sql, tenant, second)}`,
  );
  const active = await keyManager.activeKeyVersion(db.sql, "integration", tenant);
  console.log(`active version: ${active}`);

  // Retiring the tenant: revoke (no new encryptions) and destroy (nothing decrypts any more).
  await keyManager.revokeKeys(db.sql, "integration", tenant);
  await keyManager.destroyKeys(db.sql, "integration", tenant);
  await secrets.decrypt(db.sql, tenant, first).then(
    () => {
      throw new Error("a destroyed key must not decrypt");
    },
    (error) => {
      if (!(error instanceof KeyDestroyedError)) throw error;
      console.log(`after revoke and destroy: ${error.name}`);
    },
  );
} finally {
  await db.close();
}
