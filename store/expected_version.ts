import { ValidationError } from "./errors.ts";

/**
 * What the caller believes about an aggregate's head before appending. Build one with {@link any},
 * {@link noStream}, {@link exact} or {@link streamExists}.
 *
 * @example
 * ```ts
 * import { exact, type ExpectedVersion } from "@eventsalsa/eventsalsa/store";
 * const expected: ExpectedVersion = exact(3); // { kind: "exact", version: 3 }
 * ```
 */
export type ExpectedVersion =
  | { readonly kind: "any" }
  | { readonly kind: "noStream" }
  | { readonly kind: "exact"; readonly version: number }
  | { readonly kind: "streamExists" };

const ANY: ExpectedVersion = Object.freeze({ kind: "any" });
const NO_STREAM: ExpectedVersion = Object.freeze({ kind: "noStream" });
const STREAM_EXISTS: ExpectedVersion = Object.freeze({ kind: "streamExists" });

/**
 * No check: append after whatever is there, creating the stream when missing. For imports and tools.
 *
 * @example
 * ```ts
 * import { any } from "@eventsalsa/eventsalsa/store";
 * const expected = any(); // { kind: "any" }
 * ```
 */
export function any(): ExpectedVersion {
  return ANY;
}

/**
 * The stream must not exist yet. Also the way to reserve unique values (an `EmailReservation`
 * aggregate whose id is the address).
 *
 * @example
 * ```ts
 * import { noStream } from "@eventsalsa/eventsalsa/store";
 * const expected = noStream();
 * ```
 */
export function noStream(): ExpectedVersion {
  return NO_STREAM;
}

/**
 * The stream's head must be exactly `version`. `exact(0)` is `noStream()`. A negative or fractional
 * version throws `ValidationError` (a `TypeError`).
 *
 * @example
 * ```ts
 * import { exact } from "@eventsalsa/eventsalsa/store";
 * const expected = exact(3); // append only if the aggregate is at version 3
 * ```
 */
export function exact(version: number): ExpectedVersion {
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new ValidationError(
      `exact version must be a non-negative integer, got ${String(version)}`,
    );
  }
  return version === 0 ? NO_STREAM : Object.freeze({ kind: "exact", version });
}

/**
 * The stream must exist, at any version. For appends to an aggregate that was created elsewhere.
 *
 * @example
 * ```ts
 * import { streamExists } from "@eventsalsa/eventsalsa/store";
 * const expected = streamExists();
 * ```
 */
export function streamExists(): ExpectedVersion {
  return STREAM_EXISTS;
}

/**
 * `"Any"`, `"NoStream"`, `"Exact(5)"` or `"StreamExists"`, for the store's messages and span
 * attributes. Internal; not exported by the package.
 */
export function describeExpectedVersion(expected: ExpectedVersion): string {
  switch (expected.kind) {
    case "any":
      return "Any";
    case "noStream":
      return "NoStream";
    case "exact":
      return `Exact(${expected.version})`;
    case "streamExists":
      return "StreamExists";
  }
}

/** Checks a value claimed to be an ExpectedVersion (it may come from untyped code). */
export function checkExpectedVersion(expected: unknown): ExpectedVersion {
  const value = expected as ExpectedVersion | null | undefined;
  switch (value?.kind) {
    case "any":
    case "noStream":
    case "streamExists":
      return value;
    case "exact":
      if (Number.isSafeInteger(value.version) && value.version > 0) return value;
      if (value.version === 0) return NO_STREAM;
  }
  throw new ValidationError(
    "expected version must come from any(), noStream(), exact(n) or streamExists()",
  );
}
