/**
 * The PII adapter: personal data encrypted under one key per scope id (a user, a customer), so that
 * destroying that scope id's keys (crypto-shredding) makes every value unreadable at once.
 *
 * @module
 */
import type { Envelope } from "./envelope.ts";
import { ES2_PREFIX } from "./envelope_format.ts";
import { EncryptionError, InvalidInputError } from "./errors.ts";
import { checkContext, checkScope, scopeIdText } from "./validation.ts";

/**
 * What to log instead of an encrypted value.
 *
 * @example
 * ```ts
 * import { REDACTED } from "@eventsalsa/eventsalsa/encryption";
 * console.log({ email: REDACTED }); // { email: "[REDACTED]" }
 * ```
 */
export const REDACTED = "[REDACTED]";

/**
 * Options of {@link PiiAdapter}.
 *
 * @example
 * ```ts
 * import type { PiiAdapterOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: PiiAdapterOptions = { context: "email" };
 * ```
 */
export interface PiiAdapterOptions {
  /**
   * A label bound into every value (e.g. the field name), so values cannot be swapped between
   * fields of one scope id. Values written with a label must be read with the same label.
   */
  context?: string;
}

/**
 * Encrypts personal data under a scope id's key in one scope (e.g. `"user-pii"`), fixed when the
 * adapter is made (`encryption.pii(scope)`), like the secret adapter's. Create the key with
 * `KeyManager.createKey(tx, scope, scopeId)` first (encrypting without one throws
 * `KeyNotFoundError`); destroy it with `KeyManager.destroyKeys` to shred every value at once.
 * Values are strings (UTF-8); anything else is an `InvalidInputError`.
 *
 * `ID` is the type of scope ids: strings, or objects with their own `toString()` (value-object ids).
 *
 * Decryption uses the key version written inside the value, so a rotation of the scope id's key
 * never makes older values unreadable (the Go adapter always decrypts with version 1). Go-format
 * values, which carry no version, are read with version 1, as Go writes them. When the envelope
 * writes the Go format, encrypting under any version other than 1 is refused
 * (`EncryptionError`), since Go readers could not decrypt it.
 *
 * @example
 * ```ts
 * import { createEncryption, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const encryption = createEncryption({
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 * });
 * const pii = encryption.pii("user-pii");
 * await encryption.keyManager.createKey(null, "user-pii", "u-1");
 * const email = await pii.encrypt(null, "u-1", "alice@example.com");
 * console.log(await pii.decrypt(null, "u-1", email)); // alice@example.com
 * ```
 */
export class PiiAdapter<Tx, ID = string> {
  readonly #envelope: Envelope<Tx>;
  /** The key scope of this adapter. */
  readonly scope: string;
  /** The context label bound into values, if any. */
  readonly context: string | undefined;

  /** Creates an adapter for one scope. */
  constructor(envelope: Envelope<Tx>, scope: string, options: PiiAdapterOptions = {}) {
    if (envelope === null || typeof envelope !== "object") {
      throw new InvalidInputError("PII adapter: envelope is required");
    }
    this.#envelope = envelope;
    this.scope = checkScope(scope);
    this.context = checkContext(options.context);
    if (this.context !== undefined && envelope.writeFormat === "go") {
      throw new InvalidInputError("PII adapter: a context label cannot be bound in the Go format");
    }
  }

  /**
   * Encrypts a string for the scope id under its active key.
   *
   * @example
   * ```ts
   * import type { PiiAdapter } from "@eventsalsa/eventsalsa/encryption";
   * declare const pii: PiiAdapter<unknown>;
   * const value = await pii.encrypt(null, "u-1", "Alice Example");
   * ```
   */
  async encrypt(tx: Tx, scopeId: ID, plaintext: string): Promise<string> {
    const id = scopeIdText(scopeId);
    if (typeof plaintext !== "string") {
      throw new InvalidInputError("PII plaintext must be a string");
    }
    const result = await this.#envelope.encryptVersioned(tx, this.scope, id, plaintext, {
      context: this.context,
    });
    if (result.format === "go" && result.keyVersion !== 1) {
      throw new EncryptionError(
        "the Go format cannot carry key version " + result.keyVersion +
          " and Go's PII adapter only reads version 1",
        { scope: this.scope, scopeId: id, keyVersion: result.keyVersion },
      );
    }
    return result.ciphertext;
  }

  /**
   * Decrypts a value of the scope id, with the key version it was written under.
   *
   * @example
   * ```ts
   * import type { PiiAdapter } from "@eventsalsa/eventsalsa/encryption";
   * declare const pii: PiiAdapter<unknown>;
   * declare const stored: string;
   * const name = await pii.decrypt(null, "u-1", stored);
   * ```
   */
  decrypt(tx: Tx, scopeId: ID, value: string): Promise<string> {
    let id: string;
    try {
      id = scopeIdText(scopeId);
      if (typeof value !== "string") throw new InvalidInputError("PII value must be a string");
    } catch (error) {
      return Promise.reject(error);
    }
    const es2 = value.startsWith(ES2_PREFIX);
    return this.#envelope.decrypt(tx, this.scope, id, value, {
      context: this.context,
      keyVersion: es2 ? undefined : 1,
    });
  }
}

/**
 * Whether an encrypted PII value is empty (`""`), i.e. nothing was stored.
 *
 * @example
 * ```ts
 * import { isEmptyValue } from "@eventsalsa/eventsalsa/encryption";
 * console.log(isEmptyValue(""), isEmptyValue("es2:1:...")); // true false
 * ```
 */
export function isEmptyValue(value: string | null | undefined): boolean {
  return value === undefined || value === null || value === "";
}
