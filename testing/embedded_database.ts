import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

/**
 * An in-process PostgreSQL (PGlite, compiled to WebAssembly) served on a local TCP socket, so
 * postgres.js talks to it exactly as to a real server. One session only: connect with `max: 1`.
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import { startEmbeddedDatabase } from "@eventsalsa/eventsalsa/testing";
 * const embedded = await startEmbeddedDatabase();
 * const sql = postgres(embedded.url, { max: 1 });
 * console.log(await sql`select 1 as one`);
 * await sql.end();
 * await embedded.close();
 * ```
 */
export interface EmbeddedDatabase {
  /** A `postgres://` URL for postgres.js. */
  readonly url: string;
  /** Runs SQL directly on the embedded engine, bypassing the socket. */
  exec(sql: string): Promise<void>;
  /** Stops the socket server and the engine. */
  close(): Promise<void>;
}

/**
 * Options for {@link startEmbeddedDatabase}.
 *
 * @example
 * ```ts
 * import type { EmbeddedDatabaseOptions } from "@eventsalsa/eventsalsa/testing";
 * const options: EmbeddedDatabaseOptions = { dataDir: "./.eventsalsa-data" };
 * ```
 */
export interface EmbeddedDatabaseOptions {
  /** Directory to keep data in between runs; in memory when omitted. */
  dataDir?: string;
}

/**
 * Starts PGlite and a socket server for it on 127.0.0.1 at a free port.
 *
 * @example
 * ```ts
 * import { startEmbeddedDatabase } from "@eventsalsa/eventsalsa/testing";
 * const { url, close } = await startEmbeddedDatabase();
 * console.log(url);
 * await close();
 * ```
 */
export async function startEmbeddedDatabase(
  options: EmbeddedDatabaseOptions = {},
): Promise<EmbeddedDatabase> {
  const db = options.dataDir === undefined
    ? await PGlite.create()
    : await PGlite.create({ dataDir: options.dataDir });
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0 });
  await server.start();
  return {
    url: `postgres://postgres@${server.getServerConn()}/postgres`,
    async exec(sql: string): Promise<void> {
      await db.exec(sql);
    },
    async close(): Promise<void> {
      await server.stop();
      await db.close();
    },
  };
}
