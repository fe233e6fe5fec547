import { describe, it } from "node:test";
import assert from "node:assert/strict";
import postgres from "postgres";
import { migrate as migrateStore } from "../store/migration.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { testDatabase } from "../testing/test_database.ts";
import { WorkerConfigError, WorkerSetupError } from "./errors.ts";
import { migrate } from "./postgres/migration.ts";
import { Worker } from "./worker.ts";
import { runtimeOf } from "./base_worker.ts";

// Never connects: postgres.js opens connections lazily.
const sql = postgres("postgres://nobody@127.0.0.1:1/none", { max: 1 });
const store = new PostgresStore();
const consumer = { name: "c", handle() {} };

describe("new Worker validates before touching the database", () => {
  const bad: Array<[string, () => unknown, RegExp]> = [
    [
      "a transaction-like sql",
      () => new Worker({} as never, store, [consumer]),
      /sql must be a postgres.js pool/,
    ],
    [
      "a store without reads",
      () => new Worker(sql, {} as never, [consumer]),
      /store must be a PostgresStore/,
    ],
    [
      "notify without a channel",
      () => new Worker(sql, store, [consumer], { dispatcher: "notify" }),
      /needs a channel/,
    ],
    [
      "an invalid channel",
      () => new Worker(sql, store, [consumer], { dispatcher: "notify", notifyChannel: "bad-name" }),
      /notifyChannel "bad-name" is not a valid identifier/,
    ],
    [
      "a schema-qualified channel",
      () => new Worker(sql, store, [consumer], { dispatcher: "notify", notifyChannel: "a.b" }),
      /no schema allowed/,
    ],
    [
      "an invalid table name",
      () => new Worker(sql, store, [consumer], { consumerCheckpointsTable: "x; drop table y" }),
      /consumerCheckpointsTable/,
    ],
    ["a bad option", () => new Worker(sql, store, [consumer], { batchSize: -5 }), /batchSize/],
    [
      "an unknown option",
      () => new Worker(sql, store, [consumer], { batchsize: 5 } as never),
      /unknown worker option/,
    ],
    [
      "a bad consumer",
      () => new Worker(sql, store, [{ name: "x" }] as never),
      /needs a handle or handleBatch/,
    ],
    [
      "an invalid coordination channel",
      () => new Worker(sql, store, [consumer], { coordinationChannel: "a.b" }),
      /coordinationChannel "a.b" is not a valid identifier/,
    ],
    [
      "an invalid leader table",
      () => new Worker(sql, store, [consumer], { leaderElectionTable: "x y" }),
      /leaderElectionTable/,
    ],
    [
      "a bad notify connection",
      () => new Worker(sql, store, [consumer], { notifyConnection: 5 as never }),
      /notifyConnection/,
    ],
  ];
  for (const [label, make, message] of bad) {
    it(`rejects ${label}`, () => {
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof WorkerConfigError, String(error));
        assert.match((error as Error).message, message);
        return true;
      });
    });
  }

  it("accepts the store's channel for notify and table names with a schema", () => {
    const worker = new Worker(sql, new PostgresStore({ notifyChannel: "Events" }), [consumer], {
      dispatcher: "notify",
      workerId: "w-7",
      consumerCheckpointsTable: "infra.checkpoints",
    });
    assert.equal(worker.id, "w-7");
    assert.equal(runtimeOf(worker).options.dispatcher, "notify");
    assert.equal(worker.running, false);
  });
});

describe("Worker.start checks the schema", () => {
  it(
    "rejects with WorkerSetupError when the worker tables are missing",
    { timeout: 30_000 },
    async () => {
      const db = await testDatabase();
      try {
        await migrateStore(db.sql);
        const worker = new Worker(db.sql, new PostgresStore(), [consumer]);
        await assert.rejects(worker.start(), (error: unknown) => {
          assert.ok(error instanceof WorkerSetupError, String(error));
          assert.match(
            (error as Error).message,
            /missing tables: worker_nodes, consumer_assignments/,
          );
          return true;
        });
        assert.equal(worker.running, false);
      } finally {
        await db.close();
      }
    },
  );

  it(
    "rejects with WorkerSetupError when the position sequence caches values",
    { timeout: 30_000 },
    async () => {
      const db = await testDatabase();
      try {
        await migrateStore(db.sql);
        await migrate(db.sql);
        await db.sql`ALTER SEQUENCE events_global_position_seq CACHE 20`;
        const worker = new Worker(db.sql, new PostgresStore(), [consumer]);
        await assert.rejects(worker.start(), (error: unknown) => {
          assert.ok(error instanceof WorkerSetupError, String(error));
          assert.match(
            (error as Error).message,
            /has CACHE 20.*ALTER SEQUENCE .*events_global_position_seq CACHE 1/,
          );
          return true;
        });
        const nodes = await db.sql`SELECT count(*)::int AS n FROM worker_nodes`;
        assert.equal(nodes[0].n, 0, "nothing was registered");
      } finally {
        await db.close();
      }
    },
  );
});
