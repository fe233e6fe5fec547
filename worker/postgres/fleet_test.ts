// Acceptance scenarios for several workers on one PostgreSQL database (numbered 2–5, 12–19 and
// 21, after the Go library's worker scenarios), made deterministic: injected worker ids, a fake
// clock for every timer of the workers, fabricated rows where the Go tests waited for real time to
// pass, and waits for the condition itself (bounded polling) instead of fixed sleeps. Workers run
// in this process; the multi-process test is processes_test.ts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { assignmentProblems } from "../../testing/assignment_invariants.ts";
import { WorkerRegistrationLostError } from "../errors.ts";
import type { WorkerOptions } from "../options.ts";
import { until } from "../support_test.ts";
import type { Consumer } from "../types.ts";
import type { Worker } from "../worker.ts";
import { PostgresCoordinator } from "./coordinator.ts";
import { type PgHarness, pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { status } from "./status.ts";
import { workerTables } from "./tables.ts";
import { readEnv } from "../../internal/env.ts";

const T = { timeout: 90_000 };

/** Fast cycles on the fake clock; a generous real-time liveness window (DB time). */
const FLEET: WorkerOptions = {
  pollInterval: 200,
  dispatcherInterval: 100,
  rebalanceInterval: 500,
  assignmentPollInterval: 250,
  heartbeatInterval: 500,
  heartbeatTimeout: 10_000,
};

async function withFleet(
  t: { name?: string; skip(message?: string): void },
  body: (h: PgHarness) => Promise<void>,
  options: { prepare?: boolean; pooler?: string } = {},
): Promise<void> {
  const h = await pgHarness(options);
  try {
    if (skipWithoutConcurrency(t, h.db)) return;
    await body(h);
  } finally {
    await h.close();
  }
}

async function assignments(h: PgHarness): Promise<Map<string, string | null>> {
  const rows = await h.sql`SELECT consumer_name, worker_id FROM consumer_assignments
    ORDER BY consumer_name COLLATE "C"`;
  return new Map(rows.map((r) => [r.consumer_name as string, r.worker_id as string | null]));
}

async function registered(h: PgHarness): Promise<string[]> {
  const rows = await h.sql`SELECT worker_id FROM worker_nodes ORDER BY worker_id COLLATE "C"`;
  return rows.map((r) => r.worker_id as string);
}

function countsOf(map: Map<string, string | null>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const owner of map.values()) counts[owner ?? "-"] = (counts[owner ?? "-"] ?? 0) + 1;
  return counts;
}

/**
 * The fleet has settled: exactly `active` are registered, every consumer is on an active worker
 * that registered it, loads are within one, and each worker runs exactly what it is assigned.
 */
async function settled(h: PgHarness, active: Worker[]): Promise<boolean> {
  const ids = active.map((w) => w.id).sort();
  if (JSON.stringify(await registered(h)) !== JSON.stringify(ids)) return false;
  const rows = await h.sql`SELECT worker_id, consumers FROM worker_nodes`;
  const members = rows.map((r) => ({
    workerId: r.worker_id as string,
    consumers: r.consumers as string[],
  }));
  const current = await assignments(h);
  if (assignmentProblems(members, current).length > 0) return false;
  return active.every((w) => {
    const mine = [...current].filter(([, owner]) => owner === w.id).map(([c]) => c).sort();
    return JSON.stringify([...w.runningConsumers].sort()) === JSON.stringify(mine);
  });
}

function waitSettled(h: PgHarness, active: Worker[], what: string): Promise<void> {
  return until(() => settled(h, active), {
    clock: h.clock,
    step: 100,
    timeoutMs: 20_000,
    what,
  });
}

async function caughtUp(h: PgHarness, consumers: string[], position: number): Promise<void> {
  await until(async () => {
    const rows = await h.sql`SELECT count(*)::int AS n FROM consumer_checkpoints
      WHERE consumer_name = ANY(${consumers}) AND last_position = ${position}`;
    return rows[0].n === consumers.length;
  }, { clock: h.clock, step: 100, timeoutMs: 20_000, what: `checkpoints at ${position}` });
}

async function handledBy(h: PgHarness, from: number): Promise<Map<string, string>> {
  const rows = await h.sql`SELECT consumer, position, handled_by FROM read_model
    WHERE position > ${from} ORDER BY consumer, position`;
  return new Map(rows.map((r) => [`${r.consumer}@${r.position}`, r.handled_by as string]));
}

describe("several workers on PostgreSQL", () => {
  it(
    "scenario 2: a worker joins: half the consumers move to it, no event is lost or repeated",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const names = ["c1", "c2", "c3", "c4"];
        const consumers = names.map((n) => h.projection(n));
        const w1 = h.worker(consumers, FLEET);
        const r1 = w1.start();
        for (let i = 0; i < 5; i++) await h.append();
        await caughtUp(h, names, 5);
        const before = await assignments(h);
        assert.deepEqual(countsOf(before), { "w-1": 4 });
        const stamps = async () =>
          new Map(
            (await h.sql`SELECT consumer_name, updated_at FROM consumer_assignments`).map((r) => [
              r.consumer_name as string,
              (r.updated_at as Date).getTime(),
            ]),
          );
        const stampsBefore = await stamps();
        const w2 = h.worker(consumers, FLEET);
        const r2 = w2.start();
        await waitSettled(h, [w1, w2], "a 2/2 split");
        const after = await assignments(h);
        assert.deepEqual(countsOf(after), { "w-1": 2, "w-2": 2 });
        const stampsAfter = await stamps();
        for (const name of names) {
          // Only the rows that changed were written.
          const moved = after.get(name) !== before.get(name);
          assert.equal(stampsAfter.get(name) !== stampsBefore.get(name), moved, name);
        }
        for (let i = 0; i < 3; i++) await h.append();
        await caughtUp(h, names, 8);
        for (const name of names) assert.deepEqual(await h.rows(name), [1, 2, 3, 4, 5, 6, 7, 8]);
        const late = await handledBy(h, 5);
        for (const [key, worker] of late) {
          assert.equal(worker, after.get(key.split("@")[0]), `${key} handled by its owner`);
        }
        assert.deepEqual(new Set(late.values()), new Set(["w-1", "w-2"]));
        await Promise.all([w1.stop(), w2.stop()]);
        await Promise.all([r1, r2]);
      });
    },
  );

  it(
    "without notifications, workers learn joins and assignments by polling",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const names = ["c1", "c2"];
        const consumers = names.map((n) => h.projection(n));
        const quiet = { ...FLEET, coordinationChannel: null, rebalanceInterval: 1_000 };
        const w1 = h.worker(consumers, quiet);
        const r1 = w1.start();
        await waitSettled(h, [w1], "w-1 owns both");
        const w2 = h.worker(consumers, quiet);
        const r2 = w2.start();
        await waitSettled(h, [w1, w2], "a 1/1 split by polling");
        assert.deepEqual(countsOf(await assignments(h)), { "w-1": 1, "w-2": 1 });
        await Promise.all([w1.stop(), w2.stop()]);
        await Promise.all([r1, r2]);
      });
    },
  );

  it(
    "scenario 3: a worker leaves gracefully: its row goes, its consumers move at once",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const names = ["c1", "c2", "c3", "c4"];
        const consumers = names.map((n) => h.projection(n));
        const w1 = h.worker(consumers, FLEET);
        const w2 = h.worker(consumers, FLEET);
        const r1 = w1.start();
        const r2 = w2.start();
        await waitSettled(h, [w1, w2], "a 2/2 split");
        for (let i = 0; i < 2; i++) await h.append();
        await caughtUp(h, names, 2);
        await w2.stop();
        await r2;
        assert.deepEqual(await registered(h), ["w-1"], "the leaver removed its row");
        // The leaver's consumers were freed by its own delete; the leader reassigns on the
        // membership notification, long before a heartbeat could time out.
        await waitSettled(h, [w1], "w-1 owns all four");
        assert.deepEqual(countsOf(await assignments(h)), { "w-1": 4 });
        for (let i = 0; i < 3; i++) await h.append();
        await caughtUp(h, names, 5);
        for (const name of names) assert.deepEqual(await h.rows(name), [1, 2, 3, 4, 5]);
        assert.deepEqual(new Set((await handledBy(h, 2)).values()), new Set(["w-1"]));
        await w1.stop();
        await r1;
      });
    },
  );

  for (
    const [scenario, age, kept] of [
      [
        "scenario 4: start-up cleanup removes a registration older than twice the timeout",
        25,
        false,
      ],
      [
        "scenario 5: start-up cleanup keeps a newer silent row, but its consumer moves anyway",
        15,
        true,
      ],
    ] as const
  ) {
    it(scenario, T, async (t) => {
      await withFleet(t, async (h) => {
        // heartbeatTimeout 10 s: cleanup threshold 20 s, liveness 10 s. The ghost's heartbeat is
        // written in the past instead of waiting for it to age.
        await h.sql`INSERT INTO worker_nodes (worker_id, consumers, heartbeat_at)
          VALUES ('ghost', '{solo}', now() - ${age} * interval '1 second')`;
        await h
          .sql`INSERT INTO consumer_assignments (consumer_name, worker_id) VALUES ('solo', 'ghost')`;
        const w1 = h.worker([h.projection("solo")], FLEET);
        const running = w1.start();
        await until(async () => (await assignments(h)).get("solo") === "w-1", {
          clock: h.clock,
          step: 100,
          what: "solo on w-1",
        });
        assert.deepEqual(await registered(h), kept ? ["ghost", "w-1"] : ["w-1"]);
        await h.append();
        await caughtUp(h, ["solo"], 1);
        await w1.stop();
        await running;
      });
    });
  }

  // EVENTSALSA_TEST_PGBOUNCER_URL (set by .ci/run): the lease failover once more through a real
  // PgBouncer in transaction pooling mode (docs/pgbouncer.md).
  const pgbouncer = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
  for (
    const [strategy, prepare, pooler] of [
      ["advisory", true, undefined],
      ["lease", true, undefined],
      ["advisory", false, undefined],
      ["lease", false, undefined],
      ...(pgbouncer ? [["lease", false, pgbouncer] as const] : []),
    ] as const
  ) {
    it(
      `scenario ${
        strategy === "advisory" ? 12 : 13
      }: leader failover (${strategy}, prepare: ${prepare}${
        pooler ? ", through PgBouncer" : ""
      }): the leader leaves, the other takes over, a third joins`,
      T,
      async (t) => {
        await withFleet(t, async (h) => {
          const names = ["c1", "c2", "c3", "c4"];
          const consumers = names.map((n) => h.projection(n));
          const options = { ...FLEET, leaderStrategy: strategy };
          const w1 = h.worker(consumers, options);
          const r1 = w1.start();
          await until(async () => (await status(h.sql)).leader?.workerId === "w-1", {
            clock: h.clock,
            step: 100,
            what: "w-1 leads",
          });
          assert.equal((await status(h.sql)).leader?.strategy, strategy);
          const w2 = h.worker(consumers, options);
          const r2 = w2.start();
          await waitSettled(h, [w1, w2], "a 2/2 split");
          assert.equal(w1.isLeader, true);
          assert.equal(w2.isLeader, false);
          await w1.stop();
          await r1;
          await waitSettled(h, [w2], "w-2 owns all four");
          await until(async () => (await status(h.sql)).leader?.workerId === "w-2", {
            clock: h.clock,
            step: 100,
            what: "w-2 leads",
          });
          const w3 = h.worker(consumers, options);
          const r3 = w3.start();
          await waitSettled(h, [w2, w3], "a 2/2 split again");
          for (let i = 0; i < 2; i++) await h.append();
          await caughtUp(h, names, 2);
          assert.deepEqual(new Set((await handledBy(h, 0)).values()), new Set(["w-2", "w-3"]));
          await Promise.all([w2.stop(), w3.stop()]);
          await Promise.all([r2, r3]);
        }, { prepare, pooler });
      },
    );
  }

  it(
    "scenario 14: an unexpired lease of a crashed leader blocks takeover until it expires",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const options = { ...FLEET, leaderStrategy: "lease" as const };
        const consumers = [h.projection("c1"), h.projection("c2")];
        const w1 = h.worker(consumers, options);
        const r1 = w1.start();
        await until(async () => (await status(h.sql)).leader?.workerId === "w-1", {
          clock: h.clock,
          step: 100,
          what: "w-1 holds the lease",
        });
        const w2 = h.worker(consumers, options);
        const r2 = w2.start();
        await waitSettled(h, [w1, w2], "both running");
        await h.clock.advance(5 * 500); // five cycles: the standby never takes a held lease
        assert.equal((await status(h.sql)).leader?.workerId, "w-1");
        assert.equal(w2.isLeader, false);
        await w1.stop();
        await r1;
        // A leader that crashed without cleanup: its row and an unexpired lease remain.
        await h.sql.begin(async (tx) => {
          await tx`INSERT INTO worker_nodes (worker_id, consumers) VALUES ('ghost', '{}')`;
          await tx`INSERT INTO worker_leader_election (lease_key, leader_id, strategy, expires_at)
            VALUES ('leader', 'ghost', 'lease', now() + interval '1 hour')
            ON CONFLICT (lease_key) DO UPDATE SET leader_id = 'ghost', strategy = 'lease',
              expires_at = now() + interval '1 hour', acquired_at = now()`;
        });
        // Had w-2 taken the lease before the ghost's was written, it loses it at its next renewal.
        await until(() => !w2.isLeader, { clock: h.clock, step: 100, what: "w-2 not leader" });
        await h.clock.advance(5 * 500);
        assert.equal((await status(h.sql)).leader?.workerId, "ghost");
        assert.equal(w2.isLeader, false);
        await h
          .sql`UPDATE worker_leader_election SET expires_at = now() - interval '1 millisecond'`;
        await until(async () => (await status(h.sql)).leader?.workerId === "w-2", {
          clock: h.clock,
          step: 100,
          what: "w-2 takes the expired lease",
        });
        // The ghost registered no consumer: both go to w-2.
        await until(async () => countsOf(await assignments(h))["w-2"] === 2, {
          clock: h.clock,
          step: 100,
          what: "w-2 owns both",
        });
        await w2.stop();
        await r2;
      });
    },
  );

  it(
    "scenarios 15/16: deleting the leader's registration drops its lease; a release leaves no leader",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const coordinator = new PostgresCoordinator(h.sql, h.store, {
          tables: workerTables(),
          notifyChannel: null,
        });
        const settings = {
          strategy: "lease" as const,
          leaseMs: 3_600_000,
          heartbeatTimeoutMs: 30_000,
          rebalanceLockTimeoutMs: 10_000,
        };
        await coordinator.registerWorker("w-a", [], 30_000);
        await coordinator.registerWorker("w-b", [], 30_000);
        const a = coordinator.leaderElection("w-a", settings);
        const b = coordinator.leaderElection("w-b", settings);
        assert.equal(await a.acquire(), true);
        assert.equal(await b.acquire(), false, "a held lease is not taken");
        assert.equal(await a.acquire(), true, "the holder renews");
        await h.sql`DELETE FROM worker_nodes WHERE worker_id = 'w-a'`;
        assert.equal((await h.sql`SELECT count(*)::int AS n FROM worker_leader_election`)[0].n, 0);
        assert.equal((await status(h.sql)).leader, null);
        assert.equal(await a.acquire(), false, "a renewal without a registration fails");
        assert.equal(await b.acquire(), true);
        await b.release();
        const [row] = await h.sql`SELECT leader_id, expires_at < now() AS expired
          FROM worker_leader_election`;
        assert.deepEqual({ ...row }, { leader_id: null, expired: true });
        assert.equal((await status(h.sql)).leader, null);
        assert.equal(await a.acquire(), false);
        await coordinator.close();
      });
    },
  );

  it(
    "scenario 17: a worker whose registration and consumer were taken cannot commit, and stops",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        // No periodic cycles: only notifications and the fence act.
        const quiet = { ...FLEET, rebalanceInterval: 600_000, assignmentPollInterval: 600_000 };
        const stopped: string[] = [];
        const w2 = h.worker([], { ...quiet, workerId: "w-2" });
        const r2 = w2.start();
        await until(async () => (await status(h.sql)).leader?.workerId === "w-2", {
          clock: h.clock,
          step: 100,
          what: "w-2 leads",
        });
        const w1 = h.worker([h.projection("solo")], {
          ...quiet,
          workerId: "w-1",
          observer: { consumerStopped: (s) => stopped.push(s.reason) },
        });
        const r1 = w1.start().then(() => null, (error) => error);
        // Only w-1 registered solo: it gets it whatever the ids' order.
        await until(async () => (await assignments(h)).get("solo") === "w-1", {
          clock: h.clock,
          step: 100,
          what: "solo on w-1",
        });
        await h.append();
        await caughtUp(h, ["solo"], 1);
        await h.sql.begin(async (tx) => {
          await tx`DELETE FROM worker_nodes WHERE worker_id = 'w-1'`;
          await tx`UPDATE consumer_assignments SET worker_id = 'w-2' WHERE consumer_name = 'solo'`;
        });
        await h.append();
        await until(() => stopped.includes("ownershipLost"), {
          clock: h.clock,
          step: 100,
          what: "w-1 hits the fence",
        });
        await until(() => !w1.running, { clock: h.clock, step: 500, what: "w-1 stops itself" });
        assert.ok((await r1) instanceof WorkerRegistrationLostError, String(await r1));
        assert.deepEqual(await h.rows("solo"), [1]);
        assert.equal(await h.checkpoint("solo"), 1);
        await w2.stop();
        await r2;
      });
    },
  );

  it(
    "scenario 18: the advisory leader's session is terminated: the standby takes over",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const changes: string[] = [];
        const observer = {
          leadershipChanged: (c: { workerId: string; leader: boolean }) =>
            changes.push(`${c.workerId} ${c.leader ? "leads" : "demoted"}`),
        };
        const consumers = [h.projection("solo")];
        const w1 = h.worker(consumers, { ...FLEET, observer });
        const r1 = w1.start();
        await until(async () => (await status(h.sql)).leader?.workerId === "w-1", {
          clock: h.clock,
          step: 100,
          what: "w-1 leads",
        });
        const w2 = h.worker(consumers, { ...FLEET, observer });
        const r2 = w2.start();
        await waitSettled(h, [w1, w2], "both running");
        const holders = await h.sql`SELECT pid FROM pg_locks WHERE locktype = 'advisory'
          AND classid = ${0x65735772} AND objid = to_regclass('worker_nodes')::oid AND granted`;
        assert.equal(holders.length, 1, "one session holds this schema's lock");
        await h.sql`SELECT pg_terminate_backend(${holders[0].pid})`;
        await until(async () => (await status(h.sql)).leader?.workerId === "w-2", {
          clock: h.clock,
          step: 100,
          what: "w-2 leads",
        });
        await until(() => !w1.isLeader, { clock: h.clock, step: 100, what: "w-1 demoted" });
        assert.deepEqual(changes.slice(0, 1), ["w-1 leads"]);
        assert.ok(changes.includes("w-1 demoted") && changes.includes("w-2 leads"), `${changes}`);
        await w1.stop();
        await r1;
        await waitSettled(h, [w2], "w-2 owns solo");
        await h.append();
        await caughtUp(h, ["solo"], 1);
        assert.deepEqual([...(await handledBy(h, 0)).values()], ["w-2"]);
        await w2.stop();
        await r2;
      });
    },
  );

  it(
    "scenario 19: a lease leader whose registration is deleted is demoted, and stops itself",
    T,
    async (t) => {
      await withFleet(t, async (h) => {
        const options = { ...FLEET, leaderStrategy: "lease" as const };
        const consumers = [h.projection("c1"), h.projection("c2")];
        const w1 = h.worker(consumers, options);
        const r1 = w1.start().then(() => null, (error) => error);
        await until(async () => (await status(h.sql)).leader?.workerId === "w-1", {
          clock: h.clock,
          step: 100,
          what: "w-1 leads",
        });
        const w2 = h.worker(consumers, options);
        const r2 = w2.start();
        await waitSettled(h, [w1, w2], "both running");
        await h.sql`DELETE FROM worker_nodes WHERE worker_id = 'w-1'`; // cascades to the lease
        await until(async () => (await status(h.sql)).leader?.workerId === "w-2", {
          clock: h.clock,
          step: 100,
          what: "w-2 leads",
        });
        await until(() => !w1.running, { clock: h.clock, step: 100, what: "w-1 stops itself" });
        assert.ok((await r1) instanceof WorkerRegistrationLostError, String(await r1));
        await waitSettled(h, [w2], "w-2 owns both");
        await w2.stop();
        await r2;
      });
    },
  );

  it(
    "scenario 21: 25 consumers over 1 → 2 → 3 → 5 → 7 → 5 → 3 → 1 workers: balanced, sticky, exactly once in order",
    { timeout: 180_000 },
    async (t) => {
      await withFleet(t, async (h) => {
        await h.sql`CREATE TABLE handled (seq BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL,
          position BIGINT NOT NULL, worker TEXT NOT NULL, UNIQUE (consumer, position))`;
        const names = Array.from({ length: 25 }, (_, i) => `p${String(i).padStart(2, "0")}`);
        const consumers: Consumer[] = names.map((name) => ({
          name,
          async handle(tx, event, context) {
            await tx`INSERT INTO handled (consumer, position, worker)
              VALUES (${name}, ${event.globalPosition}, ${context.workerId})`;
          },
        }));
        const active: Worker[] = [];
        const runs = new Map<Worker, Promise<void>>();
        let latest = 0;
        // Each worker registers all 25: its pool needs a connection per consumer plus one.
        const pool = h.db.connect({ max: names.length + 1, onnotice: () => {} });
        for (const size of [1, 2, 3, 5, 7, 5, 3, 1]) {
          const before = await assignments(h);
          while (active.length < size) {
            const worker = h.worker(consumers, FLEET, pool);
            runs.set(worker, worker.start());
            active.push(worker);
          }
          while (active.length > size) {
            const worker = active.shift()!;
            await worker.stop();
            await runs.get(worker);
          }
          await waitSettled(h, active, `${size} worker(s)`);
          const now = await assignments(h);
          const counts = Object.values(countsOf(now));
          assert.ok(
            counts.every((n) => n === Math.floor(25 / size) || n === Math.ceil(25 / size)),
            `${size} workers: ${JSON.stringify(countsOf(now))}`,
          );
          // Sticky: a consumer whose owner is still active stayed unless its owner had too many.
          const live = new Set(active.map((w) => w.id));
          const quota = Math.ceil(25 / size);
          const keptPerWorker = new Map<string, number>();
          for (const [name, owner] of before) {
            if (owner !== null && live.has(owner) && now.get(name) === owner) {
              keptPerWorker.set(owner, (keptPerWorker.get(owner) ?? 0) + 1);
            }
          }
          for (const [name, owner] of before) {
            if (owner !== null && live.has(owner) && now.get(name) !== owner) {
              assert.ok(
                (keptPerWorker.get(owner) ?? 0) >= quota - 1,
                `${name} moved off ${owner} although it kept only ${keptPerWorker.get(owner)}`,
              );
            }
          }
          for (let i = 0; i < 5; i++) latest = await h.append();
          await caughtUp(h, names, latest);
          const recent = await h.sql`SELECT consumer, worker FROM handled
            WHERE position > ${latest - 5}`;
          for (const row of recent) {
            assert.equal(row.worker, now.get(row.consumer), `${row.consumer} handled by its owner`);
          }
        }
        for (const name of names) {
          const rows = await h.sql`SELECT position FROM handled WHERE consumer = ${name}
            ORDER BY seq`;
          assert.deepEqual(
            rows.map((r) => Number(r.position)),
            Array.from({ length: latest }, (_, i) => i + 1),
            `${name}: every position once, in order`,
          );
        }
        for (const worker of active) await worker.stop();
        await Promise.all(runs.values());
      });
    },
  );
});
