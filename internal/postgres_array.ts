/**
 * PostgreSQL array literals built by hand. postgres.js infers array parameter types from their
 * elements, which goes wrong for `uuid[]`, `bytea[]` and arrays with nulls; a single text parameter
 * cast in SQL (`$1::text[]`, `$2::uuid[]`) behaves the same with `prepare: true` and `prepare: false`
 * and keeps one statement text for every batch size.
 */
export function textArrayLiteral(values: readonly (string | null)[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ",";
    const value = values[i];
    out += value === null ? "NULL" : `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
  }
  return out + "}";
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lower-case hex of `bytes`, for `decode(x, 'hex')` in SQL. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}
