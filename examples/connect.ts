/**
 * Shared by the examples: a postgres.js pool on DATABASE_URL, or on the embedded PGlite when it is
 * unset, and the way to close both.
 */
import postgres from "postgres";
import { startEmbeddedDatabase } from "../testing/mod.ts";
import { readEnv } from "../internal/env.ts";

/** A connected pool and its cleanup. */
export interface ExampleDatabase {
  sql: postgres.Sql;
  embedded: boolean;
  close(): Promise<void>;
}

/** Connects the example to DATABASE_URL or to a fresh embedded database. */
export async function connect(): Promise<ExampleDatabase> {
  const url = readEnv("DATABASE_URL");
  if (url) {
    const sql = postgres(url, { max: 4, onnotice: () => {} });
    return { sql, embedded: false, close: () => sql.end() };
  }
  const embedded = await startEmbeddedDatabase();
  const sql = postgres(embedded.url, { max: 1, onnotice: () => {} });
  return {
    sql,
    embedded: true,
    async close() {
      await sql.end();
      await embedded.close();
    },
  };
}
