/**
 * The dashboard's security checks: loopback addresses, the token (compared in constant time), the
 * Host header (against DNS rebinding) and the origin of state-changing requests (against CSRF).
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

/**
 * The header that carries the token.
 *
 * @example
 * ```ts
 * fetch("http://127.0.0.1:8080/api/snapshot", { headers: { [TOKEN_HEADER]: "3f9a..." } });
 * ```
 */
export const TOKEN_HEADER = "x-eventsalsa-token";

/**
 * The environment variable that supplies a token of your own.
 *
 * @example
 * ```ts
 * import process from "node:process";
 * const own = process.env[TOKEN_VARIABLE];
 * ```
 */
export const TOKEN_VARIABLE = "EVENTSALSA_DASHBOARD_TOKEN";

/**
 * A token of one's own must be at least this long.
 *
 * @example
 * ```ts
 * const acceptable = (token: string) => token.length >= MIN_TOKEN_LENGTH;
 * ```
 */
export const MIN_TOKEN_LENGTH = 32;

/**
 * A fresh token: 32 random bytes from `crypto.getRandomValues`, as 64 hex digits.
 *
 * @example
 * ```ts
 * const token = generateToken(); // "3f9a…" (64 characters)
 * ```
 */
export function generateToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const digest = (text: string): Uint8Array => createHash("sha256").update(text, "utf8").digest();

/**
 * Whether `given` equals `expected`, in time that does not depend on where they differ (both are
 * hashed first, so neither does it leak the expected length).
 *
 * @example
 * ```ts
 * declare const request: Request;
 * tokensMatch(request.headers.get("x-eventsalsa-token"), generateToken());
 * ```
 */
export function tokensMatch(given: string | null | undefined, expected: string): boolean {
  if (typeof given !== "string") return false;
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * The host part of a `--host` value or a Host header, without brackets or port, lower case.
 *
 * @example
 * ```ts
 * hostName("[::1]:8080"); // "::1"
 * hostName("LocalHost:80"); // "localhost"
 * ```
 */
export function hostName(hostOrHeader: string): string {
  const text = hostOrHeader.trim().toLowerCase();
  if (text.startsWith("[")) {
    return text.slice(1, text.indexOf("]") < 0 ? undefined : text.indexOf("]"));
  }
  // A bare IPv6 address (several colons) has no port to strip.
  if (text.split(":").length > 2) return text;
  return text.split(":")[0];
}

/**
 * Whether a host name or address only ever reaches this machine: `localhost`, 127.0.0.0/8, `::1`
 * (and IPv4-mapped 127.x).
 *
 * @example
 * ```ts
 * isLoopback("127.0.0.1"); // true
 * isLoopback("0.0.0.0"); // false: every interface
 * ```
 */
export function isLoopback(host: string): boolean {
  const name = hostName(host);
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  if (name === "::1" || name === "0:0:0:0:0:0:0:1") return true;
  const v4 = name.startsWith("::ffff:") ? name.slice(7) : name;
  const parts = v4.split(".");
  return parts.length === 4 && parts[0] === "127" &&
    parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/**
 * Whether `--host` listens on every interface (`0.0.0.0`, `::`).
 *
 * @example
 * ```ts
 * isWildcard("0.0.0.0"); // true
 * ```
 */
export function isWildcard(host: string): boolean {
  const name = hostName(host);
  return name === "0.0.0.0" || name === "::" || name === "0:0:0:0:0:0:0:0";
}

/**
 * What the request checks enforce.
 *
 * @example
 * ```ts
 * const policy: SecurityPolicy = {
 *   token: null,
 *   allowActions: false,
 *   allowedHosts: new Set(["127.0.0.1", "localhost", "::1"]),
 *   origins: [],
 * };
 * ```
 */
export interface SecurityPolicy {
  /** The token in force, or null: then reading is open (on loopback only) and actions are off. */
  token: string | null;
  /** Whether state-changing requests are served at all. */
  allowActions: boolean;
  /** Host header names accepted; null accepts any (listening on every interface, with a token). */
  allowedHosts: ReadonlySet<string> | null;
  /** Public origins (`https://ops.example.com`) accepted besides the request's own Host. */
  origins: readonly string[];
}

/**
 * The Host header names a server on `host` accepts: the loopback names, `host` itself and the
 * hosts of `origins`; null (any) when `host` is a wildcard, where a token is always in force.
 *
 * @example
 * ```ts
 * allowedHostNames("127.0.0.1", ["https://ops.example.com"]); // 127.0.0.1, localhost, ::1, ops.example.com
 * ```
 */
export function allowedHostNames(
  host: string,
  origins: readonly string[],
): ReadonlySet<string> | null {
  if (isWildcard(host)) return null;
  const names = new Set(["127.0.0.1", "localhost", "::1", hostName(host)]);
  for (const origin of origins) names.add(new URL(origin).hostname.replace(/^\[|\]$/g, ""));
  return names;
}

/**
 * Why a request is refused (status and message), or null when it may go on.
 *
 * @example
 * ```ts
 * declare const policy: SecurityPolicy;
 * const refusal = checkRequest(new Request("http://127.0.0.1:8080/api/snapshot"), policy, "read");
 * ```
 */
export function checkRequest(
  request: Request,
  policy: SecurityPolicy,
  kind: "page" | "read" | "action",
): { status: number; message: string } | null {
  const host = request.headers.get("host") ?? new URL(request.url).host;
  if (policy.allowedHosts !== null && !policy.allowedHosts.has(hostName(host))) {
    // DNS rebinding: a page of another site that resolves its own name to this address.
    return { status: 403, message: `unexpected Host header ${JSON.stringify(host)}` };
  }
  if (kind === "page") return null;
  if (kind === "read") {
    if (policy.token !== null && !tokensMatch(request.headers.get(TOKEN_HEADER), policy.token)) {
      return { status: 401, message: "this dashboard needs its token (X-Eventsalsa-Token)" };
    }
    return null;
  }
  if (!policy.allowActions || policy.token === null) {
    return { status: 403, message: "read-only dashboard: start it with --allow-actions" };
  }
  // CSRF: a browser marks where a request comes from; another site's page is refused even before
  // the token is looked at (it could not have read the token, but say why it is refused).
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin" && site !== "none") {
    return { status: 403, message: `cross-site request refused (Sec-Fetch-Site: ${site})` };
  }
  const origin = request.headers.get("origin");
  if (origin !== null && !sameOrigin(origin, host, policy.origins)) {
    return { status: 403, message: `cross-origin request refused (Origin: ${origin})` };
  }
  if (!tokensMatch(request.headers.get(TOKEN_HEADER), policy.token)) {
    return { status: 403, message: "actions need the token in the X-Eventsalsa-Token header" };
  }
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    return { status: 415, message: "actions take a JSON body (Content-Type: application/json)" };
  }
  return null;
}

/** Whether `origin` is the request's own (its Host, over http or https) or a configured one. */
function sameOrigin(origin: string, host: string, origins: readonly string[]): boolean {
  if (origins.includes(origin)) return true;
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return false; // "null" (a sandboxed frame, a file) and other opaque origins
  }
  return (parsed.protocol === "http:" || parsed.protocol === "https:") &&
    parsed.host === host.toLowerCase();
}

/**
 * `--origin` as given, checked: a bare `http(s)://host[:port]` origin.
 *
 * @example
 * ```ts
 * parseOrigin("https://ops.example.com/"); // "https://ops.example.com"
 * ```
 */
export function parseOrigin(value: string): string | null {
  try {
    const url = new URL(value);
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    if (url.username || url.password || url.search || url.hash) return null;
    if (url.pathname !== "/" && url.pathname !== "") return null;
    return url.origin;
  } catch {
    return null;
  }
}
