/**
 * An asynchronous projection of `Account` events, run by a worker with batch size 100 and a
 * 500 ms poll interval. Its writes go through the batch's `tx`,
 * so they commit together with the checkpoint: effectively once.
 *
 *   deno run -A examples/account_projection.ts
 */
import { any, migrate as migrateStore, PostgresStore } from "../store/mod.ts";
import { type Consumer, migrate as migrateWorker, Worker } from "../worker/mod.ts";
import { connect } from "./connect.ts";

const db = await connect();
try {
  await migrateStore(db.sql);
  await migrateWorker(db.sql);
  await db.sql`CREATE TABLE IF NOT EXISTS account_summaries (
    account_id text PRIMARY KEY, deposits int NOT NULL, balance numeric NOT NULL)`;

  // A consumer is a plain object: no base class, no framework types in your domain model.
  const accountProjection: Consumer = {
    name: "account_projection",
    aggregateTypes: ["Account"],
    async handle(tx, event) {
      const { amount } = JSON.parse(new TextDecoder().decode(event.payload));
      await tx`INSERT INTO account_summaries (account_id, deposits, balance)
        VALUES (${event.aggregateId}, 1, ${amount})
        ON CONFLICT (account_id) DO UPDATE SET deposits = account_summaries.deposits + 1,
          balance = account_summaries.balance + excluded.balance`;
    },
  };

  const store = new PostgresStore();
  const accountId = `account-${crypto.randomUUID().slice(0, 8)}`;
  for (const amount of [100, 250, 75]) {
    await store.append(db.sql, any(), [{
      aggregateType: "Account",
      aggregateId: accountId,
      eventType: "MoneyDeposited",
      payload: new TextEncoder().encode(JSON.stringify({ amount })),
    }]);
  }

  const worker = new Worker(db.sql, store, [accountProjection], {
    batchSize: 100,
    pollInterval: 500,
  });
  const controller = new AbortController();
  const running = worker.start(controller.signal);
  // Read-your-writes: wait until the projection has handled everything appended so far.
  await worker.waitForPosition(await store.latestPosition(db.sql), { timeout: 30_000 });
  controller.abort();
  await running;
  const [row] = await db.sql`SELECT deposits, balance::float8 AS balance FROM account_summaries
    WHERE account_id = ${accountId}`;
  console.log(`${accountId}: ${row.deposits} deposits, balance ${row.balance}`);
} finally {
  await db.close();
}
