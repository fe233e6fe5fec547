import type postgres from "postgres";
import { begin } from "./transaction.ts";

/**
 * Serialises concurrent migrations of one database (two processes starting at once), for the
 * store, worker and encryption schemas alike.
 */
export const MIGRATION_LOCK_KEY = 7_290_412_853;

/**
 * Applies DDL in one transaction under an advisory lock, so concurrent starts do not race on
 * `CREATE ... IF NOT EXISTS`.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import { applyMigration, migrationSql } from "@eventsalsa/eventsalsa/store";
 * const sql = postgres(Deno.env.get("DATABASE_URL")!);
 * await applyMigration(sql, migrationSql());
 * ```
 */
export async function applyMigration(sql: postgres.Sql, ddl: string): Promise<void> {
  await begin(sql, async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx.unsafe(ddl);
  });
}
