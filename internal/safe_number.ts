/**
 * Converts a PostgreSQL `int8`/`numeric` value as postgres.js delivers it (a decimal string by
 * default, a `bigint` or `number` when the caller configured custom types) into a JavaScript number,
 * refusing values beyond `Number.MAX_SAFE_INTEGER` instead of silently rounding them.
 */
export function toSafeNumber(value: unknown, what: string): number {
  let result: number;
  if (typeof value === "number") result = value;
  else if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new RangeError(`${what} ${value} exceeds Number.MAX_SAFE_INTEGER`);
    }
    result = Number(value);
  } else if (typeof value === "string" && /^-?\d+$/.test(value)) {
    result = Number(value);
  } else {
    throw new TypeError(`${what} is not an integer: ${String(value)}`);
  }
  if (!Number.isSafeInteger(result)) {
    throw new RangeError(`${what} ${String(value)} exceeds Number.MAX_SAFE_INTEGER`);
  }
  return result;
}
