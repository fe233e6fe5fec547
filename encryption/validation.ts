/**
 * Input checks shared by the encryption component's entry points. Everything here throws
 * {@link InvalidInputError} before any read or write. Scopes, scope ids and context labels follow
 * the rule every eventsalsa component applies to stored text (internal/stored_text.ts): non-empty,
 * at most 1,024 UTF-8 bytes, no NUL, no lone UTF-16 surrogate (which UTF-8 would turn into U+FFFD,
 * folding two ids into one key row and one associated data).
 *
 * @module
 */
import { storedTextProblem } from "../internal/stored_text.ts";
import { InvalidInputError } from "./errors.ts";

/** Highest key version (`key_version` is `INT4`). */
export const MAX_KEY_VERSION = 2_147_483_647;

function checkText(value: unknown, what: string): string {
  if (typeof value !== "string") throw new InvalidInputError(`${what} must be a string`);
  const problem = storedTextProblem(value);
  if (problem !== null) throw new InvalidInputError(`${what} ${problem}`);
  return value;
}

/** Checks a (scope, scopeId) pair. */
export function checkSubject(scope: unknown, scopeId: unknown): void {
  checkText(scope, "scope");
  checkText(scopeId, "scopeId");
}

/** Checks a scope on its own (adapters fix it at construction). */
export function checkScope(scope: unknown): string {
  return checkText(scope, "scope");
}

/**
 * Turns a scope id given to an adapter (a string, or anything with its own `toString`, like a
 * value-object id) into checked text.
 */
export function scopeIdText(scopeId: unknown): string {
  if (typeof scopeId === "string") return checkText(scopeId, "scopeId");
  if (
    scopeId !== null && typeof scopeId === "object" &&
    typeof (scopeId as { toString?: unknown }).toString === "function" &&
    (scopeId as { toString: unknown }).toString !== Object.prototype.toString
  ) {
    return checkText(String(scopeId), "scopeId");
  }
  throw new InvalidInputError("scopeId must be a non-empty string or an object with toString()");
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
  return checkText(value, "context");
}
