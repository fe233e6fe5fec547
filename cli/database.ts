import { connect as connectSocket } from "node:net";
import postgres from "postgres";
import { type CliIo, CliUsageError } from "./io.ts";
import { redactor, redactUrl } from "./redact.ts";

/** Seconds a command waits for a usable connection when `EVENTSALSA_CONNECT_TIMEOUT` is unset. */
export const DEFAULT_CONNECT_TIMEOUT = 10;

/** The environment variable that bounds connecting, in seconds. */
export const CONNECT_TIMEOUT_VARIABLE = "EVENTSALSA_CONNECT_TIMEOUT";

const EXAMPLE_URL = "postgres://user:password@host:5432/database";
const MAX_CONNECT_TIMEOUT = 86_400;

/** The database could not be reached or did not answer as PostgreSQL: one line, exit code 1. */
export class CliConnectionError extends Error {
  /** Stable error name. */
  override readonly name: string = "CliConnectionError";
}

/** `EVENTSALSA_CONNECT_TIMEOUT` in seconds (a positive number), or the default. */
export function connectTimeout(io: CliIo): number {
  const raw = io.env(CONNECT_TIMEOUT_VARIABLE);
  if (raw === undefined || raw.trim() === "") return DEFAULT_CONNECT_TIMEOUT;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_CONNECT_TIMEOUT) {
    throw new CliUsageError(
      `${CONNECT_TIMEOUT_VARIABLE} must be a number of seconds above 0 and at most ` +
        `${MAX_CONNECT_TIMEOUT}, got ${JSON.stringify(raw)}`,
    );
  }
  return seconds;
}

function decodes(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Rejects a `DATABASE_URL` that postgres.js would choke on (or silently misread), with a message
 * that never contains the password: only the scheme, the port or the URL with its password masked.
 */
export function checkDatabaseUrl(url: string): void {
  const fail = (why: string): never => {
    throw new CliUsageError(`DATABASE_URL ${why}`);
  };
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1];
  if (scheme === undefined) return fail(`is not a URL; expected ${EXAMPLE_URL}`);
  if (!/^postgres(ql)?$/i.test(scheme)) {
    return fail(
      `has the scheme ${scheme}://; expected postgres:// or postgresql:// (${EXAMPLE_URL})`,
    );
  }
  const rest = url.slice(scheme.length + 3);
  const authority = rest.split(/[/?#]/)[0];
  // An @ past the host means the password holds an unencoded / ? or #: the URL would split inside
  // the password, and a piece of it would be taken (and printed) as the host or port.
  if (rest.slice(authority.length).includes("@")) {
    return fail(
      "has an @ after the host: percent-encode / ? # @ in the user name and password " +
        "(%2F %3F %23 %40)",
    );
  }
  const at = authority.lastIndexOf("@");
  const userinfo = at < 0 ? "" : authority.slice(0, at);
  const hosts = authority.slice(at + 1);
  const colon = userinfo.indexOf(":");
  const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
  const password = colon < 0 ? "" : userinfo.slice(colon + 1);
  if (!decodes(user)) return fail("has a bad percent-encoding in the user name (write % as %25)");
  if (!decodes(password)) {
    return fail("has a bad percent-encoding in the password (write % as %25)");
  }
  if (!decodes(hosts)) return fail("has a bad percent-encoding in the host");
  for (const entry of hosts.split(",")) {
    const port = /^(?:\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(entry)?.[1];
    if (port === undefined || port === "") continue;
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      return fail(`has the port ${JSON.stringify(port)}, not a number from 1 to 65535`);
    }
  }
  try {
    // What postgres.js does with it (its parseUrl): the first of several hosts, then the WHATWG
    // parser, then the percent-decoded user name and password.
    const server = rest.split(/[?/]/)[0];
    const host = decodeURIComponent(server.slice(server.indexOf("@") + 1));
    const parsed = new URL(url.replace(host, host.split(",")[0]));
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    // The parser's own message (and its `input`) would carry the password: not passed on.
    return fail(`is not a valid URL (${redactUrl(url)}); expected ${EXAMPLE_URL}`);
  }
}

type PoolOptions = postgres.Options<Record<string, postgres.PostgresType>>;

interface Target {
  readonly label: string;
  readonly host?: string;
  readonly port?: number;
  readonly path?: string;
}

/** Where postgres.js will connect: `host:port` for each host, or the Unix socket path. */
function targetsOf(sql: postgres.Sql): Target[] {
  const options = sql.options as unknown as {
    host: string[];
    port: number[];
    path: string | false;
  };
  if (options.path) return [{ label: options.path, path: options.path }];
  return options.host.map((host, i) => ({
    label: `${host}:${options.port[i]}`,
    host: host.replace(/^\[(.*)\]$/, "$1"),
    port: options.port[i],
  }));
}

type Verdict = "refused" | "unreachable" | "silent" | "closed" | "talks";

/**
 * What a server does with a bare TCP connection, to say why the handshake timed out: PostgreSQL
 * waits silently for the client's startup message; a server that speaks first or hangs up is
 * something else.
 */
function diagnose(target: Target, waitMs: number): Promise<Verdict> {
  return new Promise((resolve) => {
    let connected = false;
    const socket = target.path
      ? connectSocket({ path: target.path })
      : connectSocket({ host: target.host!, port: target.port! });
    const finish = (verdict: Verdict) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.destroy();
      resolve(verdict);
    };
    let timer = setTimeout(() => finish("unreachable"), waitMs);
    socket.once("connect", () => {
      connected = true;
      clearTimeout(timer);
      timer = setTimeout(() => finish("silent"), 300);
    });
    socket.once("data", () => finish("talks"));
    socket.once("end", () => finish("closed"));
    socket.once("close", () => finish(connected ? "closed" : "refused"));
    socket.once(
      "error",
      (error: { code?: string }) =>
        finish(connected ? "closed" : error?.code === "ECONNREFUSED" ? "refused" : "unreachable"),
    );
  });
}

const VERDICTS: Record<Verdict, string> = {
  talks: "the server accepted the connection but answered with something other than PostgreSQL",
  closed: "the server accepted the connection but closed it without answering as PostgreSQL",
  silent: "the server accepted the connection but did not answer as PostgreSQL",
  refused: "connection refused",
  unreachable: "no TCP connection (is the host up and the port open? a firewall may drop it)",
};
const VERDICT_ORDER: Verdict[] = ["talks", "closed", "silent", "refused", "unreachable"];

const CLOSED_CODES = new Set([
  "ECONNRESET",
  "EPIPE",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

const TIMED_OUT = Symbol("timed out");
const INTERRUPTED = Symbol("interrupted");

/** One line on why the first connection failed (a postgres.js error, or our timeout). */
async function describeFailure(
  failure: unknown,
  targets: Target[],
  seconds: number,
  redact: (text: string) => string,
): Promise<string> {
  const where = targets.map((t) => t.label).join(",");
  const error = failure as { code?: unknown; name?: unknown; message?: unknown } | undefined;
  const code = typeof error?.code === "string" ? error.code : undefined;
  if (failure === TIMED_OUT || code === "CONNECT_TIMEOUT") {
    const verdicts = await Promise.all(
      targets.map((t) => diagnose(t, Math.min(seconds * 1000, 2_000))),
    );
    const verdict = VERDICT_ORDER.find((v) => verdicts.includes(v)) ?? "unreachable";
    return `could not connect to ${where} within ${seconds} s: ${VERDICTS[verdict]}`;
  }
  const message = redact(String(error?.message ?? failure)).split("\n")[0];
  let why: string;
  if (error?.name === "PostgresError") {
    // A real server always sends an SQLSTATE; an "error" without one is someone else's bytes.
    why = code && /^[0-9A-Z]{5}$/.test(code) ? message : VERDICTS.talks;
  } else if (code === "ECONNREFUSED") {
    why = "connection refused (is PostgreSQL running and listening there?)";
  } else if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME") {
    why = "unknown host";
  } else if (code === "EHOSTUNREACH" || code === "ENETUNREACH") {
    why = "host unreachable";
  } else if (code === "ENOENT") {
    why = "no such socket";
  } else if (code !== undefined && CLOSED_CODES.has(code)) {
    why = VERDICTS.closed;
  } else {
    why = message || "unknown error";
  }
  return `could not connect to ${where}: ${why}`;
}

/**
 * Proves the server answers as PostgreSQL within `seconds`: postgres.js's `connect_timeout` stops
 * at its first ReadyForQuery and restarts on every reconnect (a server that accepts and hangs up
 * makes it reconnect forever), so the whole of connecting plus `SELECT 1` is raced against a timer
 * of our own. A pool of its own, without `fetch_types`, so that giving up leaves no internal query
 * behind to reject unhandled.
 */
async function probe(
  url: string,
  options: PoolOptions,
  seconds: number,
  redact: (text: string) => string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const sql = postgres(url, { ...options, max: 1, fetch_types: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const outcome = await Promise.race([
    sql.unsafe("SELECT 1").then(() => null, (error: unknown) => error ?? new Error("failed")),
    new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), seconds * 1000);
    }),
    // Ctrl-C while connecting (the CLI listens for SIGINT, so the runtime does not exit by itself).
    new Promise<typeof INTERRUPTED>((resolve) => {
      onAbort = () => resolve(INTERRUPTED);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    }),
  ]);
  clearTimeout(timer);
  signal?.removeEventListener("abort", onAbort!);
  // Ending is bounded too: a server that never closes its side must not hold the CLI.
  const ended = sql.end({ timeout: outcome === null ? 1 : 0 }).catch(() => {});
  let endTimer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([ended, new Promise((resolve) => endTimer = setTimeout(resolve, 2_000))]);
  clearTimeout(endTimer);
  if (outcome === null) return;
  if (outcome === INTERRUPTED) {
    throw new CliConnectionError(
      `interrupted while connecting to ${targetsOf(sql).map((t) => t.label).join(",")}`,
    );
  }
  throw new CliConnectionError(
    await describeFailure(outcome, targetsOf(sql), seconds, redact),
  );
}

/**
 * Opens a pool on DATABASE_URL once the server has answered as PostgreSQL within
 * `EVENTSALSA_CONNECT_TIMEOUT` seconds. A missing or malformed URL is a usage error (exit 2); a
 * server that cannot be reached, hangs up or does not answer in time is a {@link CliConnectionError}
 * (exit 1). Neither message contains the password.
 */
export async function connectFromEnvironment(io: CliIo): Promise<postgres.Sql> {
  const url = io.env("DATABASE_URL");
  if (!url) {
    throw new CliUsageError(`DATABASE_URL is not set (e.g. DATABASE_URL=${EXAMPLE_URL})`);
  }
  checkDatabaseUrl(url);
  const seconds = connectTimeout(io);
  const redact = redactor({ url, password: io.env("PGPASSWORD") });
  // Unnamed statements only (`prepare: false`): a command runs a handful of queries, and named
  // prepared statements break behind a transaction pooler (PgBouncer), where consecutive
  // transactions may run on different server connections (docs/pgbouncer.md).
  const options: PoolOptions = {
    max: 2,
    onnotice: () => {},
    connect_timeout: seconds,
    prepare: false,
  };
  let sql: postgres.Sql;
  try {
    sql = postgres(url, options);
  } catch (error) {
    // e.g. an unsupported target_session_attrs; the message is masked and the error not chained.
    throw new CliUsageError(
      `DATABASE_URL: ${redact(String((error as Error)?.message ?? error)).split("\n")[0]}`,
    );
  }
  try {
    await probe(url, options, seconds, redact, io.signal);
  } catch (error) {
    await sql.end({ timeout: 0 }).catch(() => {});
    throw error;
  }
  return sql;
}
