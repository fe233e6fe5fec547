// The PostgreSQL adapter's building blocks on real transactions: the gap token (docs/design.md), the
// blockers it names, and the fence of the batch transaction.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { GapToken, WindowRead } from "../core/gap_rule.ts";
import { firstWindow, until } from "../support_test.ts";
import { PostgresCoordinator } from "./coordinator.ts";
import { type PgHarness, pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { workerTables } from "./tables.ts";

const T = { timeout: 30_000 };
const signal = new AbortController().signal;

async function withCoordinator(
  t: { name?: string; skip(message?: string): void },
  body: (h: PgHarness, c: PostgresCoordinator) => Promise<void>,
): Promise<void> {
  const h = await pgHarness();
  try {
    if (skipWithoutConcurrency(t, h.db)) return;
    await body(
      h,
      new PostgresCoordinator(h.sql, h.store, { tables: workerTables(), notifyChannel: null }),
    );
  } finally {
    await h.close();
  }
}

const positions = (read: WindowRead) => read.events.map((e) => e.globalPosition);

/**
 * Reads until the token has resolved. Resolution waits for every transaction of the cluster that
 * was open when the token was taken, so a concurrent suite on the same server can delay it (never
 * fake it): poll with a bounded deadline instead of expecting it on the first read.
 */
async function resolvedRead(
  c: PostgresCoordinator,
  token: GapToken,
): Promise<WindowRead> {
  let read!: WindowRead;
  await until(
    async () => (read = await c.readWindow(firstWindow(token), signal)).pendingResolved,
    {
      what: "the token to resolve",
    },
  );
  return read;
}

describe("PostgresCoordinator: the gap token", () => {
  it(
    "stays unresolved while the append is open; after commit the late position is visible",
    T,
    async (t) => {
      await withCoordinator(t, async (h, c) => {
        await h.append(); // 1
        const held = await h.hold(); // 2
        await h.append(); // 3
        const first = await c.readWindow(firstWindow(), signal);
        assert.deepEqual(positions(first), [1, 3]);
        const token = await first.token();
        assert.equal(
          (await c.readWindow(
            firstWindow(token),
            signal,
          )).pendingResolved,
          false,
        );
        const blockers = await c.gapBlockers(token);
        assert.ok(blockers.some((b) => b.pid === held.pid), JSON.stringify(blockers));
        await held.commit();
        const after = await resolvedRead(c, token);
        assert.deepEqual(positions(after), [1, 2, 3]);
        assert.deepEqual(await c.gapBlockers(token), []);
      });
    },
  );

  it("after a rollback it resolves and the position never appears", T, async (t) => {
    await withCoordinator(t, async (h, c) => {
      const held = await h.hold(); // 1
      await h.append(); // 2
      const token = await (await c.readWindow(firstWindow(), signal)).token();
      await held.rollback();
      const after = await resolvedRead(c, token);
      assert.deepEqual(positions(after), [2]);
    });
  });

  it(
    "a token taken before the hole was seen can resolve while the hole is still open (why it must come after)",
    T,
    async (t) => {
      await withCoordinator(t, async (h, c) => {
        const early = await (await c.readWindow(firstWindow(), signal)).token();
        const held = await h.hold(); // 1, its xid is newer than the early token
        await h.append(); // 2
        // The early token resolves although the held append is still open: it says nothing
        // about it.
        const read = await resolvedRead(c, early);
        assert.deepEqual(positions(read), [2]);
        const late = await read.token();
        assert.equal(
          (await c.readWindow(
            firstWindow(late),
            signal,
          )).pendingResolved,
          false,
        );
        await held.rollback();
      });
    },
  );
});

describe("PostgresCoordinator: the batch fence", () => {
  it("refuses a worker that does not own the consumer, and a stale checkpoint", T, async (t) => {
    await withCoordinator(t, async (h, c) => {
      await c.registerWorker("w-1", [{ name: "p", startFrom: 0 }], 30_000);
      await h.sql`UPDATE consumer_assignments SET worker_id = 'w-1' WHERE consumer_name = 'p'`;
      const request = { consumer: "p", expectedCheckpoint: 0, signal, read: null };
      const work = () => Promise.resolve("ran");
      assert.deepEqual(await c.runBatch({ ...request, workerId: "w-2" }, work), {
        kind: "notOwner",
        owner: "w-1",
      });
      assert.deepEqual(
        await c.runBatch({ ...request, workerId: "w-1", expectedCheckpoint: 4 }, work),
        {
          kind: "checkpointMoved",
          checkpoint: 0,
        },
      );
      assert.deepEqual(await c.runBatch({ ...request, workerId: "w-1" }, work), {
        kind: "committed",
        value: "ran",
      });
      await c.unregisterWorker("w-1");
      assert.deepEqual(await c.runBatch({ ...request, workerId: "w-1" }, work), {
        kind: "notOwner",
        owner: null,
      });
    });
  });

  it(
    "serialises two batches of one consumer; the second sees the moved checkpoint and commits nothing",
    T,
    async (t) => {
      await withCoordinator(t, async (h, c) => {
        await h.append();
        await c.registerWorker("w-1", [{ name: "p", startFrom: 0 }], 30_000);
        await h.sql`UPDATE consumer_assignments SET worker_id = 'w-1' WHERE consumer_name = 'p'`;
        const request = {
          consumer: "p",
          workerId: "w-1",
          expectedCheckpoint: 0,
          signal,
          read: null,
        };
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        let entered!: () => void;
        const inside = new Promise<void>((resolve) => (entered = resolve));
        const first = c.runBatch(request, async (session) => {
          entered();
          await gate;
          await session.saveCheckpoint(1);
        });
        await inside;
        let secondRan = false;
        const second = c.runBatch(request, async (session) => {
          secondRan = true;
          await session.saveCheckpoint(1);
        });
        release();
        assert.equal((await first).kind, "committed");
        assert.deepEqual(await second, { kind: "checkpointMoved", checkpoint: 1 });
        assert.equal(secondRan, false);
        assert.equal(await c.readCheckpoint("p"), 1);
      });
    },
  );
});
