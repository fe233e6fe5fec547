/**
 * Runs prebuilt SQL text with bound parameters, following the connection's own `prepare` setting
 * (so `prepare: false`, e.g. behind PgBouncer, stays unprepared), as the store does.
 *
 * @module
 */
import type postgres from "postgres";
import type { SqlExecutor } from "./postgres_client.ts";

/** A pool, reserved connection or transaction (the one executor type of the project). */
export type Executor = SqlExecutor;

/** Row values of a statement (no column-name objects: cheaper). */
export type Rows = unknown[][];

/** Whether the executor prepares statements (postgres.js default: yes). */
export function prepares(sql: Executor): boolean {
  return (sql as { options?: { prepare?: boolean } }).options?.prepare ?? true;
}

/** Builds (does not yet send) a statement; await it, or `.execute()` it to pipeline. */
export function statement(
  sql: Executor,
  text: string,
  params: readonly unknown[],
): postgres.PendingValuesQuery<Rows> {
  return sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: prepares(sql) })
    .values() as unknown as postgres.PendingValuesQuery<Rows>;
}

/** Runs a statement and returns its rows as arrays. */
export async function run(
  sql: Executor,
  text: string,
  params: readonly unknown[] = [],
): Promise<Rows> {
  return await statement(sql, text, params) as unknown as Rows;
}

/** Runs a statement and returns how many rows it affected. */
export async function affected(
  sql: Executor,
  text: string,
  params: readonly unknown[] = [],
): Promise<number> {
  const result = await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], {
    prepare: prepares(sql),
  });
  return result.count;
}
