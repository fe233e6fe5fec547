import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../cli.ts";
import { captureIo } from "./capture_io.ts";
import { testDatabase } from "../testing/test_database.ts";
import { any, PostgresStore } from "../store/mod.ts";
import { PoisonEventError, skipPoisonEvents, status, Worker } from "../worker/mod.ts";
import { readEnv } from "../internal/env.ts";

// EVENTSALSA_TEST_PGBOUNCER_URL (set by .ci/run): every scenario once more with DATABASE_URL on a
// real PgBouncer in transaction pooling mode (docs/pgbouncer.md).
const PGBOUNCER = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
const TARGETS = [
  { via: "", pooler: undefined },
  ...(PGBOUNCER ? [{ via: " (through PgBouncer)", pooler: PGBOUNCER }] : []),
];

for (const { via, pooler } of TARGETS) {
  describe(`eventsalsa CLI on a worker's tables${via}`, () => {
    it("status, dead-letters list and retry against a real worker run", async (t) => {
      const db = await testDatabase({ pooler });
      try {
        if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
        const env = { DATABASE_URL: db.schemaUrl };
        const run = async (args: string[]) => {
          const io = captureIo(env);
          const code = await runCli(args, io);
          assert.equal(code, 0, `${args.join(" ")}: ${io.errors.join("\n")}`);
          return io.lines.join("\n");
        };
        assert.match(
          await run(["migrate", "--apply"]),
          /^store \(events\): applied v1\nworker \(consumer_checkpoints\): applied v1\n/,
        );
        await db.sql`CREATE TABLE redriven (position bigint PRIMARY KEY)`;

        const store = new PostgresStore();
        for (const kind of ["Good", "Poison", "Good"]) {
          await store.append(db.sql, any(), [{
            aggregateType: "Thing",
            aggregateId: kind,
            eventType: kind,
            payload: new Uint8Array([1]),
          }]);
        }
        const worker = new Worker(db.sql, store, [{
          name: "things",
          handle(_tx, event) {
            if (event.eventType === "Poison") throw new PoisonEventError("cannot digest this one");
            return Promise.resolve();
          },
        }], {
          pollInterval: 50,
          onPoison: skipPoisonEvents(),
          workerId: "cli-test-worker",
          // Behind a transaction pooler: a lease instead of a session lock, LISTEN past the pooler.
          ...(pooler ? { leaderStrategy: "lease" as const, notifyConnection: db.directUrl } : {}),
        });
        const controller = new AbortController();
        const running = worker.start(controller.signal);
        const deadline = Date.now() + 15_000;
        while ((await status(db.sql)).consumers.find((c) => c.name === "things")?.lag !== 0) {
          if (Date.now() > deadline) throw new Error("the worker did not catch up");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        controller.abort();
        await running;

        const human = await run(["status"]);
        assert.match(human, /latest position 3; 0 worker\(s\), 1 consumer\(s\); leader none/);
        assert.match(human, /things\s+\S+\s+3\s+0\s+0 blocking, 1 skipped/);
        const json = JSON.parse(await run(["status", "--json"]));
        const things = json.consumers.find((c: { name: string }) => c.name === "things");
        assert.equal(things.checkpoint, 3);
        assert.equal(things.deadLetters.skipped, 1);
        assert.equal(json.leader, null); // the worker stopped: it gave up leadership and its row

        const listed = await run(["dead-letters", "list"]);
        assert.match(listed, /things\s+2\s+skipped\s+Poison\s+Thing\/Poison\s+1\s+.*cannot digest/);
        const letters = JSON.parse(
          await run(["dead-letters", "list", "--json", "--consumer", "things"]),
        );
        assert.equal(letters.length, 1);
        assert.equal(letters[0].globalPosition, 2);

        // Redrive through a consumer module the operator points at.
        const dir = mkdtempSync(join(tmpdir(), "eventsalsa-cli-"));
        const module = join(dir, "consumers.ts");
        writeFileSync(
          module,
          `export const consumers = [{ name: "things", async handle(tx, event) {
          await tx\`INSERT INTO redriven (position) VALUES (\${event.globalPosition})\`;
        } }];\n`,
        );
        const retried = await run([
          "dead-letters",
          "retry",
          "--consumer",
          "things",
          "--position",
          "2",
          "--module",
          module,
        ]);
        assert.match(retried, /redriven: things handled Poison at position 2/);
        const [[position]] = await db.sql`SELECT position::int FROM redriven`.values();
        assert.equal(position, 2);
        assert.match(await run(["dead-letters", "list"]), /no open dead letters/);
        assert.match(await run(["dead-letters", "list", "--all"]), /things\s+2\s+redriven/);

        const wrong = captureIo(env);
        assert.equal(
          await runCli([
            "dead-letters",
            "retry",
            "--consumer",
            "nope",
            "--position",
            "2",
            "--module",
            module,
          ], wrong),
          2,
        );
        assert.match(wrong.errors[0], /exports no consumer named "nope" \(it exports: things\)/);
      } finally {
        await db.close();
      }
    });

    it("status --watch refreshes until interrupted", async (t) => {
      const db = await testDatabase({ pooler });
      try {
        if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
        const env = { DATABASE_URL: db.schemaUrl };
        assert.equal(await runCli(["migrate", "--apply"], captureIo(env)), 0);
        const controller = new AbortController();
        const io = { ...captureIo(env), signal: controller.signal };
        let refreshes = 0;
        const out = io.out;
        io.out = (line: string) => {
          if (line.startsWith("latest position")) {
            refreshes++;
            if (refreshes === 2) controller.abort();
          }
          out(line);
        };
        assert.equal(await runCli(["status", "--watch", "--interval", "1"], io), 0);
        assert.equal(refreshes, 2);
      } finally {
        await db.close();
      }
    });
  });
}
