/**
 * The secret adapter: credentials and other secrets of a scope (an integration, a tenant), under
 * rotating keys. A value records its key version, so old values stay readable after a rotation,
 * and after `revokeKeys` too (revocation only stops new encryptions); only `destroyKeys` ends that.
 *
 * @module
 */
import type { Envelope } from "./envelope.ts";
import { InvalidInputError } from "./errors.ts";
import { checkKeyVersion } from "./validation.ts";

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
 * Encrypts secrets under a scope's rotating key. Create the key with `KeyManager.createKey` and
 * rotate it with `KeyManager.rotateKey`; new values use the newest version, old values decrypt
 * with theirs.
 *
 * @example
 * ```ts
 * import { createEncryption, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const { keyManager, secrets } = createEncryption({
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 * });
 * await keyManager.createKey(null, "integration", "stripe");
 * const v1 = await secrets.encrypt(null, "integration", "stripe", "sk_live_1");
 * await keyManager.rotateKey(null, "integration", "stripe");
 * const v2 = await secrets.encrypt(null, "integration", "stripe", "sk_live_2");
 * console.log(v1.keyVersion, v2.keyVersion); // 1 2
 * console.log(await secrets.decrypt(null, "integration", "stripe", v1)); // sk_live_1
 * ```
 */
export class SecretAdapter<Tx> {
  readonly #envelope: Envelope<Tx>;

  /** Creates the adapter over an envelope. */
  constructor(envelope: Envelope<Tx>) {
    if (envelope === null || typeof envelope !== "object") {
      throw new InvalidInputError("secret adapter: envelope is required");
    }
    this.#envelope = envelope;
  }

  /**
   * Encrypts a secret under the scope's active key.
   *
   * @example
   * ```ts
   * import type { SecretAdapter } from "@eventsalsa/eventsalsa/encryption";
   * declare const secrets: SecretAdapter<unknown>;
   * const { content, keyVersion } = await secrets.encrypt(null, "integration", "stripe", "sk_live_x");
   * ```
   */
  async encrypt(tx: Tx, scope: string, scopeId: string, plaintext: string): Promise<SecretValue> {
    if (typeof plaintext !== "string") {
      throw new InvalidInputError("secret plaintext must be a string");
    }
    const result = await this.#envelope.encryptVersioned(tx, scope, scopeId, plaintext);
    return { content: result.ciphertext, keyVersion: result.keyVersion };
  }

  /**
   * Decrypts a secret with the version it records (revoked versions included).
   *
   * @example
   * ```ts
   * import type { SecretAdapter, SecretValue } from "@eventsalsa/eventsalsa/encryption";
   * declare const secrets: SecretAdapter<unknown>;
   * declare const stored: SecretValue;
   * const apiKey = await secrets.decrypt(null, "integration", "stripe", stored);
   * ```
   */
  decrypt(tx: Tx, scope: string, scopeId: string, value: SecretValue): Promise<string> {
    try {
      if (value === null || typeof value !== "object" || typeof value.content !== "string") {
        throw new InvalidInputError("secret value must be { content: string, keyVersion: number }");
      }
      checkKeyVersion(value.keyVersion, "secret keyVersion");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#envelope.decrypt(tx, scope, scopeId, value.content, {
      keyVersion: value.keyVersion,
    });
  }
}
