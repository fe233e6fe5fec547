/**
 * The text formats of encrypted values and the associated data that binds them.
 *
 * - **es2** (written by default): `es2:<keyVersion>:<base64url(nonce ‖ ciphertext ‖ tag)>`, no
 *   padding. The `es2:` tag cannot occur in standard base64, so both formats are told apart
 *   without ambiguity. The associated data binds the format tag, scope, scope id, key version and
 *   an optional context label: a value copied to another scope id, version or field fails to
 *   decrypt.
 * - **go** (the Go library's format, always readable, written only when configured): bare
 *   standard base64 of `nonce ‖ ciphertext ‖ tag`, no associated data, key version out of band.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { NONCE_SIZE, TAG_SIZE } from "./aes_gcm.ts";
import { decodeBase64Std, decodeBase64Url, encodeBase64Url, utf8Encode } from "./encoding.ts";
import { MAX_KEY_VERSION } from "./validation.ts";

/** The prefix of every es2 value. */
export const ES2_PREFIX = "es2:";

/**
 * Formats an envelope can be in.
 *
 * @example
 * ```ts
 * import type { EnvelopeFormat } from "@eventsalsa/eventsalsa/encryption";
 * const writeFormat: EnvelopeFormat = "go"; // only while Go services must still read new values
 * ```
 */
export type EnvelopeFormat = "es2" | "go";

/**
 * A parsed value: its format, its key version when embedded, and the sealed bytes. Those may be a
 * view of a scratch buffer that the next parse overwrites: use them synchronously, or copy them.
 */
export type ParsedCiphertext =
  | { readonly format: "es2"; readonly keyVersion: number; readonly sealed: Uint8Array }
  | { readonly format: "go"; readonly keyVersion: null; readonly sealed: Uint8Array };

const MIN_SEALED = NONCE_SIZE + TAG_SIZE;
/** Decoding space for values up to 8 KiB: ciphertext is not secret, so it is not wiped. */
const SCRATCH = new Uint8Array(8 * 1024);
const VERSION = /^[1-9][0-9]{0,9}$/;
const GO_CHARS = /^[A-Za-z0-9+/=\r\n]+$/;

/** Writes an es2 value from `nonce ‖ ciphertext ‖ tag`. */
export function formatEs2(keyVersion: number, sealed: Uint8Array): string {
  return `${ES2_PREFIX}${keyVersion}:${encodeBase64Url(sealed)}`;
}

/**
 * Writes an es2 value from a 12-byte nonce and `ciphertext ‖ tag` kept apart: 12 bytes are exactly
 * 16 base64 characters, so the text equals that of the concatenation.
 */
export function formatEs2Detached(
  keyVersion: number,
  nonce: Uint8Array,
  sealed: Uint8Array,
): string {
  return `${ES2_PREFIX}${keyVersion}:${encodeBase64Url(nonce)}${encodeBase64Url(sealed)}`;
}

/**
 * Parses a value in either format. Returns a reason string instead of throwing when the text is
 * not a well-formed value (wrong characters, bad base64, too short to hold nonce and tag).
 */
export function parseCiphertext(text: string): ParsedCiphertext | string {
  if (text.startsWith(ES2_PREFIX)) {
    const colon = text.indexOf(":", ES2_PREFIX.length);
    if (colon < 0) return "malformed es2 value (no key version separator)";
    const versionText = text.slice(ES2_PREFIX.length, colon);
    if (!VERSION.test(versionText) || Number(versionText) > MAX_KEY_VERSION) {
      return "malformed es2 value (bad key version)";
    }
    const sealed = decodeBase64Url(text.slice(colon + 1), SCRATCH);
    if (sealed === null) return "malformed es2 value (not base64url)";
    if (sealed.length < MIN_SEALED) return "ciphertext too short";
    return { format: "es2", keyVersion: Number(versionText), sealed };
  }
  if (!GO_CHARS.test(text)) return "not an es2 value and not standard base64";
  const sealed = decodeBase64Std(text);
  if (sealed === null) return "not valid standard base64";
  if (sealed.length < MIN_SEALED) return "ciphertext too short";
  return { format: "go", keyVersion: null, sealed };
}

/**
 * The key version embedded in an es2 value, or `null` for a Go-format value (whose version travels
 * out of band) or text that is not a well-formed value.
 *
 * @example
 * ```ts
 * import { keyVersionOf } from "@eventsalsa/eventsalsa/encryption";
 * console.log(keyVersionOf("es2:3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")); // 3
 * ```
 */
export function keyVersionOf(ciphertext: string): number | null {
  if (typeof ciphertext !== "string") return null;
  const parsed = parseCiphertext(ciphertext);
  return typeof parsed === "string" ? null : parsed.keyVersion;
}

const AAD_LABEL = utf8Encode("es2");

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

const AAD_CACHE_LIMIT = 4096;
const aadCache = new Map<string, Uint8Array>();
const aadContextCache = new Map<string, Uint8Array>();

/**
 * Associated data of an es2 value: the first 16 bytes of SHA-256 over a canonical encoding of the
 * binding (the format tag and a NUL, then length-prefixed (u32, big endian) scope, scope id, key
 * version, and a presence byte plus length-prefixed context, so no two distinct tuples encode
 * alike). Moving a value to another scope id needs a second preimage of that digest (2^128 work).
 * The result is memoised (it is derived from public labels only) and must not be modified.
 */
export function es2AssociatedData(
  scope: string,
  scopeId: string,
  keyVersion: number,
  context: string | undefined,
): Uint8Array {
  // Scopes and scope ids never contain NUL and the version is digits, so the key is unambiguous;
  // the context, which may contain anything, comes last and uses a map of its own.
  const cache = context === undefined ? aadCache : aadContextCache;
  const cacheKey = context === undefined
    ? scope + "\u0000" + scopeId + "\u0000" + keyVersion
    : scope + "\u0000" + scopeId + "\u0000" + keyVersion + "\u0000" + context;
  let aad = cache.get(cacheKey);
  if (aad === undefined) {
    // 16 bytes: one GHASH block per value, whatever the length of the labels.
    aad = sha256(buildAssociatedData(scope, scopeId, keyVersion, context)).subarray(0, 16);
    if (cache.size >= AAD_CACHE_LIMIT) cache.clear();
    cache.set(cacheKey, aad);
  }
  return aad;
}

/** The canonical encoding that {@link es2AssociatedData} digests. */
export function buildAssociatedData(
  scope: string,
  scopeId: string,
  keyVersion: number,
  context: string | undefined,
): Uint8Array {
  const parts = [scope, scopeId, context ?? ""].map((text) =>
    isAscii(text) ? text : utf8Encode(text)
  );
  const size = (part: string | Uint8Array) => part.length;
  const out = new Uint8Array(
    AAD_LABEL.length + 1 + 4 + size(parts[0]) + 4 + size(parts[1]) + 4 + 1 +
      (context === undefined ? 0 : 4 + size(parts[2])),
  );
  let o = 0;
  const u32 = (n: number) => {
    out[o++] = n >>> 24;
    out[o++] = (n >>> 16) & 255;
    out[o++] = (n >>> 8) & 255;
    out[o++] = n & 255;
  };
  const put = (part: string | Uint8Array) => {
    u32(part.length);
    if (typeof part === "string") {
      for (let i = 0; i < part.length; i++) out[o++] = part.charCodeAt(i);
    } else {
      out.set(part, o);
      o += part.length;
    }
  };
  out.set(AAD_LABEL, o);
  o += AAD_LABEL.length + 1; // the NUL separator is already 0
  put(parts[0]);
  put(parts[1]);
  u32(keyVersion);
  if (context === undefined) {
    out[o] = 0;
  } else {
    out[o++] = 1;
    put(parts[2]);
  }
  return out;
}
