/**
 * A strongly consistent (inline) projection: the read model is updated in the same transaction as
 * the append, so a reader never sees the event without its effect, or the reverse.
 *
 *   deno run -A examples/inline_projection.ts
 */
import { any, migrate, PostgresStore } from "../store/mod.ts";
import type postgres from "postgres";
import { connect } from "./connect.ts";

const db = await connect();
try {
  await migrate(db.sql);
  await db.sql`CREATE TABLE IF NOT EXISTS account_balances (
    account_id text PRIMARY KEY, balance numeric NOT NULL, version bigint NOT NULL)`;
  const store = new PostgresStore();
  const accountId = `acc-${crypto.randomUUID().slice(0, 8)}`;

  const deposit = async (tx: postgres.TransactionSql, amount: number): Promise<void> => {
    const result = await store.append(tx, any(), [{
      aggregateType: "Account",
      aggregateId: accountId,
      eventType: "MoneyDeposited",
      payload: new TextEncoder().encode(JSON.stringify({ amount })),
    }]);
    await tx`INSERT INTO account_balances (account_id, balance, version)
      VALUES (${accountId}, ${amount}, ${result.toVersion})
      ON CONFLICT (account_id) DO UPDATE
      SET balance = account_balances.balance + excluded.balance, version = excluded.version`;
  };

  await db.sql.begin((tx) => deposit(tx, 100));
  await db.sql.begin((tx) => deposit(tx, 25));
  try {
    await db.sql.begin(async (tx) => {
      await deposit(tx, 1_000_000);
      throw new Error("fraud check failed");
    });
  } catch (error) {
    console.log(
      `rolled back: ${(error as Error).message} (neither the event nor the balance stayed)`,
    );
  }
  const [row] = await db.sql`SELECT balance::float8 AS balance, version::int AS version
    FROM account_balances WHERE account_id = ${accountId}`;
  const head = await store.headVersion(db.sql, "Account", accountId);
  console.log(
    `${accountId}: balance ${row.balance} at version ${row.version}; stream head ${head}`,
  );
  if (row.balance !== 125 || row.version !== head) throw new Error("read model out of step");
} finally {
  await db.close();
}
