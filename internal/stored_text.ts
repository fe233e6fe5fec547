/**
 * The one rule for text that eventsalsa stores in a PostgreSQL `text` column and looks rows up by:
 * aggregate types and ids, event types, trace ids, key scopes and scope ids, labels bound into
 * encrypted values. Such text must reach PostgreSQL unchanged and fit its btree indexes. Each
 * component turns the problem this module names into its own error type (`ValidationError`,
 * `InvalidInputError`, ...).
 *
 * @module
 */

/**
 * Most UTF-8 bytes in one stored text value. Two of them side by side in one index row (type and
 * id, scope and scope id) need at most 8 + (4 + 1024) + (4 + 1024) + 8 = 2,072 bytes, safely under
 * PostgreSQL's btree limit of 2,704 bytes for 8 kB pages even when the values do not compress.
 */
export const MAX_TEXT_BYTES = 1024;

/** UTF-8 length of a well-formed string (a surrogate pair is 4 bytes). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    bytes += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

/**
 * Why PostgreSQL would reject or alter `text`, or null when it stores it unchanged. NUL is refused
 * by `text`; a lone UTF-16 surrogate is turned into U+FFFD on its way to UTF-8, so two different
 * strings would become one stored value (and one key, one associated data).
 */
export function textProblem(text: string): string | null {
  if (text.includes("\u0000")) return "must not contain NUL (\\u0000)";
  if (!text.isWellFormed()) return "contains a lone UTF-16 surrogate";
  return null;
}

/**
 * Why `text` cannot be a stored, indexed text value (empty, longer than `maxBytes` UTF-8 bytes, or
 * a {@link textProblem}), or null when it can. The words complete a sentence that starts with the
 * field's name: `"aggregateId must not be empty"`.
 */
export function storedTextProblem(text: string, maxBytes: number = MAX_TEXT_BYTES): string | null {
  const length = text.length;
  if (length === 0) return "must not be empty";
  // Each UTF-16 code unit is 1 to 3 UTF-8 bytes: longer than the limit in units is too long, and
  // only a string over a third of the limit needs its bytes counted.
  if (length > maxBytes) {
    return `must be at most ${maxBytes} UTF-8 bytes, got ${length} characters`;
  }
  const problem = textProblem(text);
  if (problem !== null) return problem;
  if (length > maxBytes / 3) {
    const bytes = utf8Length(text);
    if (bytes > maxBytes) return `must be at most ${maxBytes} UTF-8 bytes, got ${bytes}`;
  }
  return null;
}
