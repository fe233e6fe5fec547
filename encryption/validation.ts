/**
 * Input checks shared by the encryption component's entry points. Everything here throws
 * {@link InvalidInputError} before any read or write.
 *
 * @module
 */
import { InvalidInputError } from "./errors.ts";

/** Longest accepted scope or scope id, in UTF-16 code units. */
export const MAX_SCOPE_LENGTH = 1024;
/** Highest key version (`key_version` is `INT4`). */
export const MAX_KEY_VERSION = 2_147_483_647;

function checkName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new InvalidInputError(`${what} must be a non-empty string`);
  }
  if (value.length > MAX_SCOPE_LENGTH) {
    throw new InvalidInputError(`${what} is longer than ${MAX_SCOPE_LENGTH} characters`);
  }
  if (value.includes("\u0000")) {
    throw new InvalidInputError(`${what} must not contain NUL characters`);
  }
  return value;
}

/** Checks a (scope, scopeId) pair. */
export function checkSubject(scope: unknown, scopeId: unknown): void {
  checkName(scope, "scope");
  checkName(scopeId, "scopeId");
}

/** Checks a scope on its own (adapters fix it at construction). */
export function checkScope(scope: unknown): string {
  return checkName(scope, "scope");
}

/** Turns a subject id (a string, or anything with its own `toString`, like a branded id) into text. */
export function subjectIdText(subjectId: unknown): string {
  if (typeof subjectId === "string") return checkName(subjectId, "subject id");
  if (
    subjectId !== null && typeof subjectId === "object" &&
    typeof (subjectId as { toString?: unknown }).toString === "function" &&
    (subjectId as { toString: unknown }).toString !== Object.prototype.toString
  ) {
    return checkName(String(subjectId), "subject id");
  }
  throw new InvalidInputError("subject id must be a non-empty string or an object with toString()");
}

/** Checks a key version: an integer from 1 to 2^31 - 1. */
export function checkKeyVersion(value: unknown, what = "keyVersion"): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_KEY_VERSION
  ) {
    throw new InvalidInputError(
      `${what} must be an integer from 1 to ${MAX_KEY_VERSION}, got ${String(value)}`,
    );
  }
  return value;
}

/** Checks an optional associated-data context label. */
export function checkContext(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_SCOPE_LENGTH) {
    throw new InvalidInputError(
      `context must be a non-empty string of at most ${MAX_SCOPE_LENGTH} characters`,
    );
  }
  return value;
}
