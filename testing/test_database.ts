import postgres, { type Options as PostgresOptions, type PostgresType, type Sql } from "postgres";
import { readEnv as env } from "../internal/env.ts";
import { hostname } from "node:os";
import process from "node:process";
import { type EmbeddedDatabase, startEmbeddedDatabase } from "./embedded_database.ts";

/**
 * Where a {@link TestDatabase} lives.
 *
 * @example
 * ```ts
 * import { testDatabase, type TestDatabaseKind } from "@eventsalsa/eventsalsa/testing";
 * const db = await testDatabase();
 * const kind: TestDatabaseKind = db.kind; // "postgres", "docker" or "pglite"
 * await db.close();
 * ```
 */
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
  /**
   * Real server from the environment, a testcontainers PostgreSQL (untested: no Docker in the
   * project's CI), or the embedded PGlite.
   */
  readonly kind: TestDatabaseKind;
  /** Server URL (without the schema; pass `schema` as `search_path` to connect elsewhere). */
  readonly url: string;
  /** The isolated schema's name. */
  readonly schema: string;
  /** A pool bound to the schema. */
  readonly sql: Sql;
  /** False on PGlite, which serves one session: tests needing several connections must skip. */
  readonly supportsConcurrency: boolean;
  /** The one-line reason to print when skipping a multi-connection test, or null. */
  readonly concurrencySkipReason: string | null;
  /** Another pool bound to the schema, e.g. `{ prepare: false }` or `{ max: 20 }`. */
  connect(options?: PostgresOptions<Record<string, PostgresType>>): Sql;
  /**
   * A URL that lands in the schema, for tools that take a URL (the CLI): `url` with
   * `?search_path=schema`, or, through a pooler, the test's own database as is.
   */
  readonly schemaUrl: string;
  /** The server URL that bypasses the pooler (e.g. for `LISTEN`); `url` when there is none. */
  readonly directUrl: string;
  /**
   * A pool bound to the schema that bypasses the pooler (for `LISTEN` and session state); the
   * same as `connect` when there is no pooler.
   */
  connectDirect(options?: PostgresOptions<Record<string, PostgresType>>): Sql;
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
  /**
   * The URL of a transaction pooler (PgBouncer with `pool_mode = transaction` and a `*` entry
   * under `[databases]`) in front of the configured server. The test then gets a database of its
   * own instead of a schema (a pooler passes no `search_path` on), `schema` is its `public`, and
   * `url`, `sql` and `connect` go through the pooler with `prepare: false`; `connectDirect` does
   * not. Databases are reset and reused within a process and dropped when it stops using them.
   */
  pooler?: string;
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
 * The server is resolved once per process; every call gets its own schema. The container path
 * (testcontainers, loaded only when a Docker socket answers) is untested: the project's CI has no
 * Docker engine.
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
  if (options.pooler !== undefined) return await pooledTestDatabase(options.pooler);
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
    schemaUrl: withSearchPath(url, schema),
    directUrl: url,
    connectDirect: connect,
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

/** `url` with `search_path` set in its query. */
function withSearchPath(url: string, schema: string): string {
  return `${url}${url.includes("?") ? "&" : "?"}search_path=${schema}`;
}

/** `url` pointing at another database on the same server. */
function onDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.href;
}

/** Pooled test databases: free ones are reused, the rest dropped once the process stops using them. */
const pooled = {
  free: [] as string[],
  users: 0,
  dropTimer: undefined as ReturnType<typeof setTimeout> | undefined,
  swept: false,
};

/** A short tag of this machine, so a sweep only judges databases made by processes here. */
function hostTag(): string {
  let hash = 2166136261;
  for (const char of hostname()) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
  return hash.toString(16).padStart(8, "0");
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // Only "no such process" means gone (a permission error says nothing about it).
    return (error as { code?: string }).code !== "ESRCH";
  }
}

/**
 * Drops the pooled databases that processes on this machine left behind when they exited before
 * their drop timer fired (a test runner exits once its last test is done).
 */
async function sweepStaleDatabases(serverUrl: string): Promise<void> {
  const admin = postgres(serverUrl, { onnotice: () => {}, max: 4 });
  try {
    await sweepWith(admin);
  } finally {
    await admin.end();
  }
}

async function sweepWith(admin: Sql): Promise<void> {
  const rows = await admin.unsafe(
    `SELECT datname FROM pg_database WHERE datname LIKE 'eventsalsa\\_pooled\\_%'`,
  ).values();
  const stale = (rows as string[][]).map(([name]) => name).filter((name) => {
    const [, host, pid] = /^eventsalsa_pooled_([0-9a-f]{8})_(\d+)_/.exec(name) ?? [];
    return host === hostTag() && pid !== undefined && !processAlive(Number(pid));
  });
  await Promise.all(
    stale.map((name) =>
      admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {})
    ),
  );
}

async function pooledTestDatabase(pooler: string): Promise<TestDatabase> {
  const server = await (servers.auto ??= resolveServer("auto"));
  if (server.kind === "pglite") {
    throw new Error("testDatabase({ pooler }) needs a PostgreSQL server (set DATABASE_URL)");
  }
  clearTimeout(pooled.dropTimer);
  pooled.users++;
  const base = { onnotice: () => {}, max: 10 };
  let database = pooled.free.pop();
  if (database === undefined) {
    database = `eventsalsa_pooled_${hostTag()}_${process.pid}_${
      crypto.randomUUID().replaceAll("-", "").slice(0, 8)
    }`;
    if (!pooled.swept) {
      pooled.swept = true;
      // In the background: dropping a database can take seconds, and nothing here needs it gone.
      sweepStaleDatabases(server.url).catch(() => {});
    }
    const admin = postgres(server.url, { ...base, max: 1 });
    try {
      await admin.unsafe(`CREATE DATABASE "${database}"`);
    } finally {
      await admin.end();
    }
  }
  const url = onDatabase(pooler, database);
  const directUrl = onDatabase(server.url, database);
  const pools: Sql[] = [];
  const open = (target: string, extra: PostgresOptions<Record<string, PostgresType>>): Sql => {
    const pool = postgres(target, { ...base, ...extra });
    pools.push(pool);
    return pool;
  };
  // Named prepared statements do not survive a transaction pooler: the next transaction may run
  // on another server connection.
  const connect = (extra: PostgresOptions<Record<string, PostgresType>> = {}): Sql =>
    open(url, { ...extra, prepare: false });
  const name = database;
  return {
    kind: server.kind,
    url,
    schema: "public",
    sql: connect(),
    supportsConcurrency: true,
    concurrencySkipReason: null,
    connect,
    schemaUrl: url,
    directUrl,
    connectDirect: (extra = {}) => open(directUrl, extra),
    async close(): Promise<void> {
      await Promise.all(pools.map((pool) => pool.end({ timeout: 5 })));
      // Reset rather than drop: creating a database costs far more than emptying one.
      const admin = postgres(directUrl, { ...base, max: 1 });
      try {
        const schemas = await admin.unsafe(
          `SELECT nspname FROM pg_namespace
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'`,
        ).values();
        await admin.unsafe(
          schemas.map(([schema]) => `DROP SCHEMA "${schema}" CASCADE;`).join("\n") +
            "\nCREATE SCHEMA public;",
        );
        pooled.free.push(name);
      } catch {
        // Left for the sweep of a later run.
      } finally {
        await admin.end();
      }
      if (--pooled.users === 0) {
        pooled.dropTimer = setTimeout(async () => {
          const admin = postgres(server.url, { ...base, max: 1 });
          try {
            for (const free of pooled.free.splice(0)) {
              await admin.unsafe(`DROP DATABASE IF EXISTS "${free}" WITH (FORCE)`);
            }
          } catch {
            // Left for the sweep of a later run.
          } finally {
            await admin.end();
          }
        }, 100);
      }
    },
  };
}
