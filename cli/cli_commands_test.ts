/**
 * The CLI as a real child process: help and version, `status --watch` into a pipe, unknown
 * consumers, the rewrap summary, schema versions. The scenarios that talk to PostgreSQL run once
 * more through PgBouncer when EVENTSALSA_TEST_PGBOUNCER_URL is set (.ci/run sets it).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runCli } from "../cli.ts";
import { type Finished, runCliChild } from "./cli_child_support_test.ts";
import { captureIo } from "./capture_io.ts";
import { createEncryption, keyringFromMap, PostgresKeyStore } from "../encryption/mod.ts";
import { readEnv } from "../internal/env.ts";
import { applyMigration, ddlChecksum } from "../internal/migration.ts";
import { migrationSql as storeDdl } from "../store/migration.ts";
import { migrationSql as workerDdl } from "../worker/postgres/migration.ts";
import { testDatabase } from "../testing/test_database.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const T = { timeout: 60_000 };

const PGBOUNCER = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
const TARGETS = [
  { via: "", pooler: undefined },
  ...(PGBOUNCER ? [{ via: " (through PgBouncer)", pooler: PGBOUNCER }] : []),
];

const cli = runCliChild;

function context(run: Finished): string {
  return `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
}

describe("eventsalsa CLI: help and version", () => {
  it("every command and subcommand answers --help / -h with its usage and exit 0", T, async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--help"], /^usage: eventsalsa <command>/],
      [["-h"], /^usage: eventsalsa <command>/],
      [["help"], /^usage: eventsalsa <command>/],
      [["help", "status"], /^eventsalsa status \[--json\]/],
      [["migrate", "--help"], /^eventsalsa migrate \[--apply \| --all\]/],
      [["migrate", "--apply", "-h"], /^eventsalsa migrate /],
      [["status", "--help"], /^eventsalsa status /],
      [["status", "--watch", "--help"], /^eventsalsa status /],
      [["status", "--check", "--help"], /^eventsalsa status /],
      [["consumers", "--help"], /^eventsalsa consumers list /],
      [["consumers", "reset", "--help"], /^eventsalsa consumers list /],
      [["consumers", "rebuild", "view", "-h"], /^eventsalsa consumers list /],
      [["help", "consumers"], /^eventsalsa consumers list /],
      [["dead-letters", "--help"], /^eventsalsa dead-letters list /],
      [["dead-letters", "list", "--help"], /^eventsalsa dead-letters list /],
      [["dead-letters", "retry", "-h"], /^eventsalsa dead-letters list /],
      [["keys", "--help"], /^eventsalsa keys rewrap /],
      [["keys", "rewrap", "--help"], /^eventsalsa keys rewrap /],
      [["keys", "rewrap", "--from", "a", "--help"], /^eventsalsa keys rewrap /],
      [["dashboard", "--help"], /^eventsalsa dashboard \[--port 8080\]/],
      [["dashboard", "--allow-actions", "-h"], /^eventsalsa dashboard /],
    ];
    // No DATABASE_URL: help never connects.
    const runs = await Promise.all(cases.map(([args]) => cli(args)));
    runs.forEach((run, i) => {
      const what = `${cases[i][0].join(" ")}: ${context(run)}`;
      assert.equal(run.code, 0, what);
      assert.equal(run.stderr, "", what);
      assert.match(run.stdout, cases[i][1], what);
    });
  });

  it("--version prints the version of deno.json", T, async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
    for (const args of [["--version"], ["version"]]) {
      const run = await cli(args);
      assert.equal(run.code, 0, context(run));
      assert.equal(run.stdout, `eventsalsa ${version}\n`, context(run));
    }
  });

  it("a bad flag is still a usage error", T, async () => {
    const run = await cli(["status", "--bogus"]);
    assert.equal(run.code, 2, context(run));
    assert.match(run.stderr, /^eventsalsa status: Unknown option '--bogus'/);
  });
});

for (const { via, pooler } of TARGETS) {
  describe(`eventsalsa CLI against PostgreSQL${via}`, () => {
    it("status --watch into a pipe: plain snapshots separated by a blank line", T, async (t) => {
      const db = await testDatabase({ pooler });
      try {
        if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
        const env = { DATABASE_URL: db.schemaUrl };
        assert.equal(await runCli(["migrate", "--apply"], captureIo(env)), 0);
        const snapshots = (text: string) => text.split("latest position").length - 1;
        const run = await cli(
          ["status", "--watch", "--interval", "1"],
          env,
          (stdout) => snapshots(stdout) >= 2 && stdout.endsWith("\n"),
        );
        assert.equal(run.code, 0, context(run));
        assert.ok(!run.stdout.includes("\x1b"), `no escape codes in a pipe: ${context(run)}`);
        const parts = run.stdout.trimEnd().split(/\n\n(?=\d{4}-\d\d-\d\dT)/);
        assert.ok(parts.length >= 2, context(run));
        for (const part of parts) {
          assert.match(part, /^\d{4}-\d\d-\d\dT[\d:.]+Z\nschema: up to date \(store v1/);
          assert.match(part, /\nlatest position 0; 0 worker\(s\)/);
        }

        // On a terminal the screen is cleared before each snapshot.
        const controller = new AbortController();
        const io = { ...captureIo(env), signal: controller.signal, isTerminal: true };
        const out = io.out;
        io.out = (line: string) => {
          out(line);
          if (line.startsWith("latest position")) controller.abort();
        };
        assert.equal(await runCli(["status", "--watch"], io), 0);
        assert.ok(io.lines[0].startsWith("\x1b[2J\x1b[H"), JSON.stringify(io.lines[0]));
      } finally {
        await db.close();
      }
    });

    it(
      "dead-letters list --consumer with an unknown name: no such consumer, exit 2",
      T,
      async (t) => {
        const db = await testDatabase({ pooler });
        try {
          if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
          const env = { DATABASE_URL: db.schemaUrl };
          assert.equal(
            await runCli(["migrate", "--apply", "--only", "store,worker"], captureIo(env)),
            0,
          );
          let run = await cli(["dead-letters", "list", "--consumer", "typo"], env);
          assert.equal(run.code, 2, context(run));
          assert.equal(run.stdout, "");
          assert.equal(
            run.stderr,
            `eventsalsa dead-letters: no such consumer "typo" (no consumer has run against these ` +
              `tables)\n`,
          );
          await db.sql`INSERT INTO consumer_checkpoints (consumer_name, last_position)
          VALUES ('projections', 0), ('mailer', 0)`;
          run = await cli(["dead-letters", "list", "--consumer", "typo"], env);
          assert.equal(run.code, 2, context(run));
          assert.equal(
            run.stderr,
            `eventsalsa dead-letters: no such consumer "typo" (known: mailer, projections)\n`,
          );
          run = await cli(["dead-letters", "list", "--consumer", "mailer"], env);
          assert.equal(run.code, 0, context(run));
          assert.equal(run.stdout, "no open dead letters\n");
          run = await cli(["dead-letters", "list", "--consumer", "mailer", "--json"], env);
          assert.equal(run.stdout, "[]\n", context(run));
        } finally {
          await db.close();
        }
      },
    );

    it(
      "keys rewrap with a wrong key: failures summarised per kind; text and JSON agree on batches",
      T,
      async (t) => {
        const db = await testDatabase({ pooler });
        try {
          if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
          const oldKey = crypto.getRandomValues(new Uint8Array(32));
          const newKey = crypto.getRandomValues(new Uint8Array(32));
          const wrongKey = crypto.getRandomValues(new Uint8Array(32));
          const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
          const dir = mkdtempSync(join(tmpdir(), "eventsalsa-rewrap-"));
          const wrongFile = join(dir, "wrong.b64");
          writeFileSync(wrongFile, base64(wrongKey));
          const env = { DATABASE_URL: db.schemaUrl, NEW_KEK: base64(newKey) };
          assert.equal(
            await runCli(["migrate", "--apply", "--only", "encryption"], captureIo(env)),
            0,
          );
          const encryption = createEncryption({
            keyring: keyringFromMap({ old: oldKey }, "old"),
            store: new PostgresKeyStore(),
          });
          for (let i = 0; i < 7; i++) {
            await db.sql.begin((tx) => encryption.keyManager.createKey(tx, "user-pii", `u-${i}`));
          }
          const keys = [
            "keys",
            "rewrap",
            "--from",
            "old",
            "--to",
            "new",
            "--key-file",
            `old=${wrongFile}`,
            "--key-env",
            "new=NEW_KEK",
            "--dry-run",
            "--batch-size",
            "3",
          ];
          const text = await cli(keys, env);
          assert.equal(text.code, 1, context(text));
          assert.deepEqual(text.stdout.trimEnd().split("\n"), [
            "dry run batch 1: 3 matched, 0 rewrapped, 0 skipped, 3 failed",
            "dry run batch 2: 6 matched, 0 rewrapped, 0 skipped, 6 failed",
            "dry run batch 3: 7 matched, 0 rewrapped, 0 skipped, 7 failed",
            "dry run: 7 matched, 0 rewrapped, 0 skipped, 7 failed, 7 still under old, in 3 batch(es)",
          ]);
          // One line per kind of failure, not one per row.
          assert.equal(
            text.stderr,
            `failed 7 row(s): DecryptionError: wrapped key does not open under system key "old" ` +
              `(e.g. user-pii/u-0 v1, user-pii/u-1 v1, user-pii/u-2 v1 and 4 more)\n`,
          );
          const json = await cli([...keys, "--json"], env);
          assert.equal(json.code, 1, context(json));
          const result = JSON.parse(json.stdout);
          assert.equal(result.dryRun, true);
          assert.equal(result.batches, 3, "the same batches as the text's progress lines");
          assert.equal(result.failedRows, 7);
          assert.deepEqual(result.failureKinds, [{
            kind: `DecryptionError: wrapped key does not open under system key "old"`,
            count: 7,
            examples: ["user-pii/u-0 v1", "user-pii/u-1 v1", "user-pii/u-2 v1"],
          }]);
          assert.equal(json.stderr, "");
        } finally {
          await db.close();
        }
      },
    );

    it(
      "schema versions: status says when the schema is behind, migrate lists and applies the pending versions",
      T,
      async (t) => {
        const db = await testDatabase({ pooler });
        try {
          if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
          const env = { DATABASE_URL: db.schemaUrl };
          // A database migrated by a release that recorded no versions: the tables, no versions.
          await applyMigration(db.sql, storeDdl() + workerDdl());
          let run = await cli(["status"], env);
          assert.equal(run.code, 0, context(run));
          assert.match(
            run.stdout,
            /^schema BEHIND eventsalsa \d+\.\d+\.\d+: store \(events\) is at v0, expected v1 \(pending v1\); worker \(consumer_checkpoints\) is at v0, expected v1 \(pending v1\); run "eventsalsa migrate --apply" with the same table flags\n/,
          );
          run = await cli(["status", "--json"], env);
          const report = JSON.parse(run.stdout);
          assert.equal(report.schema.upToDate, false);
          assert.deepEqual(report.schema.components.map((c: { current: number }) => c.current), [
            0,
            0,
          ]);

          run = await cli(["migrate", "--only", "store,worker"], env);
          assert.equal(run.code, 0, context(run));
          assert.match(
            run.stdout,
            /\n-- pending: store v1 \(events\), worker v1 \(consumer_checkpoints\)\nBEGIN;\n/,
          );
          assert.match(run.stdout, /INSERT INTO "eventsalsa_schema_versions"/);

          run = await cli(["migrate", "--apply", "--only", "store,worker"], env);
          assert.equal(run.code, 0, context(run));
          assert.equal(
            run.stdout,
            "store (events): applied v1\nworker (consumer_checkpoints): applied v1\n",
          );
          const rows = await db.sql`SELECT component, target, version, checksum, applied_at
          FROM eventsalsa_schema_versions ORDER BY component`;
          assert.deepEqual(rows.map((r) => [r.component, r.target, r.version]), [
            ["store", "events", 1],
            ["worker", "consumer_checkpoints", 1],
          ]);
          assert.equal(rows[0].checksum, await ddlChecksum(storeDdl()));
          assert.ok(rows[0].applied_at instanceof Date);

          run = await cli(["status"], env);
          assert.match(
            run.stdout,
            /^schema: up to date \(store v1 \(events\), worker v1 \(consumer_checkpoints\)\)\n/,
          );
          run = await cli(["migrate", "--only", "store,worker"], env);
          assert.match(run.stdout, /\n-- nothing to apply\n$/, context(run));
          run = await cli(["migrate", "--apply", "--only", "store"], env);
          assert.equal(run.stdout, "store (events): up to date at v1\n", context(run));

          // A database migrated by a newer release.
          await db.sql`INSERT INTO eventsalsa_schema_versions
          (component, target, version, description, checksum) VALUES ('worker',
          'consumer_checkpoints', 2, 'from the future', 'x')`;
          run = await cli(["status"], env);
          assert.match(
            run.stdout,
            /^schema AHEAD of eventsalsa [\d.]+: worker \(consumer_checkpoints\) is at v2, expected v1; upgrade this library\n/,
          );

          // Custom, schema-qualified names: the versions table lives beside the principal table.
          const schema = `${db.schema}_ledger`;
          const flags = ["--events-table", `${schema}.ledger`, "--heads-table", `${schema}.heads`];
          await db.sql.unsafe(`CREATE SCHEMA "${schema}"`);
          try {
            run = await cli(["migrate", "--apply", "--only", "store", ...flags], env);
            assert.equal(run.stdout, `store (${schema}.ledger): applied v1\n`, context(run));
            const [[target]] = await db.sql.unsafe(
              `SELECT target FROM "${schema}".eventsalsa_schema_versions`,
            ).values();
            assert.equal(target, `${schema}.ledger`);
            run = await cli(["status", "--events-table", `${schema}.ledger`], env);
            assert.match(run.stdout, new RegExp(`^schema AHEAD .*\\n`), context(run));
            assert.match(run.stdout, /latest position 0;/);
          } finally {
            await db.sql.unsafe(`DROP SCHEMA "${schema}" CASCADE`);
          }
        } finally {
          await db.close();
        }
      },
    );
  });
}
