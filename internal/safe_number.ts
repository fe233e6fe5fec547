/**
 * Converts a PostgreSQL `int8`/`numeric` value as postgres.js delivers it (a decimal string by
 * default, a `bigint` or `number` when the caller configured custom types) into a JavaScript number,
 * refusing values beyond `Number.MAX_SAFE_INTEGER` instead of silently rounding them.
 */
export function toSafeNumber(value: unknown, what: string): number {
  const result = typeof value === "bigint" || typeof value === "number" ||
      (typeof value === "string" && value !== "")
    ? Number(value)
    : NaN;
  if (Number.isSafeInteger(result)) return result;
  if (Number.isInteger(result)) {
    throw new RangeError(`${what} ${String(value)} exceeds Number.MAX_SAFE_INTEGER`);
  }
  throw new TypeError(`${what} is not an integer: ${String(value)}`);
}
