import postgres from "postgres";
import { readEnv as env } from "../internal/env.ts";
import { type EmbeddedDatabase, startEmbeddedDatabase } from "./embedded_database.ts";

/** Where a {@link TestDatabase} lives. */
export type TestDatabaseKind = "postgres" | "docker" | "pglite";

/**
 * An isolated schema for one test: a fresh schema on the resolved server, and postgres.js pools
 * whose `search_path` points at it, so tests create and use unqualified table names freely.
 *
 * @example
 * ```ts
 * import { it } from "node:test";
 * import { testDatabase } from "@eventsalsa/eventsalsa/testing";
 * it("uses a database", async (t) => {
 *   const db = await testDatabase();
 *   try {
 *     if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
 *     await db.sql`create table t (x int)`;
 *   } finally {
 *     await db.close();
 *   }
 * });
 * ```
 */
export interface TestDatabase {
  /** Real server from the environment, a testcontainers PostgreSQL, or the embedded PGlite. */
  readonly kind: TestDatabaseKind;
  /** Server URL (without the schema; pass `schema` as `search_path` to connect elsewhere). */
  readonly url: string;
  /** The isolated schema's name. */
  readonly schema: string;
  /** A pool bound to the schema. */
  readonly sql: postgres.Sql;
  /** False on PGlite, which serves one session: tests needing several connections must skip. */
  readonly supportsConcurrency: boolean;
  /** The one-line reason to print when skipping a multi-connection test, or null. */
  readonly concurrencySkipReason: string | null;
  /** Another pool bound to the schema, e.g. `{ prepare: false }` or `{ max: 20 }`. */
  connect(options?: postgres.Options<Record<string, postgres.PostgresType>>): postgres.Sql;
  /** Ends every pool this database handed out and drops the schema. */
  close(): Promise<void>;
}

/**
 * Options for {@link testDatabase}.
 *
 * @example
 * ```ts
 * import { testDatabase } from "@eventsalsa/eventsalsa/testing";
 * const db = await testDatabase({ prepare: false });
 * await db.close();
 * ```
 */
export interface TestDatabaseOptions {
  /** postgres.js `prepare` for `sql` (true when omitted). */
  prepare?: boolean;
  /** `"embedded"` forces PGlite even when a server URL is configured; `"auto"` by default. */
  server?: "auto" | "embedded";
}

const PGLITE_REASON =
  "needs several real connections; the embedded PGlite serves one session (set DATABASE_URL to run it)";

interface Server {
  kind: TestDatabaseKind;
  url: string;
  embedded?: EmbeddedDatabase;
  /** Open test databases on an embedded server; it stops when the count drops to zero. */
  users: number;
  stopTimer?: ReturnType<typeof setTimeout>;
}

const servers: Record<"auto" | "embedded", Promise<Server> | null> = { auto: null, embedded: null };

async function dockerReachable(): Promise<boolean> {
  if (env("DOCKER_HOST")) return true;
  try {
    const { stat } = await import("node:fs/promises");
    const info = await stat("/var/run/docker.sock");
    if (!info.isSocket()) return false;
    const { connect } = await import("node:net");
    return await new Promise<boolean>((resolve) => {
      const socket = connect("/var/run/docker.sock");
      socket.once("connect", () => {
        socket.end();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
  } catch {
    return false;
  }
}

async function startDocker(): Promise<Server | null> {
  try {
    // Optional: loaded only when Docker answers; not a declared dependency (docs/decisions.md).
    const specifier = "Deno" in globalThis ? "npm:testcontainers@12.2.0" : "testcontainers";
    const { GenericContainer, Wait } = await import(specifier);
    const container = await new GenericContainer("postgres:16-alpine")
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust" })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2))
      .start();
    return {
      users: 0,
      kind: "docker",
      url: `postgres://postgres@${container.getHost()}:${container.getMappedPort(5432)}/postgres`,
    };
  } catch {
    return null;
  }
}

async function resolveServer(which: "auto" | "embedded"): Promise<Server> {
  if (which === "embedded") {
    const embedded = await startEmbeddedDatabase();
    return { kind: "pglite", url: embedded.url, embedded, users: 0 };
  }
  const url = env("EVENTSALSA_TEST_DATABASE_URL") ?? env("DATABASE_URL");
  if (url) return { kind: "postgres", url, users: 0 };
  if (await dockerReachable()) {
    const docker = await startDocker();
    if (docker) return docker;
  }
  const embedded = await startEmbeddedDatabase();
  return { kind: "pglite", url: embedded.url, embedded, users: 0 };
}

/**
 * Opens an isolated test schema. Resolution order: `EVENTSALSA_TEST_DATABASE_URL` or
 * `DATABASE_URL`, then a PostgreSQL container when Docker is reachable, then the embedded PGlite.
 * The server is resolved once per process; every call gets its own schema.
 *
 * @example
 * ```ts
 * import { testDatabase } from "@eventsalsa/eventsalsa/testing";
 * const db = await testDatabase();
 * await db.sql`create table notes (body text)`;
 * await db.close();
 * ```
 */
export async function testDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const which = options.server ?? "auto";
  const server = servers[which] ??= resolveServer(which);
  const resolved = await server;
  const { kind, url, embedded } = resolved;
  const schema = `eventsalsa_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const pools: postgres.Sql[] = [];
  const base = { onnotice: () => {}, max: kind === "pglite" ? 1 : 10 };
  if (embedded) {
    clearTimeout(resolved.stopTimer);
    resolved.users++;
    // One shared session: its search_path is the schema of the test running now.
    await embedded.exec(`CREATE SCHEMA ${schema}; SET search_path TO ${schema}`);
  } else {
    const admin = postgres(url, { ...base, max: 1 });
    try {
      await admin.unsafe(`CREATE SCHEMA ${schema}`);
    } finally {
      await admin.end();
    }
  }
  const connect = (
    extra: postgres.Options<Record<string, postgres.PostgresType>> = {},
  ): postgres.Sql => {
    const pool = postgres(url, {
      ...base,
      ...extra,
      ...(kind === "pglite" ? { max: 1 } : {}),
      connection: { ...extra.connection, search_path: schema },
    });
    pools.push(pool);
    return pool;
  };
  const sql = connect({ prepare: options.prepare ?? true });
  return {
    kind,
    url,
    schema,
    sql,
    supportsConcurrency: kind !== "pglite",
    concurrencySkipReason: kind === "pglite" ? PGLITE_REASON : null,
    connect,
    async close(): Promise<void> {
      await Promise.all(pools.map((pool) => pool.end({ timeout: 5 })));
      if (embedded) {
        await embedded.exec(`DROP SCHEMA ${schema} CASCADE; SET search_path TO public`);
        if (--resolved.users === 0) {
          // Stop the engine once the process stops using it, so nothing keeps the runtime alive.
          resolved.stopTimer = setTimeout(() => {
            if (servers[which] === server) servers[which] = null;
            void embedded.close();
          }, 50);
        }
      } else {
        const admin = postgres(url, { ...base, max: 1 });
        try {
          await admin.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        } finally {
          await admin.end();
        }
      }
    },
  };
}
