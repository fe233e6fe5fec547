/**
 * The secret adapter: credentials and other secrets (an integration's API token, a tenant's
 * webhook secret) under rotating keys. A value records its key version, so old values stay
 * readable after a rotation, and after `revokeKeys` too (revocation only stops new encryptions);
 * only `destroyKeys` ends that.
 *
 * @module
 */
import type { Envelope } from "./envelope.ts";
import { InvalidInputError } from "./errors.ts";
import { checkKeyVersion, checkScope, scopeIdText } from "./validation.ts";

/**
 * An encrypted secret and the key version it was encrypted under. For es2 content the version is
 * also inside `content` and the two must agree; Go-format content depends on `keyVersion`.
 *
 * @example
 * ```ts
 * import type { SecretValue } from "@eventsalsa/eventsalsa/encryption";
 * const value: SecretValue = { content: "es2:2:...", keyVersion: 2 };
 * ```
 */
export interface SecretValue {
  /** The encrypted text. */
  readonly content: string;
  /** The key version it was encrypted under. */
  readonly keyVersion: number;
}

/**
 * Builds a {@link SecretValue} (Go: `secret.New`), e.g. from two database columns. It is checked
 * only when decrypted.
 *
 * @example
 * ```ts
 * import { secretValue } from "@eventsalsa/eventsalsa/encryption";
 * const value = secretValue("es2:3:...", 3);
 * ```
 */
export function secretValue(content: string, keyVersion: number): SecretValue {
  return { content, keyVersion };
}

/**
 * Whether a secret value holds nothing (empty content).
 *
 * @example
 * ```ts
 * import { isEmptySecret } from "@eventsalsa/eventsalsa/encryption";
 * console.log(isEmptySecret({ content: "", keyVersion: 1 })); // true
 * ```
 */
export function isEmptySecret(value: SecretValue | null | undefined): boolean {
  return value === null || value === undefined || value.content === "";
}

/**
 * Encrypts secrets under a scope id's rotating key in one scope (e.g. `"integration"`), fixed when
 * the adapter is made (`encryption.secrets(scope)`), like the PII adapter's. Create the key with
 * `KeyManager.createKey` and rotate it with `KeyManager.rotateKey`; new values use the newest
 * version, old values decrypt with theirs. Secrets are strings (UTF-8); anything else is an
 * `InvalidInputError`.
 *
 * `ID` is the type of scope ids: strings, or objects with their own `toString()` (value-object ids).
 *
 * @example
 * ```ts
 * import { createEncryption, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const encryption = createEncryption({
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 * });
 * const secrets = encryption.secrets("integration");
 * await encryption.keyManager.createKey(null, "integration", "stripe");
 * const v1 = await secrets.encrypt(null, "stripe", "sk_live_1");
 * await encryption.keyManager.rotateKey(null, "integration", "stripe");
 * const v2 = await secrets.encrypt(null, "stripe", "sk_live_2");
 * console.log(v1.keyVersion, v2.keyVersion); // 1 2
 * console.log(await secrets.decrypt(null, "stripe", v1)); // sk_live_1
 * ```
 */
export class SecretAdapter<Tx, ID = string> {
  readonly #envelope: Envelope<Tx>;
  /** The key scope of this adapter. */
  readonly scope: string;

  /** Creates an adapter for one scope. */
  constructor(envelope: Envelope<Tx>, scope: string) {
    if (envelope === null || typeof envelope !== "object") {
      throw new InvalidInputError("secret adapter: envelope is required");
    }
    this.#envelope = envelope;
    this.scope = checkScope(scope);
  }

  /**
   * Encrypts a secret for the scope id under its active key.
   *
   * @example
   * ```ts
   * import type { SecretAdapter } from "@eventsalsa/eventsalsa/encryption";
   * declare const secrets: SecretAdapter<unknown>;
   * const { content, keyVersion } = await secrets.encrypt(null, "stripe", "sk_live_x");
   * ```
   */
  async encrypt(tx: Tx, scopeId: ID, plaintext: string): Promise<SecretValue> {
    const id = scopeIdText(scopeId);
    if (typeof plaintext !== "string") {
      throw new InvalidInputError("secret plaintext must be a string");
    }
    const result = await this.#envelope.encryptVersioned(tx, this.scope, id, plaintext);
    return { content: result.ciphertext, keyVersion: result.keyVersion };
  }

  /**
   * Decrypts a secret of the scope id with the version it records (revoked versions included).
   *
   * @example
   * ```ts
   * import type { SecretAdapter, SecretValue } from "@eventsalsa/eventsalsa/encryption";
   * declare const secrets: SecretAdapter<unknown>;
   * declare const stored: SecretValue;
   * const apiKey = await secrets.decrypt(null, "stripe", stored);
   * ```
   */
  decrypt(tx: Tx, scopeId: ID, value: SecretValue): Promise<string> {
    let id: string;
    try {
      id = scopeIdText(scopeId);
      if (value === null || typeof value !== "object" || typeof value.content !== "string") {
        throw new InvalidInputError("secret value must be { content: string, keyVersion: number }");
      }
      checkKeyVersion(value.keyVersion, "secret keyVersion");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#envelope.decrypt(tx, this.scope, id, value.content, {
      keyVersion: value.keyVersion,
    });
  }
}
