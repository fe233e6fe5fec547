/**
 * Blind indexes: keyed hashes (HMAC-SHA-256) of values, for equality lookups and uniqueness checks
 * over data that is stored encrypted (e.g. an `email_hash` column). They use their own keys, never
 * the system keys, with:
 *
 * - a minimum key length of 32 bytes;
 * - domain separation per index name (the same email hashed for `email` and for `login` gives
 *   unrelated hashes, so columns cannot be linked);
 * - key versioning (each hash names its key id, so the HMAC key can rotate);
 * - opt-in normalizers (trim, lower-case, NFC), never applied implicitly.
 *
 * Hashes are pseudonymous personal data: they survive crypto-shredding and can be brute-forced by
 * anyone holding the HMAC key. See docs/encryption.md.
 *
 * @module
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { constantTimeEqualText, decodeBase64Std, toHex, utf8Encode } from "./encoding.ts";
import { InvalidInputError, InvalidKeySizeError, KeyringError } from "./errors.ts";

/**
 * The shortest accepted blind-index key, in bytes.
 *
 * @example
 * ```ts
 * import { MIN_BLIND_INDEX_KEY_SIZE } from "@eventsalsa/eventsalsa/encryption";
 * const indexKey = crypto.getRandomValues(new Uint8Array(MIN_BLIND_INDEX_KEY_SIZE));
 * ```
 */
export const MIN_BLIND_INDEX_KEY_SIZE = 32;

const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const DOMAIN = utf8Encode("eventsalsa/blind-index/v1");

/**
 * A string transformation applied before hashing.
 *
 * @example
 * ```ts
 * import type { Normalizer } from "@eventsalsa/eventsalsa/encryption";
 * const digitsOnly: Normalizer = (value) => value.replace(/\D/g, "");
 * ```
 */
export type Normalizer = (value: string) => string;

/**
 * The built-in normalizers. Order matters; `[nfc, trim, lowerCase]` suits email addresses.
 *
 * @example
 * ```ts
 * import { normalizers } from "@eventsalsa/eventsalsa/encryption";
 * const { nfc, trim, lowerCase } = normalizers;
 * console.log(lowerCase(trim(nfc("  Ali\u0063\u0327e@Example.COM ")))); // "aliçe@example.com"
 * ```
 */
export const normalizers: {
  readonly trim: Normalizer;
  readonly lowerCase: Normalizer;
  readonly nfc: Normalizer;
} = Object.freeze({
  /** Removes leading and trailing white space. */
  trim: (value: string): string => value.trim(),
  /** Lower-cases with the locale-independent Unicode mapping. */
  lowerCase: (value: string): string => value.toLowerCase(),
  /** Unicode canonical composition (NFC), so "ç" typed two ways hashes alike. */
  nfc: (value: string): string => value.normalize("NFC"),
});

/**
 * Options of {@link BlindIndex}.
 *
 * @example
 * ```ts
 * import { type BlindIndexOptions, normalizers } from "@eventsalsa/eventsalsa/encryption";
 * const options: BlindIndexOptions = {
 *   keys: { "bi-2025": crypto.getRandomValues(new Uint8Array(32)) },
 *   activeKeyId: "bi-2025",
 *   normalize: { email: [normalizers.nfc, normalizers.trim, normalizers.lowerCase] },
 * };
 * ```
 */
export interface BlindIndexOptions {
  /**
   * Key id → key (bytes, or standard base64 text), each at least 32 bytes. Ids use letters,
   * digits, `_`, `.` and `-` (up to 64). Keep retired keys here while stored hashes still use them.
   */
  keys: Record<string, Uint8Array | string> | Map<string, Uint8Array | string>;
  /** The key that new hashes use. */
  activeKeyId: string;
  /** Normalizers per index name, applied in order before hashing; none when omitted. */
  normalize?: Record<string, readonly Normalizer[]>;
}

type Mac = ReturnType<typeof hmac.create>;

const encoder = new TextEncoder();
/** Scratch space for the UTF-8 of values up to 1,024 characters; wiped after each use. */
const SCRATCH = new Uint8Array(3 * 1024);

/** Lower-case hex of HMAC(keyed state, UTF-8 of `text`), from a clone of the keyed state. */
function macHex(keyed: Mac, text: string): string {
  const bytes = text.length * 3 <= SCRATCH.length
    ? SCRATCH.subarray(0, encoder.encodeInto(text, SCRATCH).written)
    : utf8Encode(text);
  try {
    return toHex(keyed.clone().update(bytes).digest());
  } finally {
    bytes.fill(0);
  }
}

function checkIndexName(index: unknown): string {
  if (typeof index !== "string" || index.length === 0 || index.length > 128) {
    throw new InvalidInputError("index name must be a non-empty string of at most 128 characters");
  }
  if (index.includes("\u0000")) throw new InvalidInputError("index name must not contain NUL");
  return index;
}

function checkValue(value: unknown): string {
  if (typeof value !== "string") throw new InvalidInputError("value to hash must be a string");
  return value;
}

function keyBytes(id: string, material: unknown): Uint8Array {
  let bytes: Uint8Array | null;
  if (typeof material === "string") {
    bytes = decodeBase64Std(material.trim());
    if (bytes === null) {
      throw new KeyringError(`blind-index key ${JSON.stringify(id)} is not standard base64`, id);
    }
  } else if (material instanceof Uint8Array) {
    bytes = material.slice();
  } else {
    throw new KeyringError(
      `blind-index key ${JSON.stringify(id)} must be a Uint8Array or base64 text`,
      id,
    );
  }
  if (bytes.length < MIN_BLIND_INDEX_KEY_SIZE) {
    const size = bytes.length;
    bytes.fill(0);
    throw new InvalidKeySizeError(`blind-index key ${JSON.stringify(id)}`, size, "at least 32");
  }
  return bytes;
}

/**
 * Computes blind-index hashes: `"<keyId>:<64 hex digits>"`, where the digits are
 * `HMAC-SHA-256(indexKey, UTF-8(normalized value))` and
 * `indexKey = HMAC-SHA-256(key, "eventsalsa/blind-index/v1" ‖ 0x00 ‖ UTF-8(index name))`.
 *
 * To rotate the key: add the new key and make it active; look rows up with
 * {@link BlindIndex.candidates} (one hash per key) while old hashes remain; re-hash rows whose
 * {@link BlindIndex.needsRehash} is true (you need the plaintext for that); then drop the old key.
 *
 * @example
 * ```ts
 * import { BlindIndex, normalizers } from "@eventsalsa/eventsalsa/encryption";
 * const index = new BlindIndex({
 *   keys: { bi1: crypto.getRandomValues(new Uint8Array(32)) },
 *   activeKeyId: "bi1",
 *   normalize: { email: [normalizers.trim, normalizers.lowerCase] },
 * });
 * const stored = index.hash("email", " Alice@Example.com");
 * console.log(index.matches("email", "alice@example.com", stored)); // true
 * ```
 */
export class BlindIndex {
  /** The id of the key new hashes use. */
  readonly activeKeyId: string;
  /** Every key id, active first. */
  readonly keyIds: readonly string[];
  readonly #keys: Map<string, Uint8Array>;
  readonly #normalize: Map<string, readonly Normalizer[]>;
  /** Keyed HMAC states per (key id, index): cloning one skips re-hashing the key pads. */
  readonly #indexMacs = new Map<string, Mac>();

  /** Validates the keys (typed errors, at construction) and copies them. */
  constructor(options: BlindIndexOptions) {
    if (options === null || typeof options !== "object") {
      throw new InvalidInputError("blind index options are required");
    }
    const entries = options.keys instanceof Map
      ? [...options.keys.entries()]
      : Object.entries(options.keys ?? {});
    if (entries.length === 0) throw new KeyringError("a blind index needs at least one key");
    const keys = new Map<string, Uint8Array>();
    try {
      for (const [id, material] of entries) {
        if (typeof id !== "string" || !KEY_ID.test(id)) {
          throw new KeyringError(
            `blind-index key id ${JSON.stringify(id)} is invalid: use 1 to 64 letters, digits, ` +
              `"_", "." or "-"`,
            typeof id === "string" ? id : null,
          );
        }
        keys.set(id, keyBytes(id, material));
      }
      if (typeof options.activeKeyId !== "string" || !keys.has(options.activeKeyId)) {
        throw new KeyringError(
          `active blind-index key id ${JSON.stringify(options.activeKeyId)} is not among the keys`,
          typeof options.activeKeyId === "string" ? options.activeKeyId : null,
        );
      }
    } catch (error) {
      for (const key of keys.values()) key.fill(0);
      throw error;
    }
    const normalize = new Map<string, readonly Normalizer[]>();
    for (const [index, steps] of Object.entries(options.normalize ?? {})) {
      checkIndexName(index);
      if (!Array.isArray(steps) || steps.some((step) => typeof step !== "function")) {
        throw new InvalidInputError(
          `normalizers of index ${JSON.stringify(index)} must be functions`,
        );
      }
      normalize.set(index, Object.freeze([...steps]));
    }
    this.#keys = keys;
    this.#normalize = normalize;
    this.activeKeyId = options.activeKeyId;
    this.keyIds = Object.freeze([
      options.activeKeyId,
      ...[...keys.keys()].filter((id) => id !== options.activeKeyId),
    ]);
  }

  #indexMac(keyId: string, index: string): Mac {
    const cacheKey = `${keyId}\u0000${index}`;
    let mac = this.#indexMacs.get(cacheKey);
    if (mac === undefined) {
      const name = utf8Encode(index);
      const label = new Uint8Array(DOMAIN.length + 1 + name.length);
      label.set(DOMAIN, 0);
      label.set(name, DOMAIN.length + 1);
      const indexKey = hmac(sha256, this.#keys.get(keyId)!, label);
      mac = hmac.create(sha256, indexKey);
      indexKey.fill(0);
      this.#indexMacs.set(cacheKey, mac);
    }
    return mac;
  }

  #digest(keyId: string, index: string, value: string): string {
    let text = value;
    for (const step of this.#normalize.get(index) ?? []) text = step(text);
    return `${keyId}:${macHex(this.#indexMac(keyId, index), text)}`;
  }

  /**
   * The hash of `value` for index `index`, under the active key.
   *
   * @example
   * ```ts
   * import type { BlindIndex } from "@eventsalsa/eventsalsa/encryption";
   * declare const index: BlindIndex;
   * const emailHash = index.hash("email", "alice@example.com");
   * ```
   */
  hash(index: string, value: string): string {
    return this.#digest(this.activeKeyId, checkIndexName(index), checkValue(value));
  }

  /**
   * The hashes of `value` under every key, active first: look rows up with
   * `WHERE email_hash = ANY($1)` while a key rotation is under way.
   *
   * @example
   * ```ts
   * import type { BlindIndex } from "@eventsalsa/eventsalsa/encryption";
   * declare const index: BlindIndex;
   * const hashes = index.candidates("email", "alice@example.com");
   * ```
   */
  candidates(index: string, value: string): string[] {
    checkIndexName(index);
    checkValue(value);
    return this.keyIds.map((keyId) => this.#digest(keyId, index, value));
  }

  /**
   * Whether `stored` is the hash of `value` for `index` under the key it names. Compares in
   * constant time. False for a hash under a key this index no longer holds.
   *
   * @example
   * ```ts
   * import type { BlindIndex } from "@eventsalsa/eventsalsa/encryption";
   * declare const index: BlindIndex;
   * declare const stored: string;
   * if (index.matches("email", "alice@example.com", stored)) console.log("same email");
   * ```
   */
  matches(index: string, value: string, stored: string): boolean {
    checkIndexName(index);
    checkValue(value);
    const keyId = this.keyIdOf(stored);
    if (keyId === null || !this.#keys.has(keyId)) return false;
    return constantTimeEqualText(this.#digest(keyId, index, value), stored);
  }

  /**
   * The key id a stored hash names, or `null` when it is not a blind-index hash.
   *
   * @example
   * ```ts
   * import type { BlindIndex } from "@eventsalsa/eventsalsa/encryption";
   * declare const index: BlindIndex;
   * console.log(index.keyIdOf("bi1:" + "0".repeat(64))); // "bi1"
   * ```
   */
  keyIdOf(stored: string): string | null {
    if (typeof stored !== "string") return null;
    const colon = stored.lastIndexOf(":");
    if (colon < 1 || stored.length - colon - 1 !== 64) return null;
    const keyId = stored.slice(0, colon);
    return KEY_ID.test(keyId) && /^[0-9a-f]{64}$/.test(stored.slice(colon + 1)) ? keyId : null;
  }

  /**
   * Whether a stored hash was made with a key other than the active one.
   *
   * @example
   * ```ts
   * import type { BlindIndex } from "@eventsalsa/eventsalsa/encryption";
   * declare const index: BlindIndex;
   * declare const stored: string;
   * if (index.needsRehash(stored)) console.log("re-hash this row");
   * ```
   */
  needsRehash(stored: string): boolean {
    return this.keyIdOf(stored) !== this.activeKeyId;
  }
}

/**
 * The Go library's hasher, for reading and writing hash columns that Go services share:
 * lower-case hex of `HMAC-SHA-256(key, UTF-8(value))`, 64 characters, with no domain separation,
 * no key id and no normalization. It accepts keys shorter than 32 bytes only because existing Go
 * deployments may use them; new indexes should use {@link BlindIndex}.
 *
 * @example
 * ```ts
 * import { GoCompatibleHasher } from "@eventsalsa/eventsalsa/encryption";
 * const hasher = new GoCompatibleHasher(new TextEncoder().encode("test-key"));
 * console.log(hasher.hash("hello")); // 3dae003f1cd85bdd35ea02a5ce2e492b9ba862592532f0ca31d398da8d2133fa
 * ```
 */
export class GoCompatibleHasher {
  readonly #mac: Mac;

  /** Copies a non-empty key. */
  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length === 0) {
      throw new InvalidKeySizeError(
        "HMAC key",
        key instanceof Uint8Array ? key.length : 0,
        "at least 1",
      );
    }
    this.#mac = hmac.create(sha256, key);
  }

  /**
   * The hash of a value, as Go's `HMACHasher.Hash` computes it.
   *
   * @example
   * ```ts
   * import { GoCompatibleHasher } from "@eventsalsa/eventsalsa/encryption";
   * declare const hasher: GoCompatibleHasher;
   * const emailHash = hasher.hash("alice@example.com");
   * ```
   */
  hash(value: string): string {
    return macHex(this.#mac, checkValue(value));
  }
}
