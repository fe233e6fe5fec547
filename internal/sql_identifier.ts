/**
 * Validated, quoted SQL identifiers. Every table, sequence, index and channel name that reaches SQL
 * text goes through here: a name is checked once, at construction, and then only ever spliced in
 * its quoted form.
 *
 * @module
 */

const PART = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1). */
export const MAX_IDENTIFIER_BYTES = 63;

/** A checked identifier, possibly schema-qualified, with its quoted SQL form. */
export interface SqlIdentifier {
  /** The schema part, when the name was schema-qualified. */
  readonly schema: string | null;
  /** The unqualified name. */
  readonly name: string;
  /** The name exactly as the user gave it, e.g. `app.events`. */
  readonly text: string;
  /** The quoted form to splice into SQL, e.g. `"app"."events"`. */
  readonly quoted: string;
}

/** Thrown by {@link parseIdentifier}; callers wrap it in their component's own error type. */
export class IdentifierError extends TypeError {
  override name = "IdentifierError";
}

function checkPart(part: string, what: string, full: string): void {
  if (!PART.test(part)) {
    throw new IdentifierError(
      `${what} ${JSON.stringify(full)} is not a valid identifier: use letters, digits and ` +
        `underscores, starting with a letter or underscore (optionally "schema.name")`,
    );
  }
  if (new TextEncoder().encode(part).length > MAX_IDENTIFIER_BYTES) {
    throw new IdentifierError(
      `${what} ${JSON.stringify(full)} is longer than ${MAX_IDENTIFIER_BYTES} bytes`,
    );
  }
}

/** Quotes one already-validated identifier part. */
export function quotePart(part: string): string {
  return `"${part}"`;
}

/**
 * Parses `name` or `schema.name`, validates both parts and returns the quoted form. `what` names the
 * setting in error messages ("events table", "notify channel").
 */
export function parseIdentifier(
  value: unknown,
  what: string,
  options: { allowSchema?: boolean } = {},
): SqlIdentifier {
  if (typeof value !== "string" || value.length === 0) {
    throw new IdentifierError(`${what} must be a non-empty string`);
  }
  const parts = value.split(".");
  if (parts.length > 2 || (parts.length === 2 && options.allowSchema === false)) {
    throw new IdentifierError(
      `${what} ${JSON.stringify(value)} is not a valid identifier` +
        (options.allowSchema === false ? " (no schema allowed here)" : ""),
    );
  }
  for (const part of parts) checkPart(part, what, value);
  const schema = parts.length === 2 ? parts[0] : null;
  const name = parts[parts.length - 1];
  return {
    schema,
    name,
    text: value,
    quoted: schema === null ? quotePart(name) : `${quotePart(schema)}.${quotePart(name)}`,
  };
}

/**
 * A name derived from a base identifier (an index, a sequence, a partition), in the same schema.
 * Checked like a user-given name, so a long base name fails loudly instead of being truncated.
 */
export function derivedIdentifier(
  base: SqlIdentifier,
  derivedName: string,
  what: string,
): SqlIdentifier {
  return parseIdentifier(
    base.schema === null ? derivedName : `${base.schema}.${derivedName}`,
    what,
  );
}

/** A string literal for SQL text, for values already validated as identifiers. */
export function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
