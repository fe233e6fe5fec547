/**
 * The keyring of system keys (key-encryption keys, KEKs): 32-byte AES keys, each with an id, one of
 * them active. New data keys are wrapped under the active one; every key row records which KEK
 * wrapped it, so older KEKs stay in the ring until a rewrap has moved every row off them.
 *
 * Loaders read keys from memory, files or environment variables, always as standard base64 of
 * exactly 32 bytes (`openssl rand -base64 32`). Every mistake is reported at construction with a
 * typed error; a built keyring never fails for configuration reasons later.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import process from "node:process";
import { decodeBase64Std } from "./encoding.ts";
import { InvalidKeySizeError, KeyringError, SystemKeyNotFoundError } from "./errors.ts";

/**
 * Length of every system key: AES-256.
 *
 * @example
 * ```ts
 * import { SYSTEM_KEY_SIZE } from "@eventsalsa/eventsalsa/encryption";
 * const systemKey = crypto.getRandomValues(new Uint8Array(SYSTEM_KEY_SIZE)); // base64 it into a file
 * ```
 */
export const SYSTEM_KEY_SIZE = 32;

const KEY_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * A set of system keys with one active key. Accessors return copies: zero them when done, and
 * nothing you do to them changes the keyring.
 *
 * @example
 * ```ts
 * import { keyringFromMap, type Keyring } from "@eventsalsa/eventsalsa/encryption";
 * const keyring: Keyring = keyringFromMap({ "kek-1": crypto.getRandomValues(new Uint8Array(32)) }, "kek-1");
 * const { keyId, key } = keyring.activeKey();
 * try {
 *   console.log(keyId, key.length); // kek-1 32
 * } finally {
 *   key.fill(0);
 * }
 * ```
 */
export interface Keyring {
  /** The id of the key that wraps new data keys. */
  readonly activeKeyId: string;
  /** Every key id, in the order given. */
  readonly keyIds: readonly string[];
  /** Whether the keyring holds `keyId`. */
  has(keyId: string): boolean;
  /** A copy of the key `keyId`; throws {@link SystemKeyNotFoundError} when absent. */
  key(keyId: string): Uint8Array;
  /** The active key's id and a copy of its bytes. */
  activeKey(): { keyId: string; key: Uint8Array };
}

/**
 * Key material for {@link keyringFromMap}: raw bytes, or standard base64 text (surrounding
 * whitespace is ignored, as in a key file).
 *
 * @example
 * ```ts
 * import type { SystemKeyMaterial } from "@eventsalsa/eventsalsa/encryption";
 * const fromText: SystemKeyMaterial = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
 * const fromBytes: SystemKeyMaterial = crypto.getRandomValues(new Uint8Array(32));
 * ```
 */
export type SystemKeyMaterial = Uint8Array | string;

class SystemKeyring implements Keyring {
  readonly activeKeyId: string;
  readonly keyIds: readonly string[];
  readonly #keys: Map<string, Uint8Array>;

  constructor(keys: Map<string, Uint8Array>, activeKeyId: string) {
    this.#keys = keys;
    this.activeKeyId = activeKeyId;
    this.keyIds = Object.freeze([...keys.keys()]);
  }

  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  key(keyId: string): Uint8Array {
    const key = this.#keys.get(keyId);
    if (key === undefined) throw new SystemKeyNotFoundError(String(keyId));
    return key.slice();
  }

  activeKey(): { keyId: string; key: Uint8Array } {
    return { keyId: this.activeKeyId, key: this.key(this.activeKeyId) };
  }

  toJSON(): { activeKeyId: string; keyIds: readonly string[] } {
    return { activeKeyId: this.activeKeyId, keyIds: this.keyIds };
  }
}

function checkKeyId(keyId: unknown): string {
  if (typeof keyId !== "string" || !KEY_ID.test(keyId)) {
    throw new KeyringError(
      `system key id ${
        JSON.stringify(keyId)
      } is invalid: use 1 to 128 printable ASCII characters ` +
        `without spaces`,
      typeof keyId === "string" ? keyId : null,
    );
  }
  return keyId;
}

function decodeKey(keyId: string, material: unknown, source: string): Uint8Array {
  let bytes: Uint8Array;
  if (typeof material === "string") {
    const decoded = decodeBase64Std(material.trim());
    if (decoded === null) {
      throw new KeyringError(
        `system key ${JSON.stringify(keyId)} from ${source} is not standard base64 ` +
          `(generate one with: openssl rand -base64 32)`,
        keyId,
      );
    }
    bytes = decoded;
  } else if (material instanceof Uint8Array) {
    bytes = material.slice();
  } else {
    throw new KeyringError(
      `system key ${JSON.stringify(keyId)} from ${source} must be a Uint8Array or base64 text`,
      keyId,
    );
  }
  if (bytes.length !== SYSTEM_KEY_SIZE) {
    const size = bytes.length;
    bytes.fill(0);
    throw new InvalidKeySizeError(`system key ${JSON.stringify(keyId)}`, size, "exactly 32");
  }
  return bytes;
}

function build(entries: [string, Uint8Array][], activeKeyId: unknown): Keyring {
  if (entries.length === 0) {
    throw new KeyringError("a keyring needs at least one system key");
  }
  const keys = new Map(entries);
  if (typeof activeKeyId !== "string" || !keys.has(activeKeyId)) {
    for (const key of keys.values()) key.fill(0);
    throw new KeyringError(
      `active system key id ${JSON.stringify(activeKeyId)} is not among the keys ` +
        `(${[...keys.keys()].map((k) => JSON.stringify(k)).join(", ")})`,
      typeof activeKeyId === "string" ? activeKeyId : null,
    );
  }
  return new SystemKeyring(keys, activeKeyId);
}

function collect(
  ids: string[],
  read: (keyId: string) => Uint8Array,
): [string, Uint8Array][] {
  const entries: [string, Uint8Array][] = [];
  try {
    for (const id of ids) entries.push([checkKeyId(id), read(id)]);
  } catch (error) {
    for (const [, key] of entries) key.fill(0);
    throw error;
  }
  return entries;
}

function entriesOf<T>(record: Record<string, T> | Map<string, T>, what: string): [string, T][] {
  if (record instanceof Map) return [...record.entries()];
  if (record === null || typeof record !== "object") {
    throw new KeyringError(`${what} must be an object mapping key ids to values`);
  }
  return Object.entries(record);
}

/**
 * Builds a keyring from keys in memory: bytes or standard base64 text, each exactly 32 bytes. The
 * bytes are copied, so the caller may zero its own arrays afterwards.
 *
 * Throws {@link KeyringError} (no keys, bad id, bad base64, active id missing) or
 * {@link InvalidKeySizeError} (a key that is not 32 bytes).
 *
 * @example
 * ```ts
 * import { keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * const keyring = keyringFromMap({
 *   "kek-2024": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
 *   "kek-2025": crypto.getRandomValues(new Uint8Array(32)),
 * }, "kek-2025");
 * console.log(keyring.keyIds); // ["kek-2024", "kek-2025"]
 * ```
 */
export function keyringFromMap(
  keys: Record<string, SystemKeyMaterial> | Map<string, SystemKeyMaterial>,
  activeKeyId: string,
): Keyring {
  const entries = entriesOf(keys, "keys");
  const map = new Map(entries);
  return build(
    collect(entries.map(([id]) => id), (id) => decodeKey(id, map.get(id), "memory")),
    activeKeyId,
  );
}

/**
 * Where {@link keyringFromFiles} finds each key.
 *
 * @example
 * ```ts
 * import type { FileKeyringOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: FileKeyringOptions = {
 *   keyPaths: { "kek-2025": "/run/secrets/kek-2025" },
 *   activeKeyId: "kek-2025",
 * };
 * ```
 */
export interface FileKeyringOptions {
  /** Key id → path of a file holding the key as standard base64 (a trailing newline is fine). */
  keyPaths: Record<string, string> | Map<string, string>;
  /** The id of the key that wraps new data keys. */
  activeKeyId: string;
}

/**
 * Builds a keyring from key files, one standard-base64 key per file (as written by
 * `openssl rand -base64 32 > kek.b64`). Leading and trailing whitespace is ignored. Files are read
 * in the order given and the first problem is reported: {@link KeyringError} for an unreadable
 * file, bad base64 or a missing active id, {@link InvalidKeySizeError} for a key that is not 32
 * bytes. Uses `node:fs`, so it works on Deno and Bun (tested) and should on Node (untested).
 *
 * @example
 * ```ts
 * import { keyringFromFiles } from "@eventsalsa/eventsalsa/encryption";
 * const keyring = await keyringFromFiles({
 *   keyPaths: { "kek-2025": "/run/secrets/kek-2025" },
 *   activeKeyId: "kek-2025",
 * });
 * ```
 */
export async function keyringFromFiles(options: FileKeyringOptions): Promise<Keyring> {
  const entries = entriesOf(options?.keyPaths, "keyPaths");
  const texts = new Map<string, string>();
  for (const [id, path] of entries) {
    checkKeyId(id);
    if (typeof path !== "string" || path.length === 0) {
      throw new KeyringError(
        `path of system key ${JSON.stringify(id)} must be a non-empty string`,
        id,
      );
    }
    try {
      texts.set(id, await readFile(path, "utf8"));
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new KeyringError(
        `reading system key ${JSON.stringify(id)} from ${path} failed${code ? ` (${code})` : ""}`,
        id,
        { cause: error },
      );
    }
  }
  return build(
    collect(entries.map(([id]) => id), (id) => decodeKey(id, texts.get(id), "its file")),
    options.activeKeyId,
  );
}

/**
 * Which environment variable holds each key, for {@link keyringFromEnv}.
 *
 * @example
 * ```ts
 * import type { EnvKeyringOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: EnvKeyringOptions = {
 *   variables: { "kek-2025": "EVENTSALSA_KEK_2025" },
 *   activeKeyId: "kek-2025",
 * };
 * ```
 */
export interface EnvKeyringOptions {
  /** Key id → name of the environment variable holding the key as standard base64. */
  variables: Record<string, string> | Map<string, string>;
  /** The id of the key that wraps new data keys. */
  activeKeyId: string;
  /**
   * Where to read variables; the process environment (`node:process`: Deno with `--allow-env` and
   * Bun are tested, Node is not) when omitted.
   */
  env?: Record<string, string | undefined>;
}

/**
 * Builds a keyring from environment variables holding standard-base64 keys. An unset or empty
 * variable is a {@link KeyringError}; other rules as in {@link keyringFromFiles}. The variables are
 * not removed from the environment: child processes inherit them unless you delete them.
 *
 * @example
 * ```ts
 * import { keyringFromEnv } from "@eventsalsa/eventsalsa/encryption";
 * const keyring = keyringFromEnv({
 *   variables: { "kek-2025": "EVENTSALSA_KEK_2025" },
 *   activeKeyId: "kek-2025",
 *   env: { EVENTSALSA_KEK_2025: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
 * });
 * ```
 */
export function keyringFromEnv(options: EnvKeyringOptions): Keyring {
  const entries = entriesOf(options?.variables, "variables");
  const env = options.env ?? process.env;
  const names = new Map(entries);
  return build(
    collect(entries.map(([id]) => id), (id) => {
      const name = names.get(id);
      if (typeof name !== "string" || name.length === 0) {
        throw new KeyringError(
          `environment variable name of system key ${
            JSON.stringify(id)
          } must be a non-empty string`,
          id,
        );
      }
      const value = env[name];
      if (value === undefined || value.trim() === "") {
        throw new KeyringError(
          `environment variable ${name} (system key ${JSON.stringify(id)}) is not set`,
          id,
        );
      }
      return decodeKey(id, value, `environment variable ${name}`);
    }),
    options.activeKeyId,
  );
}
