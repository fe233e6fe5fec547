/**
 * The dashboard's HTTP server: one web-standard request handler (`Request` → `Response`), served
 * by the runtime's own server (`Deno.serve` or `Bun.serve`). Routes:
 *
 * - `GET /`, `/dashboard.css`, `/dashboard.js`: the page (no data in it);
 * - `GET /api/snapshot`: the last snapshot, the lag history and the page's configuration (JSON);
 * - `GET /api/events`: server-sent events, `hello` (configuration and history) then a `snapshot`
 *   after every poll;
 * - `POST /api/actions/redrive`: `{ consumer, position }`, with `--allow-actions` only.
 *
 * @module
 */
import { HandlerError } from "../../worker/errors.ts";
import type { DashboardSnapshot, LagSample } from "./monitor.ts";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./page.ts";
import { checkRequest, type SecurityPolicy } from "./security.ts";

/**
 * What the page is told about the server.
 *
 * @example
 * ```ts
 * const config: PageConfig = {
 *   version: "0.1.0",
 *   intervalMs: 2000,
 *   historyMs: 600_000,
 *   tokenRequired: false,
 *   actions: { enabled: false, redrive: [] },
 * };
 * ```
 */
export interface PageConfig {
  version: string;
  intervalMs: number;
  historyMs: number;
  /** Whether every `/api` request needs the token. */
  tokenRequired: boolean;
  actions: {
    enabled: boolean;
    /** The consumers whose skipped dead letters can be redriven (those `--module` exports). */
    redrive: string[];
  };
}

/**
 * Redrives a skipped dead letter and returns a line saying what happened.
 *
 * @example
 * ```ts
 * const redrive: Redrive = (consumer, position) => Promise.resolve(`${consumer} ${position}`);
 * ```
 */
export type Redrive = (consumer: string, position: number) => Promise<string>;

/**
 * Where the snapshots come from: the `Monitor` (polling the database) or, in tests, a stand-in.
 *
 * @example
 * ```ts
 * declare const monitor: import("./monitor.ts").Monitor;
 * const source: SnapshotSource = monitor;
 * ```
 */
export interface SnapshotSource {
  /** The last snapshot, or null before the first poll. */
  readonly snapshot: DashboardSnapshot | null;
  /** The lag history, oldest first. */
  readonly samples: readonly LagSample[];
  /** Calls `listener` after each poll; returns the function that unsubscribes. */
  subscribe(listener: (snapshot: DashboardSnapshot, sample: LagSample | null) => void): () => void;
  /** Polls again soon (after an action changed something). */
  pollSoon(): void;
}

/**
 * What the handler works with.
 *
 * @example
 * ```ts
 * declare const monitor: SnapshotSource;
 * declare const policy: import("./security.ts").SecurityPolicy;
 * declare const config: PageConfig;
 * const options: HandlerOptions = { monitor, policy, config, redact: (t) => t };
 * ```
 */
export interface HandlerOptions {
  monitor: SnapshotSource;
  policy: SecurityPolicy;
  config: PageConfig;
  /** Redrives a dead letter (present when `--module` gave consumers). */
  redrive?: Redrive;
  /** Masks database passwords in messages. */
  redact: (text: string) => string;
  /** A line per action, for the operator's log. */
  log?: (line: string) => void;
  /** Comment lines on idle event streams, so proxies keep them open (15000 ms). */
  keepAliveMs?: number;
}

/**
 * The request handler, with `close()` ending every open event stream.
 *
 * @example
 * ```ts
 * declare const options: HandlerOptions;
 * const handler = createHandler(options);
 * const response = await handler.handle(new Request("http://127.0.0.1:8080/api/snapshot"));
 * handler.close();
 * ```
 */
export interface DashboardHandler {
  handle(request: Request): Promise<Response>;
  /** Ends every event stream (before the server shuts down). */
  close(): void;
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "cache-control": "no-store",
};

function respond(body: BodyInit | null, status: number, type: string | null): Response {
  const headers = new Headers(SECURITY_HEADERS);
  if (type !== null) headers.set("content-type", type);
  return new Response(body, { status, headers });
}

const json = (value: unknown, status = 200): Response =>
  respond(JSON.stringify(value), status, "application/json; charset=utf-8");

const failure = (status: number, message: string): Response => json({ error: message }, status);

const STATIC: Record<string, { body: string; type: string }> = {
  "/": { body: PAGE_HTML, type: "text/html; charset=utf-8" },
  "/dashboard.css": { body: PAGE_CSS, type: "text/css; charset=utf-8" },
  "/dashboard.js": { body: PAGE_JS, type: "text/javascript; charset=utf-8" },
};

const MAX_BODY_BYTES = 4096;

/**
 * Builds the handler: the security checks of {@link checkRequest} on every request, then the
 * routes.
 *
 * @example
 * ```ts
 * declare const options: HandlerOptions;
 * const { handle } = createHandler(options);
 * ```
 */
export function createHandler(options: HandlerOptions): DashboardHandler {
  const { monitor, policy, config } = options;
  const encoder = new TextEncoder();
  const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const keepAliveMs = options.keepAliveMs ?? 15_000;

  const events = (): Response => {
    let unsubscribe = (): void => {};
    let keepAlive: ReturnType<typeof setInterval> | undefined;
    let controller: ReadableStreamDefaultController<Uint8Array>;
    const stop = () => {
      unsubscribe();
      clearInterval(keepAlive);
      streams.delete(controller);
    };
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
        streams.add(c);
        const send = (event: string, data: unknown) => {
          try {
            c.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
          } catch {
            stop();
          }
        };
        // `retry`: the browser's reconnect delay; the page reconnects by itself too.
        c.enqueue(encoder.encode("retry: 2000\n\n"));
        send("hello", { config, snapshot: monitor.snapshot, samples: monitor.samples });
        unsubscribe = monitor.subscribe((snapshot: DashboardSnapshot, sample: LagSample | null) =>
          send("snapshot", { snapshot, sample })
        );
        keepAlive = setInterval(() => {
          try {
            c.enqueue(encoder.encode(": keep-alive\n\n"));
          } catch {
            stop();
          }
        }, keepAliveMs);
      },
      cancel() {
        stop();
      },
    });
    const response = respond(body, 200, "text/event-stream; charset=utf-8");
    // Behind nginx: do not buffer the stream (proxy_buffering off does the same).
    response.headers.set("x-accel-buffering", "no");
    return response;
  };

  const redrive = async (request: Request): Promise<Response> => {
    if (options.redrive === undefined) {
      return failure(
        409,
        "redrive needs your consumers: start the dashboard with --module ./consumers.ts",
      );
    }
    const text = await request.text();
    if (encoder.encode(text).length > MAX_BODY_BYTES) return failure(413, "body too large");
    let body: { consumer?: unknown; position?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      return failure(400, "the body is not JSON");
    }
    const consumer = body?.consumer;
    const position = body?.position;
    if (typeof consumer !== "string" || consumer === "") {
      return failure(400, "consumer must be a non-empty string");
    }
    if (typeof position !== "number" || !Number.isSafeInteger(position) || position < 1) {
      return failure(400, "position must be a positive integer");
    }
    if (!config.actions.redrive.includes(consumer)) {
      return failure(404, `--module exports no consumer named ${JSON.stringify(consumer)}`);
    }
    try {
      const message = await options.redrive(consumer, position);
      options.log?.(`dashboard: redrive ${consumer} at ${position}: ${message}`);
      monitor.pollSoon();
      return json({ ok: true, message });
    } catch (error) {
      const name = (error as Error)?.name;
      const message = options.redact(
        String((error as Error)?.message ?? error).split("\n")[0],
      ).slice(0, 500);
      options.log?.(`dashboard: redrive ${consumer} at ${position} failed: ${message}`);
      const status = name === "DeadLetterNotFoundError"
        ? 404
        : error instanceof HandlerError || name === "HandlerError"
        ? 422
        : name === "RangeError" || name === "WorkerConfigError"
        ? 400
        : 500;
      return failure(status, message);
    }
  };

  const handle = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    const method = request.method.toUpperCase();
    const file = STATIC[path];
    if (file !== undefined || path === "/api/snapshot" || path === "/api/events") {
      if (method !== "GET" && method !== "HEAD") return failure(405, "method not allowed");
    }
    if (file !== undefined) {
      const refused = checkRequest(request, policy, "page");
      if (refused) return failure(refused.status, refused.message);
      return respond(method === "HEAD" ? null : file.body, 200, file.type);
    }
    if (path === "/favicon.ico") return respond(null, 204, null);
    if (path === "/api/snapshot" || path === "/api/events") {
      const refused = checkRequest(request, policy, "read");
      if (refused) return failure(refused.status, refused.message);
      if (path === "/api/events") return events();
      return json({ config, snapshot: monitor.snapshot, samples: monitor.samples });
    }
    if (path === "/api/actions/redrive") {
      if (method !== "POST") return failure(405, "method not allowed");
      const refused = checkRequest(request, policy, "action");
      if (refused) {
        options.log?.(`dashboard: action refused (${refused.status}): ${refused.message}`);
        return failure(refused.status, refused.message);
      }
      return await redrive(request);
    }
    return failure(404, "not found");
  };

  return {
    handle: async (request) => {
      try {
        return await handle(request);
      } catch (error) {
        return failure(500, options.redact(String((error as Error)?.message ?? error)));
      }
    },
    close() {
      for (const controller of [...streams]) {
        try {
          controller.close();
        } catch {
          // already closed or cancelled
        }
      }
      streams.clear();
    },
  };
}

/**
 * A listening server.
 *
 * @example
 * ```ts
 * declare const server: Listening;
 * console.log(`listening on port ${server.port}`);
 * await server.close();
 * ```
 */
export interface Listening {
  /** The port bound (the chosen one when asked for port 0). */
  port: number;
  /** Stops accepting and ends open connections. */
  close(): Promise<void>;
}

interface DenoServer {
  addr: { port: number };
  shutdown(): Promise<void>;
}
interface DenoServe {
  serve(
    options: {
      hostname: string;
      port: number;
      onListen?: (address: { port: number }) => void;
    },
    handler: (request: Request) => Promise<Response>,
  ): DenoServer;
}
interface BunServer {
  port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}
interface BunServe {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout?: number;
    fetch: (request: Request) => Promise<Response>;
  }): BunServer;
}

/**
 * Serves `handler` on `hostname:port` with the runtime's own HTTP server: `Deno.serve` under Deno,
 * `Bun.serve` under Bun.
 *
 * @example
 * ```ts
 * const server = await serve((_request) => Promise.resolve(new Response("ok")), "127.0.0.1", 0);
 * await server.close();
 * ```
 */
export function serve(
  handler: (request: Request) => Promise<Response>,
  hostname: string,
  port: number,
): Promise<Listening> {
  const runtime = globalThis as { Deno?: DenoServe; Bun?: BunServe };
  // A bracketed IPv6 address (`[::1]`) is given to the server bare.
  const bind = hostname.replace(/^\[(.*)\]$/, "$1");
  if (runtime.Deno !== undefined) {
    const deno = runtime.Deno;
    return new Promise((resolve, reject) => {
      try {
        const server = deno.serve({
          hostname: bind,
          port,
          // Deno prints "Listening on ..." unless told otherwise; the CLI prints its own line.
          onListen: (address) => resolve({ port: address.port, close: () => server.shutdown() }),
        }, handler);
      } catch (error) {
        reject(error);
      }
    });
  }
  if (runtime.Bun !== undefined) {
    try {
      // An event stream is quiet between polls; Bun closes idle connections after 10 s by default
      // (the keep-alive comments come every 15 s), so allow more.
      const server = runtime.Bun.serve({ hostname: bind, port, idleTimeout: 120, fetch: handler });
      return Promise.resolve({
        port: server.port,
        close: async () => {
          await server.stop(true);
        },
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }
  return Promise.reject(new Error("the dashboard needs Deno or Bun (their HTTP server)"));
}
