/**
 * `consumers list|reset|rebuild|remove`, `dead-letters retry --all` and `status --check`: the CLI
 * as a child process against PostgreSQL, beside a real Worker running in this process. The
 * scenarios run once more through PgBouncer when EVENTSALSA_TEST_PGBOUNCER_URL is set.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { runCli } from "../cli.ts";
import { captureIo } from "./capture_io.ts";
import { type Finished, runCliChild } from "./cli_child_support_test.ts";
import { progressBar, progressLine, RateMeter, rebuildProgress } from "./progress.ts";
import { readEnv } from "../internal/env.ts";
import { any, PostgresStore } from "../store/mod.ts";
import {
  type Consumer,
  PoisonEventError,
  retryDeadLetters,
  skipPoisonEvents,
  waitForPosition,
  Worker,
  type WorkerOptions,
} from "../worker/mod.ts";
import { type TestDatabase, testDatabase } from "../testing/test_database.ts";

const T = { timeout: 120_000 };
const PGBOUNCER = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
const TARGETS = [
  { via: "", pooler: undefined },
  ...(PGBOUNCER ? [{ via: " (through PgBouncer)", pooler: PGBOUNCER }] : []),
];

const cli = runCliChild;
const payload = new Uint8Array([1]);

function context(run: Finished): string {
  return `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
}

function expectExit(run: Finished, code: number): Finished {
  assert.equal(run.code, code, context(run));
  return run;
}

/** `consumers rebuild NAME --module M --json` run to its end: the run and its JSON lines. */
async function rebuildJson(
  name: string,
  module: string,
  env: Record<string, string>,
  // deno-lint-ignore no-explicit-any
): Promise<{ run: Finished; ticks: any[] }> {
  const run = expectExit(
    await cli(["consumers", "rebuild", name, "--module", module, "--json"], env),
    0,
  );
  assert.equal(run.stderr, "", context(run));
  return { run, ticks: run.stdout.trimEnd().split("\n").map((line) => JSON.parse(line)) };
}

async function append(db: TestDatabase, store: PostgresStore, types: string[]): Promise<void> {
  for (let i = 0; i < types.length; i += 50) {
    await store.append(
      db.sql,
      any(),
      types.slice(i, i + 50).map((eventType) => ({
        aggregateType: "Thing",
        aggregateId: `t-${i}`,
        eventType,
        payload,
      })),
    );
  }
}

/** The options a test worker needs, also behind a transaction pooler. */
function workerOptions(db: TestDatabase, pooler: string | undefined, id: string): WorkerOptions {
  return {
    pollInterval: 50,
    maxPollInterval: 200,
    assignmentPollInterval: 200,
    batchSize: 20,
    // Full batches 10 ms apart, so a rebuild is slow enough to watch its progress.
    batchPause: 10,
    gapCheckInterval: 10,
    workerId: id,
    // Behind a transaction pooler: a lease instead of a session lock, LISTEN past the pooler.
    ...(pooler ? { leaderStrategy: "lease" as const, notifyConnection: db.directUrl } : {}),
  };
}

/** Until the worker started in the background has registered `consumer` (its checkpoint row). */
async function registered(db: TestDatabase, consumer: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (
    (await db.sql`SELECT 1 FROM consumer_checkpoints WHERE consumer_name = ${consumer}`)
      .length === 0
  ) {
    if (Date.now() > deadline) throw new Error(`${consumer} did not register`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Runs `body` on a fresh schema migrated through the CLI (skipped without several connections):
 * `env` points the CLI at it, `start` runs a worker in the background and returns its stop, which
 * also runs after `body` (twice is harmless). The schema is dropped after.
 */
async function withMigrated(
  t: { skip(message?: string): void },
  pooler: string | undefined,
  body: (
    db: TestDatabase,
    env: Record<string, string>,
    start: (worker: Worker) => () => Promise<void>,
  ) => Promise<void>,
): Promise<void> {
  const db = await testDatabase({ pooler });
  const stops: Array<() => Promise<void>> = [];
  try {
    if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
    const env = { DATABASE_URL: db.schemaUrl };
    assert.equal(await runCli(["migrate", "--apply"], captureIo(env)), 0);
    await body(db, env, (worker) => {
      const controller = new AbortController();
      const running = worker.start(controller.signal);
      const stop = async () => {
        controller.abort();
        await running;
      };
      stops.push(stop);
      return stop;
    });
  } finally {
    for (const stop of stops) await stop();
    await db.close();
  }
}

/** A file of the operator's that exports consumers, as `--module` takes it. */
function moduleFile(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), "eventsalsa-consumers-"));
  const path = join(dir, "consumers.ts");
  writeFileSync(path, source);
  return path;
}

describe("rebuild progress", () => {
  it("a rate over a sliding window, the ETA from it, a bar and a plain line", () => {
    const meter = new RateMeter(5_000);
    assert.equal(meter.sample(0, 0), null);
    assert.equal(meter.sample(1_000, 100), 100);
    assert.equal(meter.sample(2_000, 300), 150);
    // The rate spans the window from the last sample at or before its start (2 s, at 8 s).
    meter.sample(6_000, 700);
    assert.equal(meter.sample(8_000, 1_100), (1_100 - 300) / 6);
    const base = { consumer: "orders_v2", from: 0, target: 1_000, startedAt: 0 };
    const p = rebuildProgress(base, 250, 2_500, 100);
    assert.deepEqual(p, {
      consumer: "orders_v2",
      checkpoint: 250,
      target: 1_000,
      from: 0,
      done: 250,
      total: 1_000,
      eventsPerSecond: 100,
      etaSeconds: 7.5,
      elapsedMs: 2_500,
    });
    assert.equal(
      progressBar(p, 8),
      "orders_v2 [██░░░░░░]  25%  250/1000 events  100 events/s, ETA 7.5s",
    );
    assert.equal(
      progressLine(p),
      "orders_v2: 250/1000 events (25%), checkpoint 250 of 1000, 100 events/s, ETA 7.5s, " +
        "2.5s elapsed",
    );
    assert.equal(rebuildProgress(base, 10, 0, null).etaSeconds, null);
    assert.equal(rebuildProgress(base, 1_200, 0, 0).done, 1_000);
    assert.equal(rebuildProgress(base, 1_200, 0, 0).etaSeconds, 0);
  });
});

for (const { via, pooler } of TARGETS) {
  describe(`eventsalsa consumers${via}`, () => {
    it("list, reset and rebuild beside a running worker; the refusals; remove", T, async (t) => {
      await withMigrated(t, pooler, async (db, env, start) => {
        await db.sql`CREATE TABLE view_rows (position BIGINT PRIMARY KEY, handled INT NOT NULL)`;
        await db.sql`CREATE TABLE view_resets (to_position BIGINT NOT NULL)`;
        // The consumer lives in the operator's module: the worker here and the CLI's reset hook
        // run the same definition.
        const module = moduleFile(`
export const view = {
  name: "view",
  async handle(tx, event) {
    await tx\`INSERT INTO view_rows (position, handled) VALUES (\${event.globalPosition}, 1)
      ON CONFLICT (position) DO UPDATE SET handled = view_rows.handled + 1\`;
  },
  async reset(tx, context) {
    await tx\`DELETE FROM view_rows WHERE position > \${context.toPosition}\`;
    await tx\`INSERT INTO view_resets (to_position) VALUES (\${context.toPosition})\`;
  },
};
export const other = { name: "other", handle() {} };
`);
        const withoutHook = moduleFile(`export const view = { name: "view", handle() {} };\n`);
        const { view } = await import(pathToFileURL(module).href) as { view: Consumer };
        const store = new PostgresStore();
        await append(db, store, Array.from({ length: 100 }, () => "Happened"));
        const stopWorker = start(
          new Worker(db.sql, store, [view], workerOptions(db, pooler, "w-view")),
        );
        const caughtUp = (position: number) =>
          waitForPosition(db.sql, position, { consumers: ["view"], timeout: 60_000 });
        const rows = async () =>
          (await db.sql`SELECT position::int, handled FROM view_rows ORDER BY position`)
            .map((r) => [r.position as number, r.handled as number]);
        await registered(db, "view");
        await caughtUp(100);

        // list, and a healthy fleet.
        const [list, listJson, healthy] = await Promise.all([
          cli(["consumers", "list"], env),
          cli(["consumers", "list", "--json"], env),
          cli(["status", "--check", "--max-lag", "0"], env),
        ]);
        assert.match(
          expectExit(list, 0).stdout,
          /^latest position 100\nconsumer +worker +checkpoint +lag +gap wait +dead letters\nview +w-view +100 +0 +- +-\n$/,
        );
        const listed = JSON.parse(expectExit(listJson, 0).stdout);
        assert.equal(listed.latestPosition, 100);
        assert.deepEqual(
          listed.consumers.map((c: Record<string, unknown>) => [
            c.name,
            c.workerId,
            c.ownerLive,
            c.checkpoint,
            c.lag,
            c.gap,
            c.deadLetters,
          ]),
          [["view", "w-view", true, 100, 0, null, { skipped: 0, blocking: 0 }]],
        );
        assert.equal(expectExit(healthy, 0).stdout, "ok\n");

        // The refusals: nothing is reset.
        const refusals = await Promise.all([
          cli(["consumers", "reset", "view"], env),
          cli(["consumers", "rebuild", "view"], env),
          cli(["consumers", "reset", "typo", "--checkpoint-only"], env),
          cli(["consumers", "reset", "view", "--module", module, "--checkpoint-only"], env),
          cli(["consumers", "reset", "view", "--module", withoutHook], env),
          cli(["consumers", "reset", "--checkpoint-only"], env),
          cli(["consumers", "reset", "view", "--checkpoint-only", "--to-position", "1.5"], env),
          cli(["consumers", "frobnicate"], env),
        ]);
        for (const run of refusals) {
          expectExit(run, 2);
          assert.equal(run.stdout, "", context(run));
        }
        const withoutModule = "needs --module ./consumers.ts (the consumer's reset hook then " +
          "clears its read model in the same transaction) or --checkpoint-only: without " +
          "--module the read model will not be cleared";
        assert.ok(
          refusals[0].stderr.includes(`consumers reset ${withoutModule}`),
          refusals[0].stderr,
        );
        assert.ok(refusals[1].stderr.includes(`consumers rebuild ${withoutModule}`));
        assert.equal(
          refusals[2].stderr,
          `eventsalsa consumers: no such consumer "typo" (known: view)\n`,
        );
        assert.match(refusals[3].stderr, /--module and --checkpoint-only exclude each other/);
        assert.match(refusals[4].stderr, /consumer "view" of --module .* has no reset hook/);
        assert.match(refusals[5].stderr, /consumers reset needs the consumer's name/);
        assert.match(refusals[6].stderr, /--to-position must be a non-negative integer/);
        assert.match(refusals[7].stderr, /consumers needs "list", "reset", "rebuild" or "remove"/);
        assert.equal((await db.sql`SELECT count(*)::int AS n FROM view_resets`)[0].n, 0);

        // reset --module: the hook clears the read model after the position, in the same
        // transaction; the worker handles the rest again.
        const reset = expectExit(
          await cli(
            ["consumers", "reset", "view", "--to-position", "40", "--module", module, "--json"],
            env,
          ),
          0,
        );
        assert.deepEqual(JSON.parse(reset.stdout), {
          consumer: "view",
          from: 100,
          to: 40,
          readModelCleared: true,
        });
        await caughtUp(100);
        assert.deepEqual(await rows(), Array.from({ length: 100 }, (_, i) => [i + 1, 1]));
        assert.deepEqual(
          (await db.sql`SELECT to_position::int FROM view_resets`).map((r) => r.to_position),
          [40],
        );

        // --checkpoint-only: the read model stays, so the events after 90 land on it again.
        const only = expectExit(
          await cli(
            ["consumers", "reset", "view", "--to-position", "90", "--checkpoint-only"],
            env,
          ),
          0,
        );
        assert.equal(
          only.stdout,
          "reset view: checkpoint 100 → 90; checkpoint only: the read model was not cleared\n",
        );
        await caughtUp(100);
        assert.deepEqual(
          await rows(),
          Array.from({ length: 100 }, (_, i) => [i + 1, i + 1 > 90 ? 2 : 1]),
        );

        // rebuild --json: a reset object, progress ticks, and a final one at the latest position.
        await append(db, store, Array.from({ length: 200 }, () => "Happened"));
        await caughtUp(300);
        const { run: rebuild, ticks } = await rebuildJson("view", module, env);
        assert.deepEqual(ticks[0], {
          type: "reset",
          consumer: "view",
          from: 300,
          to: 0,
          target: 300,
          readModelCleared: true,
        });
        const progress = ticks.slice(1, -1);
        assert.ok(progress.length >= 1, context(rebuild));
        for (const [i, tick] of progress.entries()) {
          assert.equal(tick.type, "progress");
          assert.equal(tick.total, 300);
          assert.ok(tick.done < 300);
          if (i > 0) assert.ok(tick.done >= progress[i - 1].done, context(rebuild));
        }
        const last = ticks.at(-1);
        assert.equal(last.type, "done");
        assert.equal(last.target, 300);
        assert.ok(last.checkpoint >= 300);
        assert.equal(last.done, 300);
        assert.equal(last.etaSeconds, 0);
        assert.deepEqual(await rows(), Array.from({ length: 300 }, (_, i) => [i + 1, 1]));

        // Into a pipe: plain lines, the last says it caught up.
        const plain = expectExit(
          await cli(["consumers", "rebuild", "view", "--checkpoint-only"], env),
          0,
        );
        const lines = plain.stdout.trimEnd().split("\n");
        assert.equal(
          lines[0],
          "reset view: checkpoint 300 → 0; checkpoint only: the read model was not cleared; " +
            "rebuilding up to position 300",
        );
        assert.match(lines[1], /^view: \d+\/300 events \(\d+%\), checkpoint \d+ of 300, /);
        assert.match(
          lines.at(-1)!,
          /^view: caught up: checkpoint 300 reached position 300 in [\d.]+s/,
        );
        assert.ok(!plain.stdout.includes("\x1b"), context(plain));
        assert.deepEqual(await rows(), Array.from({ length: 300 }, (_, i) => [i + 1, 2]));

        // On a terminal: a bar redrawn in place.
        const io = { ...captureIo(env), isTerminal: true };
        assert.equal(await runCli(["consumers", "rebuild", "view", "--module", module], io), 0);
        assert.match(io.lines[0], /^reset view: checkpoint 300 → 0; read model cleared/);
        assert.match(io.lines[1], /^view \[[█░]+\] +\d+% {2}\d+\/300 events/);
        assert.ok(io.lines.slice(2, -1).every((l) => l.startsWith("\x1b[1A\x1b[2Kview [")));
        assert.ok(
          io.lines.at(-2)!.startsWith(
            "\x1b[1A\x1b[2Kview [████████████████████████] 100%  300/300",
          ),
          JSON.stringify(io.lines.at(-2)),
        );
        assert.match(io.lines.at(-1)!, /^view: caught up: checkpoint 300 reached position 300/);

        // --no-wait: the reset alone.
        const noWait = expectExit(
          await cli(["consumers", "rebuild", "view", "--checkpoint-only", "--no-wait"], env),
          0,
        );
        assert.match(
          noWait.stdout,
          /^reset view: checkpoint 300 → 0; .*; the workers rebuild it up to position 300\n$/,
        );
        await caughtUp(300);

        // remove is refused while a live worker registers the consumer.
        const refused = expectExit(await cli(["consumers", "remove", "view"], env), 1);
        assert.match(
          refused.stderr,
          /^eventsalsa consumers: refusing to remove "view": live worker\(s\) w-view register it; stop deploying it first/,
        );

        // With the worker gone, a rebuild waits in vain: the timeout, then Ctrl-C.
        await stopWorker();
        const timedOut = expectExit(
          await cli(["consumers", "rebuild", "view", "--checkpoint-only", "--timeout", "1"], env),
          1,
        );
        assert.equal(
          timedOut.stderr,
          `eventsalsa consumers: warning: no live worker registers "view"; the rebuild starts ` +
            `once one runs it\neventsalsa consumers: timed out after 1 s: view is at 0 of 300 ` +
            `(300 to go); the reset stays and the workers carry on (eventsalsa consumers list ` +
            `shows how far)\n`,
        );
        assert.ok(timedOut.ms < 15_000, `${timedOut.ms} ms`);
        const interrupted = expectExit(
          await cli(
            ["consumers", "rebuild", "view", "--checkpoint-only", "--json"],
            env,
            (stdout) => stdout.includes(`"type":"progress"`),
          ),
          130,
        );
        assert.match(interrupted.stderr, /stopped watching: view is at 0 of 300 \(300 to go\)/);
        assert.equal(
          JSON.parse(interrupted.stdout.trimEnd().split("\n").at(-1)!).type,
          "interrupted",
        );

        // remove: the consumer's rows go, the read model's table stays.
        const removed = expectExit(await cli(["consumers", "remove", "view", "--json"], env), 0);
        assert.deepEqual(JSON.parse(removed.stdout), {
          consumer: "view",
          checkpoint: 0,
          assignment: true,
          deadLetters: 0,
          gapSkips: 0,
        });
        assert.equal(
          expectExit(await cli(["consumers", "list"], env), 0).stdout,
          "no consumers (none has run against these tables)\n",
        );
        assert.equal((await db.sql`SELECT count(*)::int AS n FROM view_rows`)[0].n, 300);
      });
    });

    it(
      "rebuild --module of a partitioned consumer: every partition, the hook once",
      T,
      async (t) => {
        await withMigrated(t, pooler, async (db, env, start) => {
          await db.sql`CREATE TABLE part_rows (position BIGINT PRIMARY KEY, handled INT NOT NULL)`;
          await db.sql`CREATE TABLE part_resets (to_position BIGINT NOT NULL)`;
          const module = moduleFile(`
export const parts = {
  name: "parts",
  partitions: 3,
  async handle(tx, event) {
    await tx\`INSERT INTO part_rows (position, handled) VALUES (\${event.globalPosition}, 1)
      ON CONFLICT (position) DO UPDATE SET handled = part_rows.handled + 1\`;
  },
  async reset(tx, context) {
    await tx\`DELETE FROM part_rows WHERE position > \${context.toPosition}\`;
    await tx\`INSERT INTO part_resets (to_position) VALUES (\${context.toPosition})\`;
  },
};
`);
          const { parts } = await import(pathToFileURL(module).href) as { parts: Consumer };
          const store = new PostgresStore();
          // 120 events over 6 aggregates, so every partition has some.
          for (let i = 0; i < 6; i++) {
            await store.append(
              db.sql,
              any(),
              Array.from({ length: 20 }, () => ({
                aggregateType: "Thing",
                aggregateId: `t-${i}`,
                eventType: "Happened",
                payload,
              })),
            );
          }
          start(
            new Worker(db.sql, store, [parts], {
              ...workerOptions(db, pooler, "w-parts"),
              batchPause: 0,
            }),
          );
          // waitForPosition refuses a consumer with no rows yet: first the worker registers it.
          for (let i = 0; i < 3; i++) await registered(db, `parts#${i}of3`);
          await waitForPosition(db.sql, 120, { consumers: ["parts"], timeout: 60_000 });
          const { run: rebuild, ticks } = await rebuildJson("parts", module, env);
          assert.deepEqual(ticks[0], {
            type: "reset",
            consumer: "parts",
            from: 120,
            to: 0,
            target: 120,
            readModelCleared: true,
          });
          assert.equal(ticks.at(-1).type, "done", context(rebuild));
          assert.ok(ticks.at(-1).checkpoint >= 120, context(rebuild));
          const rows = await db.sql`SELECT position::int, handled FROM part_rows ORDER BY position`;
          assert.deepEqual(
            rows.map((r) => [r.position, r.handled]),
            Array.from({ length: 120 }, (_, i) => [i + 1, 1]),
            "every partition rebuilt, each event once after the hook cleared them",
          );
          const resets = await db.sql`SELECT to_position::int FROM part_resets`;
          assert.deepEqual(resets.map((r) => r.to_position), [0], "the hook ran once");
          // One partition alone, by its stored name: checkpoint only.
          const one = expectExit(
            await cli(
              [
                "consumers",
                "reset",
                "parts#1of3",
                "--checkpoint-only",
                "--to-position",
                "7",
                "--json",
              ],
              env,
            ),
            0,
          );
          assert.deepEqual(JSON.parse(one.stdout), {
            consumer: "parts#1of3",
            from: 120,
            to: 7,
            readModelCleared: false,
          });
        });
      },
    );

    it(
      "dead-letters retry --all: every skipped one, past a failure, with a summary",
      T,
      async (t) => {
        const db = await testDatabase({ pooler });
        try {
          if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
          // A password the server does not ask for (trust): it must never be printed.
          const parsed = new URL(db.schemaUrl);
          if (parsed.password === "") parsed.password = "Sup3rSecretPw";
          const secret = decodeURIComponent(parsed.password);
          const env = { DATABASE_URL: parsed.href };
          assert.equal(await runCli(["migrate", "--apply"], captureIo(env)), 0);
          await db.sql`CREATE TABLE redriven (position BIGINT PRIMARY KEY)`;
          const store = new PostgresStore();
          // Positions 2 and 4 are poison, 5 cursed: all three skipped.
          await append(db, store, ["Good", "Poison", "Good", "Poison", "Cursed", "Good"]);
          const worker = new Worker(db.sql, store, [{
            name: "things",
            handle(_tx, event) {
              if (event.eventType !== "Good") throw new PoisonEventError("cannot digest this one");
              return Promise.resolve();
            },
          }], { ...workerOptions(db, pooler, "w-things"), onPoison: skipPoisonEvents() });
          const controller = new AbortController();
          const running = worker.start(controller.signal);
          try {
            await registered(db, "things");
            await waitForPosition(db.sql, 6, { consumers: ["things"], timeout: 30_000 });
          } finally {
            controller.abort();
            await running;
          }

          // The operator's fix handles Poison; Cursed still fails (saying where it connects).
          const module = moduleFile(`import process from "node:process";
export const things = {
  name: "things",
  async handle(tx, event) {
    if (event.eventType === "Cursed") {
      throw new Error("still cursed (connected to " + process.env.DATABASE_URL + ")");
    }
    await tx\`INSERT INTO redriven (position) VALUES (\${event.globalPosition})\`;
  },
};
export const ghost = { name: "ghost", handle() {} };
`);
          const all = [
            "dead-letters",
            "retry",
            "--consumer",
            "things",
            "--all",
            "--module",
            module,
          ];
          const text = expectExit(await cli(all, env), 1);
          const lines = text.stdout.trimEnd().split("\n");
          assert.equal(lines.length, 3, context(text));
          assert.equal(lines[0], "redriven: position(s) 2, 4");
          assert.match(
            lines[1],
            /^failed: position 5: consumer things failed on event [0-9a-f-]{36} at position 5: Error: still cursed \(connected to postgres:\/\/postgres:\*\*\*@/,
          );
          assert.equal(
            lines[2],
            "things: 2 redriven, 1 failed, 3 total (the failed ones stay open)",
          );
          assert.ok(!text.stdout.includes(secret) && !text.stderr.includes(secret), context(text));
          assert.deepEqual(
            (await db.sql`SELECT position::int FROM redriven ORDER BY 1`).map((r) => r.position),
            [2, 4],
          );

          // Again, as JSON: only the one that failed is left.
          const json = expectExit(await cli([...all, "--json"], env), 1);
          const result = JSON.parse(json.stdout);
          assert.equal(result.consumer, "things");
          assert.equal(result.total, 1);
          assert.deepEqual(result.redriven, []);
          assert.equal(result.failed.length, 1);
          assert.equal(result.failed[0].position, 5);
          assert.match(result.failed[0].error, /still cursed/);
          assert.ok(!json.stdout.includes(secret), context(json));

          // Refusals.
          const refusals = await Promise.all([
            cli([...all, "--position", "5"], env),
            cli(["dead-letters", "retry", "--consumer", "things", "--all"], env),
            cli(["dead-letters", "retry", "--consumer", "ghost", "--all", "--module", module], env),
          ]);
          for (const run of refusals) expectExit(run, 2);
          assert.match(refusals[0].stderr, /retry takes --position or --all, not both/);
          assert.match(refusals[1].stderr, /retry needs --module/);
          assert.equal(
            refusals[2].stderr,
            `eventsalsa dead-letters: no such consumer "ghost" (known: things)\n`,
          );

          // The API, with a consumer that handles the cursed one too.
          const fixed: Consumer = { name: "things", handle: () => Promise.resolve() };
          assert.deepEqual(await retryDeadLetters(db.sql, store, fixed), {
            redriven: [5],
            failed: [],
          });
          const none = expectExit(await cli(all, env), 0);
          assert.equal(none.stdout, "things: no skipped dead letters to redrive\n");
        } finally {
          await db.close();
        }
      },
    );

    it(
      "status --check: no live worker, lag beyond --max-lag, open dead letters, healthy",
      T,
      async (t) => {
        await withMigrated(t, pooler, async (db, env) => {
          const check = (...flags: string[]) => cli(["status", "--check", ...flags], env);

          let run = expectExit(await check(), 1);
          assert.equal(run.stdout, "no live worker: none is registered\n");

          // A live worker and a consumer 10 events behind.
          await db.sql`INSERT INTO worker_nodes (worker_id, consumers) VALUES ('w-1', '{orders}')`;
          await db.sql`INSERT INTO consumer_checkpoints (consumer_name, last_position)
          VALUES ('orders', 0)`;
          await append(db, new PostgresStore(), Array.from({ length: 10 }, () => "Placed"));
          const [healthy, noLagCheck, lagging, atTheLimit, usage, both] = await Promise.all([
            check(),
            check("--allow-dead-letters"),
            check("--max-lag", "5"),
            check("--max-lag", "10"),
            cli(["status", "--max-lag", "5"], env),
            cli(["status", "--check", "--watch"], env),
          ]);
          assert.equal(expectExit(healthy, 0).stdout, "ok\n");
          assert.equal(expectExit(noLagCheck, 0).stdout, "ok\n");
          assert.equal(
            expectExit(lagging, 1).stdout,
            "consumer orders lags 10 events behind position 10 (more than --max-lag 5)\n",
          );
          assert.equal(expectExit(atTheLimit, 0).stdout, "ok\n");
          assert.match(expectExit(usage, 2).stderr, /--max-lag goes with --check/);
          assert.match(expectExit(both, 2).stderr, /--check and --watch exclude each other/);

          // An open (blocking) dead letter.
          await db.sql`INSERT INTO consumer_dead_letters (consumer_name, global_position, event_id,
          aggregate_type, aggregate_id, event_type, error, attempts, skipped, worker_id)
          VALUES ('orders', 3, ${crypto.randomUUID()}, 'Thing', 't-2', 'Placed', 'boom', 3, false,
            'w-1')`;
          const [dead, allowed, json] = await Promise.all([
            check(),
            check("--allow-dead-letters"),
            check("--json", "--max-lag", "5"),
          ]);
          assert.equal(
            expectExit(dead, 1).stdout,
            "consumer orders has 1 open dead letter(s): 1 blocking, 0 skipped " +
              "(eventsalsa dead-letters list --consumer orders)\n",
          );
          assert.equal(expectExit(allowed, 0).stdout, "ok\n");
          assert.deepEqual(JSON.parse(expectExit(json, 1).stdout), {
            ok: false,
            latestPosition: 10,
            reasons: [
              {
                check: "lag",
                consumer: "orders",
                message:
                  "consumer orders lags 10 events behind position 10 (more than --max-lag 5)",
              },
              {
                check: "dead-letters",
                consumer: "orders",
                message: "consumer orders has 1 open dead letter(s): 1 blocking, 0 skipped " +
                  "(eventsalsa dead-letters list --consumer orders)",
              },
            ],
          });

          // The worker's heartbeat grows old: no live worker.
          await db.sql`UPDATE worker_nodes SET heartbeat_at = now() - interval '1 hour'`;
          run = expectExit(await check("--allow-dead-letters"), 1);
          assert.equal(
            run.stdout,
            "no live worker: 1 registered, none with a heartbeat in the last 30000 ms\n",
          );
          run = expectExit(await check("--allow-dead-letters", "--json"), 1);
          assert.deepEqual(JSON.parse(run.stdout).reasons.map((r: { check: string }) => r.check), [
            "workers",
          ]);
        });
      },
    );
  });
}
