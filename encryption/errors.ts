/**
 * Error classes of the encryption component. Each has a stable `name` and `code`, carries the
 * scope, scope id and key version it concerns where there is one, and never carries key bytes or
 * plaintext (neither in its fields nor in its message). The base messages are the Go library's
 * sentinel texts, so logs read the same across both implementations.
 *
 * @module
 */

/**
 * Where a key error happened: the scope and scope id, and the key version when known.
 *
 * @example
 * ```ts
 * import { type KeyErrorContext, KeyNotFoundError } from "@eventsalsa/eventsalsa/encryption";
 * const context: KeyErrorContext = { scope: "user-pii", scopeId: "u-1", keyVersion: 2 };
 * console.log(new KeyNotFoundError(context).message);
 * ```
 */
export interface KeyErrorContext {
  /** The key's scope, e.g. `"user-pii"`. */
  readonly scope: string;
  /** The id within the scope, e.g. a user id. */
  readonly scopeId: string;
  /** The key version concerned, or `null` when the operation was about the active key. */
  readonly keyVersion?: number | null;
}

function where(context: KeyErrorContext): string {
  const version = context.keyVersion === undefined || context.keyVersion === null
    ? ""
    : ` v${context.keyVersion}`;
  return `${context.scope}/${context.scopeId}${version}`;
}

/**
 * Bad input to an encryption call (empty scope, non-string plaintext, a wrong option). Thrown before
 * anything is read or written, so nothing changed and the caller's transaction is still usable.
 * It extends `TypeError`.
 *
 * @example
 * ```ts
 * import { InvalidInputError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new InvalidInputError("scope must be a non-empty string");
 * console.log(error.name, error.code); // InvalidInputError ERR_INVALID_INPUT
 * ```
 */
export class InvalidInputError extends TypeError {
  /** Stable error name. */
  override readonly name: string = "InvalidInputError";
  /** Stable error code. */
  readonly code: string = "ERR_INVALID_INPUT";
}

/**
 * Base of {@link DecryptionError} and {@link EncryptionError}: a cipher operation failed for a
 * `reason` given in words that never include keys or plaintext, with the scope and scope id when known.
 *
 * @example
 * ```ts
 * import { CipherOperationError, DecryptionError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new DecryptionError("authentication failed");
 * console.log(error instanceof CipherOperationError, error.reason); // true authentication failed
 * ```
 */
export abstract class CipherOperationError extends Error {
  /** Why it failed, without secrets. */
  readonly reason: string;
  /** The scope, when the failure concerns a scope id's value or key. */
  readonly scope: string | null;
  /** The scope id, when known. */
  readonly scopeId: string | null;
  /** The key version, when known. */
  readonly keyVersion: number | null;

  /** `operation` is `"decryption"` or `"encryption"`, as in the Go sentinel texts. */
  constructor(
    operation: string,
    reason: string,
    context?: KeyErrorContext,
    options?: ErrorOptions,
  ) {
    super(
      `${operation} failed${context === undefined ? "" : `: ${where(context)}`}: ${reason}`,
      options,
    );
    this.reason = reason;
    this.scope = context?.scope ?? null;
    this.scopeId = context?.scopeId ?? null;
    this.keyVersion = context?.keyVersion ?? null;
  }
}

/**
 * No key exists for the scope id (or for the requested version), and none was ever destroyed
 * there: the key was never created. Go's text: `encryption key not found`.
 *
 * @example
 * ```ts
 * import { KeyNotFoundError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new KeyNotFoundError({ scope: "user-pii", scopeId: "u-1", keyVersion: 2 });
 * console.log(error.message); // encryption key not found: user-pii/u-1 v2
 * ```
 */
export class KeyNotFoundError extends Error {
  /** Stable error name. */
  override readonly name: string = "KeyNotFoundError";
  /** Stable error code. */
  readonly code: string = "ERR_KEY_NOT_FOUND";
  /** The key's scope. */
  readonly scope: string;
  /** The scope id. */
  readonly scopeId: string;
  /** The key version asked for, or `null` when the active key was asked for. */
  readonly keyVersion: number | null;

  /** Creates the error for the given scope id (and version). */
  constructor(context: KeyErrorContext, options?: ErrorOptions) {
    super(`encryption key not found: ${where(context)}`, options);
    this.scope = context.scope;
    this.scopeId = context.scopeId;
    this.keyVersion = context.keyVersion ?? null;
  }
}

/**
 * The scope id's keys were destroyed (crypto-shredded): the data encrypted under them can never be
 * decrypted again. Distinct from {@link KeyNotFoundError}, which means the key never existed. Go's
 * text: `encryption key has been destroyed`.
 *
 * @example
 * ```ts
 * import { KeyDestroyedError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new KeyDestroyedError({ scope: "user-pii", scopeId: "u-1", keyVersion: 1 }, new Date());
 * console.log(error.code); // ERR_KEY_DESTROYED
 * ```
 */
export class KeyDestroyedError extends Error {
  /** Stable error name. */
  override readonly name: string = "KeyDestroyedError";
  /** Stable error code. */
  readonly code: string = "ERR_KEY_DESTROYED";
  /** The key's scope. */
  readonly scope: string;
  /** The scope id. */
  readonly scopeId: string;
  /** The key version asked for, or `null` when the active key was asked for. */
  readonly keyVersion: number | null;
  /** When the keys were destroyed. */
  readonly destroyedAt: Date;

  /** Creates the error for the given scope id (and version) and destruction time. */
  constructor(context: KeyErrorContext, destroyedAt: Date, options?: ErrorOptions) {
    super(`encryption key has been destroyed: ${where(context)}`, options);
    this.scope = context.scope;
    this.scopeId = context.scopeId;
    this.keyVersion = context.keyVersion ?? null;
    this.destroyedAt = destroyedAt;
  }
}

/**
 * `createKey` found an active key for the scope id (or lost a race against a concurrent
 * `createKey`). Go's text: `encryption key already exists`.
 *
 * @example
 * ```ts
 * import { KeyExistsError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new KeyExistsError({ scope: "user-pii", scopeId: "u-1", keyVersion: 1 });
 * console.log(error.keyVersion); // 1
 * ```
 */
export class KeyExistsError extends Error {
  /** Stable error name. */
  override readonly name: string = "KeyExistsError";
  /** Stable error code. */
  readonly code: string = "ERR_KEY_EXISTS";
  /** The key's scope. */
  readonly scope: string;
  /** The scope id. */
  readonly scopeId: string;
  /** The active version found, or `null` when a concurrent writer won and it is unknown. */
  readonly keyVersion: number | null;

  /** Creates the error for the given scope id. */
  constructor(context: KeyErrorContext, options?: ErrorOptions) {
    super(`encryption key already exists: ${where(context)}`, options);
    this.scope = context.scope;
    this.scopeId = context.scopeId;
    this.keyVersion = context.keyVersion ?? null;
  }
}

/**
 * A key row names a system key (KEK) that the keyring does not hold: a configuration problem (a KEK
 * retired before the rewrap finished, a missing key file), not crypto-shredding. The data is still
 * recoverable once the KEK is loaded again.
 *
 * @example
 * ```ts
 * import { SystemKeyNotFoundError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new SystemKeyNotFoundError("kek-2019");
 * console.log(error.systemKeyId); // kek-2019
 * ```
 */
export class SystemKeyNotFoundError extends Error {
  /** Stable error name. */
  override readonly name: string = "SystemKeyNotFoundError";
  /** Stable error code. */
  readonly code: string = "ERR_SYSTEM_KEY_NOT_FOUND";
  /** The missing system key's id. */
  readonly systemKeyId: string;
  /** The scope whose key needed it, when the lookup was for a data key. */
  readonly scope: string | null;
  /** The scope id whose key needed it, when the lookup was for a data key. */
  readonly scopeId: string | null;
  /** The data key version that needed it, when known. */
  readonly keyVersion: number | null;

  /** Creates the error; `context` names the data key that needed the system key. */
  constructor(systemKeyId: string, context?: KeyErrorContext, options?: ErrorOptions) {
    super(
      `system key ${JSON.stringify(systemKeyId)} not found in the keyring` +
        (context === undefined ? "" : ` (needed by ${where(context)})`),
      options,
    );
    this.systemKeyId = systemKeyId;
    this.scope = context?.scope ?? null;
    this.scopeId = context?.scopeId ?? null;
    this.keyVersion = context?.keyVersion ?? null;
  }
}

/**
 * Decryption failed: the ciphertext was tampered with, truncated, not valid base64, bound to
 * another scope id or version, encrypted under another key, or its plaintext is not valid UTF-8; or
 * a wrapped data key could not be unwrapped with its system key. `reason` says which, in words that
 * never include the ciphertext, the key or the plaintext. Go's text: `decryption failed`.
 *
 * @example
 * ```ts
 * import { DecryptionError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new DecryptionError("authentication failed", { scope: "user-pii", scopeId: "u-1", keyVersion: 1 });
 * console.log(error.message); // decryption failed: user-pii/u-1 v1: authentication failed
 * ```
 */
export class DecryptionError extends CipherOperationError {
  /** Stable error name. */
  override readonly name: string = "DecryptionError";
  /** Stable error code. */
  readonly code: string = "ERR_DECRYPTION";

  /** Creates the error with a reason and, optionally, the scope id it concerns. */
  constructor(reason: string, context?: KeyErrorContext, options?: ErrorOptions) {
    super("decryption", reason, context, options);
  }
}

/**
 * Encryption failed for a reason other than bad input: a value cannot be written in the configured
 * format (e.g. a Go-format PII value under a key version other than 1), or the cipher failed.
 * Go's text: `encryption failed`.
 *
 * @example
 * ```ts
 * import { EncryptionError } from "@eventsalsa/eventsalsa/encryption";
 * console.log(new EncryptionError("AES-GCM encryption failed").code); // ERR_ENCRYPTION
 * ```
 */
export class EncryptionError extends CipherOperationError {
  /** Stable error name. */
  override readonly name: string = "EncryptionError";
  /** Stable error code. */
  readonly code: string = "ERR_ENCRYPTION";

  /** Creates the error with a reason and, optionally, the scope id it concerns. */
  constructor(reason: string, context?: KeyErrorContext, options?: ErrorOptions) {
    super("encryption", reason, context, options);
  }
}

/**
 * A key has the wrong length: a system key that is not 32 bytes, a blind-index key shorter than 32
 * bytes, or a key handed to a keyring or hasher with the wrong size. Go's text: `invalid key size`.
 *
 * @example
 * ```ts
 * import { InvalidKeySizeError } from "@eventsalsa/eventsalsa/encryption";
 * const error = new InvalidKeySizeError("system key \"k1\"", 3, "exactly 32");
 * console.log(error.actualSize); // 3
 * ```
 */
export class InvalidKeySizeError extends TypeError {
  /** Stable error name. */
  override readonly name: string = "InvalidKeySizeError";
  /** Stable error code. */
  readonly code: string = "ERR_INVALID_KEY_SIZE";
  /** Which key, e.g. `system key "k1"`. */
  readonly what: string;
  /** The length found, in bytes. */
  readonly actualSize: number;
  /** The length required, in words, e.g. `exactly 32` or `at least 32`. */
  readonly expected: string;

  /** Creates the error; `what` names the key, never its bytes. */
  constructor(what: string, actualSize: number, expected: string) {
    super(`invalid key size: ${what} is ${actualSize} bytes, want ${expected}`);
    this.what = what;
    this.actualSize = actualSize;
    this.expected = expected;
  }
}

/**
 * A keyring (or blind-index key set) could not be built: no keys, an active id that is not among
 * them, an empty or malformed key id, a key that is not standard base64, an unreadable key file or
 * an unset environment variable. Thrown at construction, never later.
 *
 * @example
 * ```ts
 * import { keyringFromMap, KeyringError } from "@eventsalsa/eventsalsa/encryption";
 * try {
 *   keyringFromMap({ k1: new Uint8Array(32) }, "k2");
 * } catch (error) {
 *   console.log(error instanceof KeyringError); // true
 * }
 * ```
 */
export class KeyringError extends Error {
  /** Stable error name. */
  override readonly name: string = "KeyringError";
  /** Stable error code. */
  readonly code: string = "ERR_KEYRING";
  /** The key id concerned, when the problem is one key. */
  readonly keyId: string | null;

  /** Creates the error. */
  constructor(message: string, keyId: string | null = null, options?: ErrorOptions) {
    super(message, options);
    this.keyId = keyId;
  }
}
