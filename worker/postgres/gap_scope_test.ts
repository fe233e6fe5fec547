// The scope of the gap wait on PostgreSQL (./gap_horizon.ts): a hole waits for the transactions of
// this database that were running when it was seen, not for the whole server. A writing
// transaction held open in another database of the same server no longer stalls a rolled-back
// hole; an append held in this database (open or prepared) still does; a role that cannot trust
// the activity view falls back to the server-wide rule; the blocker report names each blocker's
// database and never copies another database's SQL.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import postgres from "postgres";
import { renderStatus } from "../../cli/status.ts";
import { any } from "../../store/expected_version.ts";
import type { WindowRead } from "../core/gap_rule.ts";
import { draft, firstWindow, until } from "../support_test.ts";
import type { GapBlocker, GapWait } from "../types.ts";
import { PostgresCoordinator } from "./coordinator.ts";
import { GAP_RESOLVED_SQL, GAP_TOKEN_SQL, parseGapToken } from "./gap_horizon.ts";
import { type PgHarness, pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { status } from "./status.ts";
import { workerTables } from "./tables.ts";

const T = { timeout: 90_000 };
const signal = new AbortController().signal;
const SECRET = "other-database secret statement";

type Skippable = { name?: string; skip(message?: string): void };

function skip(t: Skippable, reason: string): void {
  console.log(`skipped "${t.name ?? "test"}": ${reason}`);
  t.skip(reason);
}

/** A transaction with an xid, held open in a database of its own on the same server. */
interface OtherDatabase {
  readonly name: string;
  /** The holding backend's pid and 32-bit xid. */
  readonly pid: number;
  readonly xid: string;
  /** Whether the held transaction is still running (seen from our database). */
  open(): Promise<boolean>;
  /** Ends the held transaction. */
  release(): Promise<void>;
}

/**
 * Creates `eventsalsa_other_<random>` and holds a writing transaction open in it; null (after
 * skipping the test with the reason printed) when the role cannot create databases.
 */
async function otherDatabase(
  t: Skippable,
  h: PgHarness,
  cleanups: Array<() => Promise<void>>,
): Promise<OtherDatabase | null> {
  const [{ allowed }] = await h.sql`SELECT rolsuper OR rolcreatedb AS allowed FROM pg_roles
    WHERE rolname = current_user`;
  if (allowed !== true) {
    skip(t, "the test role cannot CREATE DATABASE (needs CREATEDB or superuser)");
    return null;
  }
  const name = `eventsalsa_other_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await h.sql.unsafe(`CREATE DATABASE ${name}`);
  cleanups.push(async () => {
    await h.sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  const url = new URL(h.db.url);
  url.pathname = `/${name}`;
  const other = postgres(url.toString(), {
    max: 1,
    onnotice: () => {},
    connection: { application_name: "other-db-holder" },
  });
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let ready!: (value: { pid: number; xid: string }) => void;
  const started = new Promise<{ pid: number; xid: string }>((resolve) => (ready = resolve));
  const done = other.begin(async (tx) => {
    await tx.unsafe(`CREATE TEMP TABLE scratch (note text)`);
    // The statement text left in pg_stat_activity: it must never reach our reports.
    const [row] = await tx.unsafe(
      `INSERT INTO scratch VALUES ('${SECRET}')
        RETURNING pg_backend_pid() AS pid, pg_current_xact_id()::text AS xid`,
    );
    ready({ pid: Number(row.pid), xid: String(BigInt(row.xid) % 4294967296n) });
    await finished;
    throw new Error("rolled back");
  }).catch(() => {});
  const { pid, xid } = await started;
  const release = async () => {
    finish();
    await done;
    await other.end({ timeout: 5 });
  };
  cleanups.push(release);
  return {
    name,
    pid,
    xid,
    release,
    async open() {
      const rows = await h.sql`SELECT 1 FROM pg_stat_activity
        WHERE pid = ${pid} AND backend_xid::text = ${xid}`;
      return rows.length === 1;
    },
  };
}

/** Runs `body` on a fresh harness with cleanups run last-in first-out; skips without concurrency. */
async function withHarness(
  t: Skippable,
  body: (h: PgHarness, cleanups: Array<() => Promise<void>>) => Promise<void>,
): Promise<void> {
  const h = await pgHarness();
  const cleanups: Array<() => Promise<void>> = [];
  try {
    if (skipWithoutConcurrency(t, h.db)) return;
    await body(h, cleanups);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await h.close();
  }
}

const coordinatorOf = (h: PgHarness) =>
  new PostgresCoordinator(h.sql, h.store, { tables: workerTables(), notifyChannel: null });
const positions = (read: WindowRead) => read.events.map((e) => e.globalPosition);

async function currentDatabase(h: PgHarness): Promise<string> {
  const [{ name }] = await h.sql`SELECT current_database() AS name`;
  return name as string;
}

describe("The gap wait on PostgreSQL is scoped to this database", () => {
  it(
    "a writing transaction held open in another database does not hold a rolled-back hole; one held here does, and is the blocker named",
    T,
    async (t) => {
      await withHarness(t, async (h, cleanups) => {
        const other = await otherDatabase(t, h, cleanups);
        if (other === null) return;
        const ours = await currentDatabase(h);
        await h.append(); // 1
        const held = await h.hold(); // 2, held in this database
        await h.append(); // 3
        const waits: GapWait[] = [];
        const worker = h.worker([h.projection("scoped")], {
          batchPause: 200,
          gapCheckInterval: 200,
          gapReportInterval: 1_000,
          dispatcherInterval: 600_000,
          heartbeatInterval: 600_000,
          observer: { gapWaiting: (g) => waits.push(g) },
        });
        const running = worker.start();
        await until(() => waits.length >= 2, {
          clock: h.clock,
          step: 250,
          what: "two gap reports",
        });
        // The append held here holds the hole, however long.
        await h.clock.advance(60_000);
        assert.deepEqual(await h.rows("scoped"), [1]);
        assert.equal(await h.checkpoint("scoped"), 1);
        const wait = waits[waits.length - 1];
        assert.equal(wait.position, held.position);
        const blocker = wait.blockers.find((b) => b.pid === held.pid);
        assert.ok(blocker, `the held append is named: ${JSON.stringify(wait.blockers)}`);
        assert.equal(blocker.database, ours);
        assert.ok(blocker.query !== null, "our own database's query text is reported");
        assert.equal(wait.blockers[0].database, ours, "this database's transactions come first");
        assert.ok(
          wait.blockers.every((b) => b.pid !== other.pid && b.database === ours),
          `another database's transaction does not hold the wait: ${JSON.stringify(wait.blockers)}`,
        );
        assert.ok(!JSON.stringify(wait.blockers).includes(SECRET));
        const report = await status(h.sql);
        const gap = report.consumers.find((c) => c.name === "scoped")!.gap;
        assert.equal(gap?.blockers.find((b) => b.pid === held.pid)?.database, ours);
        // The rollback makes the hole permanent: it is passed at once, while the other
        // database's transaction is still open.
        // The other database's transaction stays open until cleanup: under a server-wide wait
        // the hole would never pass here. No timing is asserted (the machine may be loaded).
        await held.rollback();
        await until(async () => (await h.checkpoint("scoped")) === 3, {
          clock: h.clock,
          step: 100,
          timeoutMs: 30_000,
          what: "the hole passed while another database holds a transaction open",
        });
        assert.ok(await other.open(), "the other database's transaction is still open");
        assert.deepEqual(await h.rows("scoped"), [1, 3]);
        await worker.stop();
        await running;
      });
    },
  );

  it(
    "an append prepared (two-phase) in this database holds the hole until COMMIT PREPARED",
    T,
    async (t) => {
      await withHarness(t, async (h, cleanups) => {
        const [{ max_prepared_transactions: max }] = await h.sql`SHOW max_prepared_transactions`;
        if (Number(max) === 0) {
          skip(t, "max_prepared_transactions is 0 on this server (a restart setting)");
          return;
        }
        const ours = await currentDatabase(h);
        await h.append(); // 1
        const gid = `eventsalsa_gap_${crypto.randomUUID()}`;
        let prepared = 0;
        await h.sql.begin(async (tx) => {
          prepared = (await h.store.append(tx, any(), [draft()])).globalPositions[0]; // 2
          await tx.prepare(gid);
        });
        cleanups.push(async () => {
          await h.sql.unsafe(`ROLLBACK PREPARED '${gid}'`);
        });
        await h.append(); // 3
        const waits: GapWait[] = [];
        const worker = h.worker([h.projection("two-phase")], {
          batchPause: 200,
          gapCheckInterval: 200,
          gapReportInterval: 1_000,
          dispatcherInterval: 600_000,
          heartbeatInterval: 600_000,
          observer: { gapWaiting: (g) => waits.push(g) },
        });
        const running = worker.start();
        await until(() => waits.length >= 2, {
          clock: h.clock,
          step: 250,
          what: "two gap reports",
        });
        await h.clock.advance(60_000);
        assert.deepEqual(await h.rows("two-phase"), [1]);
        const wait = waits[waits.length - 1];
        assert.equal(wait.position, prepared);
        const blocker = wait.blockers.find((b) => b.state === "prepared");
        assert.ok(blocker, `the prepared transaction is named: ${JSON.stringify(wait.blockers)}`);
        assert.equal(blocker.pid, null);
        assert.equal(blocker.database, ours);
        assert.equal(blocker.query, `PREPARE TRANSACTION '${gid}'`);
        await h.sql.unsafe(`COMMIT PREPARED '${gid}'`);
        cleanups.pop();
        await until(async () => (await h.checkpoint("two-phase")) === 3, {
          clock: h.clock,
          step: 100,
          what: "the committed prepared append handled in order",
        });
        assert.deepEqual(await h.rows("two-phase"), [1, 2, 3]);
        await worker.stop();
        await running;
      });
    },
  );

  it(
    "without the activity view (a role lacking pg_read_all_stats) the wait falls back to the whole server",
    T,
    async (t) => {
      await withHarness(t, async (h, cleanups) => {
        const [{ allowed }] = await h.sql`SELECT rolsuper OR rolcreaterole AS allowed
          FROM pg_roles WHERE rolname = current_user`;
        if (allowed !== true) {
          skip(t, "the test role cannot CREATE ROLE (needs CREATEROLE or superuser)");
          return;
        }
        const other = await otherDatabase(t, h, cleanups);
        if (other === null) return;
        const ours = await currentDatabase(h);
        const role = `eventsalsa_plain_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
        await h.sql.unsafe(`CREATE ROLE ${role} NOLOGIN`);
        cleanups.push(async () => {
          await h.sql.unsafe(`DROP ROLE IF EXISTS ${role}`);
        });
        const c = coordinatorOf(h);
        const held = await h.hold(); // 1
        await h.append(); // 2
        const read = await c.readWindow(firstWindow(), signal);
        assert.deepEqual(positions(read), [2]);
        const privileged = await read.token() as string;
        // The same statement under a role that cannot trust the activity view: no list.
        const plain = await h.sql.begin(async (tx) => {
          await tx.unsafe(`SET LOCAL ROLE ${role}`);
          const [[token]] = await tx.unsafe(GAP_TOKEN_SQL).values();
          return token as string;
        });
        assert.equal(parseGapToken(plain).transactions, null, `fallback token ${plain}`);
        const list = parseGapToken(privileged).transactions;
        assert.ok(list !== null, `a privileged token lists this database's transactions`);
        assert.ok(!list.includes(other.xid), "not the other database's transaction");
        const [{ xid: heldXid }] = await h.sql`SELECT backend_xid::text AS xid FROM pg_stat_activity
          WHERE pid = ${held.pid}`;
        assert.ok(list.includes(heldXid), `${heldXid} listed in ${privileged}`);

        // Blockers under the fallback: every older transaction of the server, ours first, and
        // another database's named by database only, without its SQL.
        const fallbackBlockers = await c.gapBlockers(plain);
        const otherBlocker = fallbackBlockers.find((b) => b.pid === other.pid);
        assert.ok(otherBlocker, `listed under the fallback: ${JSON.stringify(fallbackBlockers)}`);
        assert.equal(otherBlocker.database, other.name);
        assert.equal(otherBlocker.query, null);
        assert.equal(otherBlocker.xid, other.xid);
        const ourBlocker = fallbackBlockers.find((b) => b.pid === held.pid);
        assert.ok(ourBlocker);
        assert.equal(ourBlocker.database, ours);
        assert.ok(ourBlocker.query !== null);
        const firstForeign = fallbackBlockers.findIndex((b) => b.database !== ours);
        const lastOurs = fallbackBlockers.findLastIndex((b) => b.database === ours);
        assert.ok(lastOurs < firstForeign, "this database's transactions first");
        assert.ok(!JSON.stringify(fallbackBlockers).includes(SECRET));
        const scoped = await c.gapBlockers(privileged);
        assert.ok(scoped.some((b) => b.pid === held.pid));
        assert.ok(scoped.every((b) => b.database === ours), JSON.stringify(scoped));

        // The report as stored and printed: the database named, no SQL of the other one.
        await h.sql`INSERT INTO consumer_checkpoints (consumer_name) VALUES ('fallback')
          ON CONFLICT DO NOTHING`;
        await c.reportGap("fallback", {
          consumer: "fallback",
          position: held.position,
          since: Date.now(),
          waitingMs: 0,
          blockers: fallbackBlockers,
        });
        const stored = (await status(h.sql)).consumers.find((x) => x.name === "fallback")!.gap!;
        const storedOther = stored.blockers.find((b: GapBlocker) => b.pid === other.pid);
        assert.equal(storedOther?.database, other.name);
        assert.equal(storedOther?.query, null);
        const lines = renderStatus(await status(h.sql)).join("\n");
        assert.ok(lines.includes(`in database "${other.name}"`), lines);
        assert.ok(lines.includes(`in database "${ours}"`), lines);
        assert.ok(!lines.includes(SECRET), lines);

        // The held append rolls back: the scoped token resolves (given this database's other
        // sessions end), the fallback one not while the other database's transaction is open.
        await held.rollback();
        await until(
          async () => (await c.readWindow(firstWindow(privileged), signal)).pendingResolved,
          {
            what: "the scoped token to resolve",
          },
        );
        for (let i = 0; i < 3; i++) {
          assert.equal(
            (await c.readWindow(firstWindow(plain), signal)).pendingResolved,
            false,
          );
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        assert.ok(await other.open());
        await other.release();
        await until(
          async () => (await c.readWindow(firstWindow(plain), signal)).pendingResolved,
          {
            what: "the fallback token to resolve once the other database's transaction ends",
          },
        );
      });
    },
  );

  it(
    "a token taken in a transaction that already read the activity view lists a transaction begun since",
    T,
    async (t) => {
      await withHarness(t, async (h) => {
        let held: Awaited<ReturnType<PgHarness["hold"]>> | null = null;
        const token = await h.sql.begin(async (tx) => {
          // What a batch does first: a resolution check, which snapshots pg_stat_activity for the
          // rest of the transaction.
          await tx.unsafe(GAP_RESOLVED_SQL, [`${2n ** 62n};0`]);
          held = await h.hold(); // begins after that snapshot
          const [[value]] = await tx.unsafe(GAP_TOKEN_SQL).values();
          return value as string;
        });
        const [{ xid }] = await h.sql`SELECT backend_xid::text AS xid FROM pg_stat_activity
          WHERE pid = ${held!.pid}`;
        const list = parseGapToken(token).transactions;
        assert.ok(list?.includes(xid as string), `${xid} listed in ${token}`);
        const [[resolved]] = await h.sql.unsafe(GAP_RESOLVED_SQL, [token]).values();
        assert.equal(resolved, false);
        await held!.rollback();
      });
    },
  );

  it(
    "the horizon covers a transaction that got its id after the last one to end (snapshot xmax alone does not)",
    T,
    async (t) => {
      await withHarness(t, async (h) => {
        const c = coordinatorOf(h);
        // Q gets its id first; T gets a newer one and draws p; Q then draws q > p and commits.
        let drawQ!: () => void;
        const mayDraw = new Promise<void>((resolve) => (drawQ = resolve));
        let qHasId!: () => void;
        const qStarted = new Promise<void>((resolve) => (qHasId = resolve));
        const q = h.sql.begin(async (tx) => {
          await tx`SELECT pg_current_xact_id()`;
          qHasId();
          await mayDraw;
          await h.store.append(tx, any(), [draft()]);
        });
        await qStarted;
        let finishT!: () => void;
        const tMayFinish = new Promise<void>((resolve) => (finishT = resolve));
        let tDrew!: (value: { xid: string; position: number }) => void;
        const tStarted = new Promise<{ xid: string; position: number }>((resolve) =>
          tDrew = resolve
        );
        const tDone = h.sql.begin(async (tx) => {
          const [{ xid }] = await tx`SELECT pg_current_xact_id()::text AS xid`;
          const { globalPositions } = await h.store.append(tx, any(), [draft()]);
          tDrew({ xid: xid as string, position: globalPositions[0] });
          await tMayFinish;
          throw new Error("rolled back");
        }).catch(() => {});
        const holder = await tStarted;
        drawQ();
        await q;
        const read = await c.readWindow(firstWindow(), signal);
        assert.deepEqual(positions(read), [holder.position + 1]);
        const token = await read.token() as string;
        const { horizon, transactions } = parseGapToken(token);
        assert.ok(
          BigInt(horizon) > BigInt(holder.xid),
          `horizon ${horizon} above the holder's id ${holder.xid}`,
        );
        if (transactions !== null) {
          assert.ok(transactions.includes(String(BigInt(holder.xid) % 4294967296n)));
        }
        for (let i = 0; i < 3; i++) {
          const [[resolved]] = await h.sql.unsafe(GAP_RESOLVED_SQL, [token]).values();
          assert.equal(resolved, false, "unresolved while the holder is open");
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        finishT();
        await tDone;
        await until(
          async () => (await c.readWindow(firstWindow(token), signal)).pendingResolved,
          {
            what: "the token to resolve after the rollback",
          },
        );
      });
    },
  );
});
