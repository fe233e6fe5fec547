import type { ReservedSql, Sql, TransactionSql } from "postgres";
import { begin } from "./transaction.ts";

/**
 * What every component accepts as "the caller's transaction": a postgres.js `TransactionSql` from
 * `sql.begin(...)`, or (for convenience) the pool or a reserved connection, in which case the
 * component opens its own transaction where it needs one.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import type { SqlExecutor } from "@eventsalsa/eventsalsa/store";
 *
 * async function count(sql: SqlExecutor): Promise<number> {
 *   const [row] = await sql`select count(*)::int as n from events`;
 *   return row.n;
 * }
 * const sql = postgres(process.env.DATABASE_URL!);
 * await count(sql); // the pool
 * await sql.begin((tx) => count(tx)); // a transaction
 * ```
 */
export type SqlExecutor =
  // deno-lint-ignore no-explicit-any
  | Sql<any>
  // deno-lint-ignore no-explicit-any
  | ReservedSql<any>
  // deno-lint-ignore no-explicit-any
  | TransactionSql<any>;

/** A pool or reserved connection, as opposed to a transaction: it can `begin`. */
// deno-lint-ignore no-explicit-any
export function isPool(sql: SqlExecutor): sql is Sql<any> {
  return typeof (sql as { begin?: unknown }).begin === "function";
}

/** Runs `work` in the caller's transaction, or in a new one when given a pool. */
export async function inTransaction<T>(
  sql: SqlExecutor,
  // deno-lint-ignore no-explicit-any
  work: (tx: TransactionSql<any>) => Promise<T>,
): Promise<T> {
  if (isPool(sql)) return await begin(sql, (tx) => work(tx));
  return await work(sql);
}
