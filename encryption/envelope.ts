/**
 * Envelope encryption of values: each value is encrypted under its scope id's data key (DEK), which
 * the key store keeps wrapped under a system key. Runtime-agnostic: it talks to a {@link KeyStore}
 * port and never to a database directly.
 *
 * @module
 */
import { DataKey, NONCE_SIZE, randomBytes } from "./aes_gcm.ts";
import { unwrapDek } from "./data_keys.ts";
import { type DekCache, type KeyCache, keyCacheOf } from "./dek_cache.ts";
import { encodeBase64Std, utf8DecodeStrict, utf8Encode, zeroBytes } from "./encoding.ts";
import {
  type EnvelopeFormat,
  es2AssociatedData,
  formatEs2Detached,
  parseCiphertext,
} from "./envelope_format.ts";
import {
  DecryptionError,
  InvalidInputError,
  KeyDestroyedError,
  KeyNotFoundError,
} from "./errors.ts";
import type { Keyring } from "./keyring.ts";
import type { KeyLookup, KeyStore, StoredKey } from "./key_store.ts";
import { checkContext, checkKeyVersion, checkSubject } from "./validation.ts";
import { checkTelemetry, type Telemetry, type TelemetryTracer } from "../internal/telemetry.ts";
import { fetchKeySpan } from "./telemetry.ts";

/**
 * What an {@link Envelope} is built from.
 *
 * @example
 * ```ts
 * import { DekCache, Envelope, type EnvelopeOptions, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const options: EnvelopeOptions<unknown> = {
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 *   cache: new DekCache({ ttlMs: 30_000 }),
 * };
 * const envelope = new Envelope(options);
 * ```
 */
export interface EnvelopeOptions<Tx> {
  /** System keys. */
  keyring: Keyring;
  /** Where wrapped data keys live. */
  store: KeyStore<Tx>;
  /** An optional cache of unwrapped data keys; none when omitted. */
  cache?: DekCache | null;
  /**
   * Format of new values: `"es2"` (default: self-describing, bound to scope id and version) or
   * `"go"` (the Go library's bare base64, for data that Go services must still read).
   */
  writeFormat?: EnvelopeFormat;
  /**
   * OpenTelemetry: with a `tracer`, a span (`eventsalsa.encryption.fetch_key`) for every
   * encryption or decryption that fetches its key from the key store; values served from the DEK
   * cache make none. Spans name the scope, scope id and key version, never keys or values. No
   * telemetry when omitted; a `meter` is not used.
   */
  telemetry?: Telemetry;
}

/**
 * Per-call options of {@link Envelope.encrypt}.
 *
 * @example
 * ```ts
 * import type { EncryptOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: EncryptOptions = { context: "email" };
 * ```
 */
export interface EncryptOptions {
  /**
   * A label bound into the associated data (es2 only), e.g. the field name, so a value cannot be
   * moved to another field of the same scope id. Decrypt with the same label.
   */
  context?: string;
}

/**
 * Per-call options of {@link Envelope.decrypt}.
 *
 * @example
 * ```ts
 * import type { DecryptOptions } from "@eventsalsa/eventsalsa/encryption";
 * const legacy: DecryptOptions = { keyVersion: 1 }; // for a Go-format value
 * ```
 */
export interface DecryptOptions extends EncryptOptions {
  /**
   * The key version of a Go-format value, which does not carry it. For an es2 value it may be
   * given too, and must then match the embedded version.
   */
  keyVersion?: number;
}

/**
 * A value encrypted by {@link Envelope.encryptVersioned}: the text, the key version used, and the
 * format written.
 *
 * @example
 * ```ts
 * import type { VersionedCiphertext } from "@eventsalsa/eventsalsa/encryption";
 * const row = (v: VersionedCiphertext) => ({ secret: v.ciphertext, key_version: v.keyVersion });
 * ```
 */
export interface VersionedCiphertext {
  /** The encrypted value. */
  readonly ciphertext: string;
  /** The scope id's key version it was encrypted under. */
  readonly keyVersion: number;
  /** Its format. */
  readonly format: EnvelopeFormat;
}

const encoder = new TextEncoder();
/** Scratch space for UTF-8 plaintext of strings up to 4 KiB characters; zeroed after each use. */
const SCRATCH = new Uint8Array(12 * 1024);

function lookupError(
  lookup: KeyLookup,
  scope: string,
  scopeId: string,
  keyVersion: number | null,
): KeyDestroyedError | KeyNotFoundError {
  const context = { scope, scopeId, keyVersion };
  return lookup.status === "destroyed"
    ? new KeyDestroyedError(context, lookup.tombstone.destroyedAt)
    : new KeyNotFoundError(context);
}

/**
 * Encrypts and decrypts values under per-scope-id data keys. New values use the scope id's active
 * key version; decryption uses the version embedded in the value (es2) or given by the caller
 * (Go format), revoked or not. Strings are UTF-8; the `*Bytes` methods take and return bytes, which
 * the caller can zero after use.
 *
 * Errors: {@link InvalidInputError} for bad arguments (nothing read), {@link KeyNotFoundError} when
 * the scope id or version never had a key, {@link KeyDestroyedError} after crypto-shredding,
 * `SystemKeyNotFoundError` when the keyring lacks the row's system key, {@link DecryptionError} for
 * a malformed, tampered, misplaced or undecodable value.
 *
 * @example
 * ```ts
 * import { Envelope, KeyManager, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const keyring = keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1");
 * const store = new InMemoryKeyStore();
 * await new KeyManager({ keyring, store }).createKey(null, "tenant", "abc");
 * const envelope = new Envelope({ keyring, store });
 * const ciphertext = await envelope.encrypt(null, "tenant", "abc", "hello world");
 * console.log(await envelope.decrypt(null, "tenant", "abc", ciphertext)); // hello world
 * ```
 */
export class Envelope<Tx> {
  readonly #keyring: Keyring;
  readonly #store: KeyStore<Tx>;
  readonly #cache: KeyCache | null;
  readonly #tracer: TelemetryTracer | null;
  /** The format new values are written in. */
  readonly writeFormat: EnvelopeFormat;

  /** Builds an envelope; see {@link EnvelopeOptions}. */
  constructor(options: EnvelopeOptions<Tx>) {
    if (options === null || typeof options !== "object") {
      throw new InvalidInputError("envelope options are required");
    }
    if (options.keyring === undefined || options.keyring === null) {
      throw new InvalidInputError("envelope: keyring is required");
    }
    if (options.store === undefined || options.store === null) {
      throw new InvalidInputError("envelope: store is required");
    }
    const format = options.writeFormat ?? "es2";
    if (format !== "es2" && format !== "go") {
      throw new InvalidInputError(
        `envelope: writeFormat must be "es2" or "go", got ${String(format)}`,
      );
    }
    this.#keyring = options.keyring;
    this.#store = options.store;
    this.#cache = options.cache ? keyCacheOf(options.cache) : null;
    this.#tracer =
      checkTelemetry(options.telemetry, (message) => new InvalidInputError(message))?.tracer ??
        null;
    this.writeFormat = format;
  }

  /**
   * Encrypts a string (as UTF-8) under the scope id's active key and returns the value (es2 by
   * default). Anything but a string is an {@link InvalidInputError}: bytes go to
   * {@link Envelope.encryptBytes}.
   *
   * @example
   * ```ts
   * import type { Envelope } from "@eventsalsa/eventsalsa/encryption";
   * declare const envelope: Envelope<unknown>;
   * const email = await envelope.encrypt(null, "user-pii", "u-1", "alice@example.com", { context: "email" });
   * ```
   */
  encrypt(
    tx: Tx,
    scope: string,
    scopeId: string,
    plaintext: string,
    options?: EncryptOptions,
  ): Promise<string> {
    if (typeof plaintext !== "string") {
      return Promise.reject(
        new InvalidInputError("plaintext must be a string (use encryptBytes for bytes)"),
      );
    }
    return this.#ciphertextOnly(tx, scope, scopeId, plaintext, options);
  }

  /**
   * Encrypts bytes under the scope id's active key. The plaintext array is read before this
   * returns and left as it is (zero it yourself when done). Anything but a `Uint8Array` is an
   * {@link InvalidInputError}: strings go to {@link Envelope.encrypt}.
   *
   * @example
   * ```ts
   * import type { Envelope } from "@eventsalsa/eventsalsa/encryption";
   * declare const envelope: Envelope<unknown>;
   * const secret = crypto.getRandomValues(new Uint8Array(16));
   * const value = await envelope.encryptBytes(null, "integration", "stripe", secret);
   * secret.fill(0);
   * ```
   */
  encryptBytes(
    tx: Tx,
    scope: string,
    scopeId: string,
    plaintext: Uint8Array,
    options?: EncryptOptions,
  ): Promise<string> {
    if (!(plaintext instanceof Uint8Array)) {
      return Promise.reject(
        new InvalidInputError("plaintext must be a Uint8Array (use encrypt for strings)"),
      );
    }
    return this.#ciphertextOnly(tx, scope, scopeId, plaintext, options);
  }

  #ciphertextOnly(
    tx: Tx,
    scope: string,
    scopeId: string,
    plaintext: string | Uint8Array,
    options: EncryptOptions | undefined,
  ): Promise<string> {
    try {
      const result = this.#encrypt(tx, scope, scopeId, plaintext, options);
      return result instanceof Promise
        ? result.then((r) => r.ciphertext)
        : Promise.resolve(result.ciphertext);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Encrypts a string (as UTF-8) or bytes and reports the key version used: what you need to store
   * alongside a Go-format value, which does not carry its version. Anything else is an
   * {@link InvalidInputError}.
   *
   * @example
   * ```ts
   * import type { Envelope } from "@eventsalsa/eventsalsa/encryption";
   * declare const envelope: Envelope<unknown>;
   * const { ciphertext, keyVersion } = await envelope.encryptVersioned(null, "integration", "stripe", "sk_live_x");
   * ```
   */
  encryptVersioned(
    tx: Tx,
    scope: string,
    scopeId: string,
    plaintext: string | Uint8Array,
    options?: EncryptOptions,
  ): Promise<VersionedCiphertext> {
    try {
      const result = this.#encrypt(tx, scope, scopeId, plaintext, options);
      return result instanceof Promise ? result : Promise.resolve(result);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Validates, then encrypts from the cache (synchronously for short values) or via the store. */
  #encrypt(
    tx: Tx,
    scope: string,
    scopeId: string,
    plaintext: string | Uint8Array,
    options: EncryptOptions | undefined,
  ): VersionedCiphertext | Promise<VersionedCiphertext> {
    checkSubject(scope, scopeId);
    if (typeof plaintext !== "string" && !(plaintext instanceof Uint8Array)) {
      throw new InvalidInputError("plaintext must be a string or a Uint8Array");
    }
    const context = checkContext(options?.context);
    if (context !== undefined && this.writeFormat === "go") {
      throw new InvalidInputError("a context label cannot be bound in the Go format");
    }
    // Fast path: a cached key is used before anything can release it (sealing reads it at once).
    const hit = this.#cache?.getActive(scope, scopeId);
    if (hit !== undefined) {
      return this.#seal(hit.key, scope, scopeId, hit.keyVersion, plaintext, context);
    }
    // The key is fetched first: bytes are copied now (and the copy wiped), so the caller may
    // reuse its array as soon as this returns, as on the cached path.
    const input = typeof plaintext === "string" ? plaintext : plaintext.slice();
    const tracer = this.#tracer;
    const result = tracer === null
      ? this.#encryptSlow(tx, scope, scopeId, input, context)
      : fetchKeySpan(
        tracer,
        "encrypt",
        scope,
        scopeId,
        null,
        () => this.#encryptSlow(tx, scope, scopeId, input, context),
        (span, result) => span.setAttribute("eventsalsa.encryption.key_version", result.keyVersion),
      );
    return typeof input === "string" ? result : result.finally(() => input.fill(0));
  }

  async #encryptSlow(
    tx: Tx,
    scope: string,
    scopeId: string,
    plaintext: string | Uint8Array,
    context: string | undefined,
  ): Promise<VersionedCiphertext> {
    const lookup = await this.#store.getActiveKey(tx, scope, scopeId);
    if (lookup.status !== "found") throw lookupError(lookup, scope, scopeId, null);
    const stored = lookup.key;
    const key = new DataKey(unwrapDek(this.#keyring, stored));
    const cached = this.#remember(tx, stored, key, true);
    try {
      return await this.#seal(key, scope, scopeId, stored.keyVersion, plaintext, context);
    } finally {
      if (!cached) key.destroy();
    }
  }

  /** Offers `key` to the cache; true when the cache took it (and will destroy it itself). */
  #remember(tx: Tx, stored: StoredKey, key: DataKey, active: boolean): boolean {
    const cache = this.#cache;
    if (cache === null || !this.#store.readsCommitted(tx)) return false;
    return cache.put(stored.scope, stored.scopeId, stored.keyVersion, key, active);
  }

  #seal(
    key: DataKey,
    scope: string,
    scopeId: string,
    keyVersion: number,
    plaintext: string | Uint8Array,
    context: string | undefined,
  ): VersionedCiphertext | Promise<VersionedCiphertext> {
    let bytes: Uint8Array;
    if (typeof plaintext !== "string") {
      bytes = plaintext;
    } else if (plaintext.length * 3 <= SCRATCH.length) {
      // Encode into a reused buffer (wiped below): a fresh allocation per call costs more than
      // the rest of the bookkeeping together. Safe: `seal` reads its input before returning.
      bytes = SCRATCH.subarray(0, encoder.encodeInto(plaintext, SCRATCH).written);
    } else {
      bytes = utf8Encode(plaintext);
    }
    const nonce = randomBytes(NONCE_SIZE);
    const go = this.writeFormat === "go";
    const finish = (sealed: Uint8Array): VersionedCiphertext => {
      if (go) {
        const out = new Uint8Array(NONCE_SIZE + sealed.length);
        out.set(nonce, 0);
        out.set(sealed, NONCE_SIZE);
        return { ciphertext: encodeBase64Std(out), keyVersion, format: "go" };
      }
      return {
        ciphertext: formatEs2Detached(keyVersion, nonce, sealed),
        keyVersion,
        format: "es2",
      };
    };
    try {
      const aad = go ? undefined : es2AssociatedData(scope, scopeId, keyVersion, context);
      const sealed = key.seal(nonce, bytes, aad);
      return sealed instanceof Promise ? sealed.then(finish) : finish(sealed);
    } finally {
      if (bytes !== plaintext) zeroBytes(bytes);
    }
  }

  /**
   * Decrypts a value (either format) to a string. A plaintext that is not valid UTF-8 (possible in
   * Go-written data) is a {@link DecryptionError}: use {@link Envelope.decryptBytes} for such data.
   *
   * @example
   * ```ts
   * import type { Envelope } from "@eventsalsa/eventsalsa/encryption";
   * declare const envelope: Envelope<unknown>;
   * declare const stored: string;
   * const email = await envelope.decrypt(null, "user-pii", "u-1", stored, { context: "email" });
   * ```
   */
  decrypt(
    tx: Tx,
    scope: string,
    scopeId: string,
    ciphertext: string,
    options?: DecryptOptions,
  ): Promise<string> {
    const toText = (bytes: Uint8Array): string => {
      const text = utf8DecodeStrict(bytes);
      zeroBytes(bytes);
      if (text === null) {
        throw new DecryptionError("plaintext is not valid UTF-8 (use decryptBytes)", {
          scope,
          scopeId,
        });
      }
      return text;
    };
    try {
      const result = this.#decrypt(tx, scope, scopeId, ciphertext, options);
      return result instanceof Promise ? result.then(toText) : Promise.resolve(toText(result));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Decrypts a value (either format) to bytes, which belong to the caller.
   *
   * @example
   * ```ts
   * import type { Envelope } from "@eventsalsa/eventsalsa/encryption";
   * declare const envelope: Envelope<unknown>;
   * declare const stored: string;
   * const secret = await envelope.decryptBytes(null, "integration", "stripe", stored);
   * try {
   *   // ... use secret ...
   * } finally {
   *   secret.fill(0);
   * }
   * ```
   */
  decryptBytes(
    tx: Tx,
    scope: string,
    scopeId: string,
    ciphertext: string,
    options?: DecryptOptions,
  ): Promise<Uint8Array> {
    try {
      const result = this.#decrypt(tx, scope, scopeId, ciphertext, options);
      return result instanceof Promise ? result : Promise.resolve(result);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Validates and parses, then decrypts from the cache or via the store. */
  #decrypt(
    tx: Tx,
    scope: string,
    scopeId: string,
    ciphertext: string,
    options: DecryptOptions | undefined,
  ): Uint8Array | Promise<Uint8Array> {
    checkSubject(scope, scopeId);
    if (typeof ciphertext !== "string") {
      throw new InvalidInputError("ciphertext must be a string");
    }
    const context = checkContext(options?.context);
    const given = options?.keyVersion === undefined
      ? undefined
      : checkKeyVersion(options.keyVersion, "options.keyVersion");
    const parsed = parseCiphertext(ciphertext);
    if (typeof parsed === "string") {
      throw new DecryptionError(parsed, { scope, scopeId, keyVersion: given ?? null });
    }
    let keyVersion: number;
    if (parsed.format === "es2") {
      if (given !== undefined && given !== parsed.keyVersion) {
        throw new DecryptionError(
          `value is under key version ${parsed.keyVersion}, not ${given}`,
          { scope, scopeId, keyVersion: given },
        );
      }
      keyVersion = parsed.keyVersion;
    } else {
      if (given === undefined) {
        throw new InvalidInputError(
          "a Go-format value does not carry its key version: pass options.keyVersion",
        );
      }
      keyVersion = given;
    }
    const aad = parsed.format === "es2"
      ? es2AssociatedData(scope, scopeId, keyVersion, context)
      : undefined;
    // Fast path: a cached key is used before anything can release it (opening reads it at once).
    const cached = this.#cache?.get(scope, scopeId, keyVersion);
    if (cached !== undefined) {
      return this.#open(cached, parsed.sealed, aad, scope, scopeId, keyVersion);
    }
    // `sealed` may live in a scratch buffer: copy it before waiting for the store.
    const sealed = parsed.sealed.slice();
    const tracer = this.#tracer;
    if (tracer === null) return this.#decryptSlow(tx, scope, scopeId, keyVersion, sealed, aad);
    return fetchKeySpan(
      tracer,
      "decrypt",
      scope,
      scopeId,
      keyVersion,
      () => this.#decryptSlow(tx, scope, scopeId, keyVersion, sealed, aad),
    );
  }

  async #decryptSlow(
    tx: Tx,
    scope: string,
    scopeId: string,
    keyVersion: number,
    sealed: Uint8Array,
    aad: Uint8Array | undefined,
  ): Promise<Uint8Array> {
    const lookup = await this.#store.getKey(tx, scope, scopeId, keyVersion);
    if (lookup.status !== "found") throw lookupError(lookup, scope, scopeId, keyVersion);
    const key = new DataKey(unwrapDek(this.#keyring, lookup.key));
    const cached = this.#remember(tx, lookup.key, key, false);
    try {
      return await this.#open(key, sealed, aad, scope, scopeId, keyVersion);
    } finally {
      if (!cached) key.destroy();
    }
  }

  /** Opens `nonce ‖ ciphertext ‖ tag` (parsed, so at least 28 bytes) under `key`. */
  #open(
    key: DataKey,
    data: Uint8Array,
    aad: Uint8Array | undefined,
    scope: string,
    scopeId: string,
    keyVersion: number,
  ): Uint8Array | Promise<Uint8Array> {
    try {
      const opened = key.open(data.subarray(0, NONCE_SIZE), data.subarray(NONCE_SIZE), aad);
      if (!(opened instanceof Promise)) return opened;
      return opened.catch((error) => failedToOpen(error, scope, scopeId, keyVersion));
    } catch (error) {
      return failedToOpen(error, scope, scopeId, keyVersion);
    }
  }
}

/** Rethrows a failure to open a value as a {@link DecryptionError} naming the scope id. */
function failedToOpen(error: unknown, scope: string, scopeId: string, keyVersion: number): never {
  const reason = error instanceof DecryptionError ? error.reason : "authentication failed";
  throw new DecryptionError(
    reason === "authentication failed"
      ? "authentication failed (tampered, or bound to another scope id, version or context)"
      : reason,
    { scope, scopeId, keyVersion },
    { cause: error },
  );
}
