import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../cli.ts";
import { captureIo } from "./capture_io.ts";
import { testDatabase } from "../testing/test_database.ts";
import { createEncryption, keyringFromMap, PostgresKeyStore } from "../encryption/mod.ts";
import { readEnv } from "../internal/env.ts";

const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

// EVENTSALSA_TEST_PGBOUNCER_URL (set by .ci/run): once more through a real PgBouncer in
// transaction pooling mode (docs/pgbouncer.md).
const PGBOUNCER = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
const TARGETS = [
  { via: "", pooler: undefined },
  ...(PGBOUNCER ? [{ via: " (through PgBouncer)", pooler: PGBOUNCER }] : []),
];

for (const { via, pooler } of TARGETS) {
  describe(`eventsalsa keys rewrap${via}`, () => {
    it("dry run, then rewrap every data key to the new system key; data stays readable", async (t) => {
      const db = await testDatabase({ pooler });
      try {
        // The CLI opens its own connection while the test's pool holds one.
        if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
        const oldKey = crypto.getRandomValues(new Uint8Array(32));
        const newKey = crypto.getRandomValues(new Uint8Array(32));
        const dir = mkdtempSync(join(tmpdir(), "eventsalsa-keys-"));
        const oldFile = join(dir, "old.b64");
        writeFileSync(oldFile, base64(oldKey) + "\n");
        const env = { DATABASE_URL: db.schemaUrl, NEW_KEK: base64(newKey) };
        const cli = async (args: string[], expected = 0) => {
          const io = captureIo(env);
          assert.equal(
            await runCli(args, io),
            expected,
            `${args.join(" ")}: ${io.errors.join("\n")}`,
          );
          return io;
        };
        await cli(["migrate", "--apply", "--only", "encryption"]);

        const before = createEncryption({
          keyring: keyringFromMap({ old: oldKey.slice(), new: newKey.slice() }, "old"),
          store: new PostgresKeyStore(),
        });
        const pii = before.pii("user-pii");
        const values: Array<[string, string]> = [];
        for (let i = 0; i < 5; i++) {
          const id = `u-${i}`;
          await db.sql.begin((tx) => before.keyManager.createKey(tx, "user-pii", id));
          values.push([id, await pii.encrypt(db.sql, id, `person ${i}`)]);
        }
        const keys = [
          "--from",
          "old",
          "--to",
          "new",
          "--key-file",
          `old=${oldFile}`,
          "--key-env",
          "new=NEW_KEK",
        ];

        const dry = await cli(["keys", "rewrap", ...keys, "--dry-run"]);
        assert.match(
          dry.lines.at(-1)!,
          /^dry run: 5 matched, 0 rewrapped, 0 skipped, 0 failed, 5 still under old, in 1 batch\(es\)$/,
        );
        const done = await cli(["keys", "rewrap", ...keys, "--batch-size", "2"]);
        assert.match(
          done.lines.at(-1)!,
          /^5 matched, 5 rewrapped, 0 skipped, 0 failed, 0 still under old, in 3 batch\(es\)$/,
        );
        assert.equal(done.lines.filter((l) => l.startsWith("batch ")).length, 3);

        // Only the new system key is needed now.
        const after = createEncryption({
          keyring: keyringFromMap({ new: newKey.slice() }, "new"),
          store: new PostgresKeyStore(),
        });
        for (const [id, value] of values) {
          assert.equal(
            await after.pii("user-pii").decrypt(db.sql, id, value),
            `person ${id.slice(2)}`,
          );
        }

        assert.match(
          (await cli(["keys", "rewrap", "--from", "old"], 2)).errors[0],
          /needs --from and --to/,
        );
        assert.match(
          (await cli(
            ["keys", "rewrap", "--from", "old", "--to", "new", "--key-env", "new=NEW_KEK"],
            2,
          )).errors[0],
          /system key "old" is not given/,
        );
        writeFileSync(oldFile, base64(new Uint8Array(16)));
        assert.equal((await cli(["keys", "rewrap", ...keys], 2)).errors.length, 1);
        assert.match((await cli(["keys", "spin"], 2)).errors[0], /keys needs "rewrap"/);
      } finally {
        await db.close();
      }
    });
  });
}
