/**
 * `eventsalsa dashboard`: a live web page of the fleet, served by the CLI.
 *
 * @module
 */
import type postgres from "postgres";
import { keyStoreTables } from "../../encryption/migration.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { retryDeadLetter } from "../../worker/postgres/dead_letters.ts";
import { TABLE_OPTION_KEYS as WORKER_TABLES, workerTables } from "../../worker/postgres/tables.ts";
import type { Consumer } from "../../worker/types.ts";
import { connectFromEnvironment } from "../database.ts";
import { loadConsumers } from "../dead_letters.ts";
import { integerFlag, parseFlags, pickOptions, tableFlags } from "../flags.ts";
import { type CliIo, CliUsageError } from "../io.ts";
import { redactor } from "../redact.ts";
import { checkedSchemas, KEY_TABLES } from "../status.ts";
import { VERSION } from "../version.ts";
import { Monitor } from "./monitor.ts";
import {
  allowedHostNames,
  generateToken,
  isLoopback,
  MIN_TOKEN_LENGTH,
  parseOrigin,
  type SecurityPolicy,
  TOKEN_VARIABLE,
} from "./security.ts";
import { createHandler, type PageConfig, type Redrive, serve } from "./server.ts";

/**
 * The usage of `dashboard`.
 *
 * @example
 * ```ts
 * console.log(dashboardUsage); // what `eventsalsa dashboard --help` prints
 * ```
 */
export const dashboardUsage: string =
  `eventsalsa dashboard [--port 8080] [--host 127.0.0.1] [--interval ms] [--history minutes]
                     [--allow-actions [--module ./consumers.ts]] [--origin url] [table flags]
  A live web page: workers (live or dead, last heartbeat), the leader and its strategy, which
  worker owns which consumer, per consumer checkpoint, lag, events/s and a lag chart, gap waits
  with the blocking transaction, dead letters with their errors, encryption key counts. Read-only
  unless --allow-actions. Runs until interrupted (Ctrl-C).
    --port               TCP port (8080; 0 picks a free one)
    --host               address to listen on (127.0.0.1); one that is not loopback needs a token
    --interval           milliseconds between polls of the database (2000)
    --history            minutes of lag history the chart keeps, in memory (10)
    --heartbeat-timeout  milliseconds after which a worker counts as not live
    --allow-actions      allow redriving a skipped dead letter; actions need the token printed at
                         start (X-Eventsalsa-Token header), and the token then guards reading too
    --module             a file exporting your consumers, which redrive runs (as dead-letters retry)
    --origin             the public origin behind a reverse proxy (https://ops.example.com), may
                         repeat: accepted as Host and as Origin of actions
    table flags          --events-table, --heads-table, the worker's and --keys-table,
                         --keys-tombstone-table, as for migrate
  environment: ${TOKEN_VARIABLE}=a token of your own (at least ${MIN_TOKEN_LENGTH} characters)
               instead of a random one; every /api request then needs it`;

/**
 * What `eventsalsa dashboard` was asked for, checked before anything connects.
 *
 * @example
 * ```ts
 * const settings = dashboardSettings(["--port", "0"], { out() {}, err() {}, env: () => undefined });
 * ```
 */
export interface DashboardSettings {
  host: string;
  port: number;
  intervalMs: number;
  historyMs: number;
  heartbeatTimeout: number | undefined;
  allowActions: boolean;
  module: string | undefined;
  origins: string[];
  /** The token in force, or null (loopback, read-only, no token of one's own). */
  token: string | null;
  /** Whether the token came from the environment (then it is not printed). */
  tokenFromEnvironment: boolean;
  values: Record<string, unknown>;
}

/**
 * Parses and checks the flags: refuses a host that is not loopback unless a token is in force.
 *
 * @example
 * ```ts
 * import { captureIo } from "../capture_io.ts";
 * const settings = dashboardSettings(["--allow-actions"], captureIo());
 * console.log(settings.token?.length); // 64
 * ```
 */
export function dashboardSettings(args: string[], io: CliIo): DashboardSettings {
  const { values } = parseFlags(args, {
    port: { type: "string" },
    host: { type: "string" },
    interval: { type: "string" },
    history: { type: "string" },
    "heartbeat-timeout": { type: "string" },
    "allow-actions": { type: "boolean" },
    module: { type: "string" },
    origin: { type: "string", multiple: true },
    ...tableFlags(["eventsTable", "headsTable", ...WORKER_TABLES, ...KEY_TABLES]),
  });
  let port = 8080;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!/^\d{1,5}$/.test(String(values.port)) || port > 65535) {
      throw new CliUsageError(`--port must be a number from 0 to 65535, got ${values.port}`);
    }
  }
  const host = typeof values.host === "string" ? values.host : "127.0.0.1";
  if (host.trim() === "" || /[\s/@?#]/.test(host)) {
    throw new CliUsageError(
      `--host must be an address or a host name, got ${JSON.stringify(host)}`,
    );
  }
  const origins: string[] = [];
  for (const value of (values.origin as string[] | undefined) ?? []) {
    const origin = parseOrigin(value);
    if (origin === null) {
      throw new CliUsageError(
        `--origin must be an origin such as https://ops.example.com (scheme, host, port), ` +
          `got ${JSON.stringify(value)}`,
      );
    }
    origins.push(origin);
  }
  const allowActions = values["allow-actions"] === true;
  if (values.module !== undefined && !allowActions) {
    throw new CliUsageError("--module is for actions: add --allow-actions");
  }
  const own = io.env(TOKEN_VARIABLE);
  if (own !== undefined && own !== "") {
    if (own.length < MIN_TOKEN_LENGTH || !/^[0-9A-Za-z._~-]+$/.test(own)) {
      throw new CliUsageError(
        `${TOKEN_VARIABLE} must be at least ${MIN_TOKEN_LENGTH} characters of ` +
          `A-Z a-z 0-9 . _ ~ - (try: openssl rand -hex 32)`,
      );
    }
  }
  const token = own ? own : allowActions ? generateToken() : null;
  if (!isLoopback(host) && token === null) {
    throw new CliUsageError(
      `refusing to serve on ${host}, which is not a loopback address, without a token: ` +
        `add --allow-actions (a random token is printed) or set ${TOKEN_VARIABLE}; ` +
        `the token then guards reading as well`,
    );
  }
  return {
    host,
    port,
    intervalMs: integerFlag(values.interval, "interval", 2000)!,
    historyMs: integerFlag(values.history, "history", 10)! * 60_000,
    heartbeatTimeout: integerFlag(values["heartbeat-timeout"], "heartbeat-timeout"),
    allowActions,
    module: typeof values.module === "string" ? values.module : undefined,
    origins,
    token,
    tokenFromEnvironment: Boolean(own),
    values,
  };
}

/** `http://host:port/`, with an IPv6 address in brackets. */
function baseUrl(host: string, port: number): string {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return `http://${bare.includes(":") ? `[${bare}]` : bare}:${port}/`;
}

/**
 * `eventsalsa dashboard`: polls once, listens, prints where (and the token), serves until
 * `io.signal` aborts (Ctrl-C), then resolves to 0.
 *
 * @example
 * ```ts
 * import { captureIo } from "../capture_io.ts";
 * const controller = new AbortController();
 * const io = { ...captureIo({ DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test" }), signal: controller.signal };
 * const exited = dashboardCommand(["--port", "0"], io);
 * controller.abort();
 * await exited;
 * ```
 */
export async function dashboardCommand(args: string[], io: CliIo): Promise<number> {
  const settings = dashboardSettings(args, io);
  const { values } = settings;
  const workerOptions = pickOptions(values, WORKER_TABLES);
  const tables = workerTables(workerOptions);
  const keyOptions = pickOptions(values, KEY_TABLES);
  const keys = { table: keyOptions.keysTable, tombstoneTable: keyOptions.keysTombstoneTable };
  keyStoreTables(keys); // a bad name is a usage error before connecting
  let consumers: Consumer[] = [];
  if (settings.module !== undefined) {
    consumers = await loadConsumers(settings.module);
    if (consumers.length === 0) {
      throw new CliUsageError(`--module ${settings.module} exports no consumers`);
    }
  }
  const redact = redactor({ url: io.env("DATABASE_URL"), password: io.env("PGPASSWORD") });
  const sql: postgres.Sql = await connectFromEnvironment(io);
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  io.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const monitor = new Monitor({
      sql,
      status: {
        ...pickOptions(values, ["eventsTable", ...WORKER_TABLES]),
        heartbeatTimeout: settings.heartbeatTimeout,
      },
      tables,
      keys,
      schemas: await checkedSchemas(sql, values),
      intervalMs: settings.intervalMs,
      historyMs: settings.historyMs,
      redact,
    });
    let redrive: Redrive | undefined;
    if (consumers.length > 0) {
      const store = new PostgresStore(pickOptions(values, ["eventsTable", "headsTable"]));
      const byName = new Map(consumers.map((c) => [c.name, c]));
      redrive = async (name, position) => {
        const event = await retryDeadLetter(sql, store, byName.get(name)!, position, workerOptions);
        return `redriven: ${name} handled ${event.eventType} at position ${position}`;
      };
    }
    const config: PageConfig = {
      version: VERSION,
      intervalMs: settings.intervalMs,
      historyMs: settings.historyMs,
      tokenRequired: settings.token !== null,
      actions: { enabled: settings.allowActions, redrive: consumers.map((c) => c.name) },
    };
    const policy: SecurityPolicy = {
      token: settings.token,
      allowActions: settings.allowActions,
      allowedHosts: allowedHostNames(settings.host, settings.origins),
      origins: settings.origins,
    };
    const handler = createHandler({
      monitor,
      policy,
      config,
      redrive,
      redact,
      log: (line) => io.out(line),
    });
    // The first poll before listening: a page opened at once has something to show, and a
    // schema that is not migrated fails here, with the usual hint, rather than in the page.
    const first = await monitor.poll();
    if (first.error !== null) throw monitor.lastFailure;
    let server;
    try {
      server = await serve(handler.handle, settings.host, settings.port);
    } catch (error) {
      throw new Error(
        `cannot listen on ${settings.host}:${settings.port}: ${(error as Error)?.message ?? error}`,
      );
    }
    const url = baseUrl(settings.host, server.port);
    const mode = settings.allowActions
      ? `actions allowed${consumers.length > 0 ? "" : ", but redrive needs --module"}`
      : "read-only";
    io.out(`eventsalsa dashboard on ${url} (${mode}; polling every ${settings.intervalMs} ms)`);
    if (settings.token !== null) {
      if (settings.tokenFromEnvironment) {
        io.out(`token: from ${TOKEN_VARIABLE} (every /api request needs it)`);
      } else {
        io.out(`token: ${settings.token}`);
        io.out(`open ${url}#token=${settings.token}`);
      }
    }
    const polling = monitor.run(stop.signal);
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      else stop.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    handler.close();
    await server.close();
    await polling;
    io.out("eventsalsa dashboard: stopped");
    return 0;
  } finally {
    io.signal?.removeEventListener("abort", onAbort);
    stop.abort();
    await sql.end({ timeout: 5 });
  }
}
