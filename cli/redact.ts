/**
 * Keeps database passwords out of what the CLI prints: the password of `DATABASE_URL` (as written,
 * percent-decoded, re-encoded or JSON-escaped), `PGPASSWORD`, and the credentials of any URL in a
 * message.
 *
 * @module
 */

/** What replaces a secret. */
export const REDACTED = "***";

/**
 * Secrets shorter than this are not replaced inside arbitrary text: replacing every "ab" in a
 * message would garble it and, by the gaps, show the password. URLs are still redacted by shape.
 */
const MIN_SECRET_LENGTH = 4;

/** Query parameters that carry a password (`?password=`, `?sslpassword=`), in a URL. */
const PASSWORD_PARAMETER = /([?&][^=&#]*pass[^=&#]*=)([^&#]*)/gi;
/** The same in free text, where a space ends the URL. */
const PASSWORD_PARAMETER_IN_TEXT = /([?&][^=&#\s]*pass[^=&#\s]*=)([^&#\s]*)/gi;

/** `scheme://user:secret@` in free text (the placeholder `password`, as in usage examples, stays). */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/?#]*):([^\s@]*)@/gi;
const maskCredentials = (_: string, prefix: string, secret: string) =>
  `${prefix}:${secret === "password" ? secret : REDACTED}@`;

/** Where a URL's user info starts and its (last) `@` is, or undefined without credentials. */
function userinfoBounds(url: string): { start: number; end: number } | undefined {
  const scheme = url.indexOf("://");
  const start = scheme < 0 ? 0 : scheme + 3;
  // The last @: a password with an unencoded @ stays on the user-info side, so it is redacted too.
  const end = url.lastIndexOf("@");
  return end >= start ? { start, end } : undefined;
}

/** `postgres://user:***@host:5432/db`: the URL with its password (and password parameters) masked. */
export function redactUrl(url: string): string {
  let out = url;
  const bounds = userinfoBounds(url);
  if (bounds) {
    const userinfo = url.slice(bounds.start, bounds.end);
    const colon = userinfo.indexOf(":");
    if (colon >= 0) {
      out = url.slice(0, bounds.start) + userinfo.slice(0, colon + 1) + REDACTED +
        url.slice(bounds.end);
    }
  }
  return out.replace(PASSWORD_PARAMETER, `$1${REDACTED}`);
}

function decoded(text: string): string[] {
  const out: string[] = [];
  // As a URL component, and as a query value (where `+` is a space).
  for (const candidate of [text, text.replace(/\+/g, " ")]) {
    try {
      out.push(decodeURIComponent(candidate));
    } catch {
      // a bad percent-encoding: the text as written is all there is
    }
  }
  return out;
}

/** Every spelling of a secret that could end up in a message. */
function spellings(secret: string): string[] {
  const forms = new Set<string>([secret]);
  for (const plain of decoded(secret)) forms.add(plain);
  for (const form of [...forms]) {
    forms.add(encodeURIComponent(form));
    forms.add(JSON.stringify(form).slice(1, -1));
  }
  try {
    // How the WHATWG URL parser re-encodes it (`a b` → `a%20b`).
    const url = new URL("postgres://host");
    url.password = secret;
    forms.add(url.password);
  } catch {
    // not representable: nothing more to add
  }
  return [...forms];
}

/** The passwords a connection URL carries: in its user info and in password query parameters. */
function urlPasswords(url: string): string[] {
  const found: string[] = [];
  const bounds = userinfoBounds(url);
  if (bounds) {
    const userinfo = url.slice(bounds.start, bounds.end);
    const colon = userinfo.indexOf(":");
    if (colon >= 0) found.push(userinfo.slice(colon + 1));
  }
  for (const match of url.matchAll(PASSWORD_PARAMETER)) found.push(match[2]);
  try {
    const parsed = new URL(url);
    if (parsed.password) found.push(parsed.password);
  } catch {
    // malformed: the textual split above is all there is
  }
  return found;
}

/** Where the secrets come from. */
export interface RedactionSources {
  /** The connection URL (`DATABASE_URL`). */
  url?: string;
  /** A bare password (`PGPASSWORD`). */
  password?: string;
}

/**
 * A function that masks the passwords of `sources` and the credentials of any URL in a line of
 * text.
 */
export function redactor(sources: RedactionSources): (text: string) => string {
  const secrets = new Set<string>();
  const raw = [
    ...(sources.url ? urlPasswords(sources.url) : []),
    ...(sources.password ? [sources.password] : []),
  ];
  for (const secret of raw) {
    for (const form of spellings(secret)) {
      if (form.length >= MIN_SECRET_LENGTH) secrets.add(form);
    }
  }
  // Longest first, so a secret containing another is masked whole.
  const ordered = [...secrets].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = String(text);
    for (const secret of ordered) out = out.split(secret).join(REDACTED);
    return out.replace(URL_CREDENTIALS, maskCredentials).replace(
      PASSWORD_PARAMETER_IN_TEXT,
      `$1${REDACTED}`,
    );
  };
}
