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

/**
 * Connects the example to DATABASE_URL (in its own schema, so the example neither sees nor
 * disturbs other data in that database) or to a fresh embedded database.
 */
export async function connect(schema = "eventsalsa_examples"): Promise<ExampleDatabase> {
  const url = readEnv("DATABASE_URL");
  if (url) {
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } finally {
      await admin.end();
    }
    const sql = postgres(url, { max: 4, onnotice: () => {}, connection: { search_path: schema } });
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
