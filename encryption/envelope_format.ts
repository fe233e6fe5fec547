/**
 * The text formats of encrypted values and the associated data that binds them.
 *
 * - **es2** (written by default): `es2:<keyVersion>:<base64url(nonce ‖ ciphertext ‖ tag)>`, no
 *   padding. The `es2:` tag cannot occur in standard base64, so both formats are told apart
 *   without ambiguity. The associated data binds the format tag, scope, scope id, key version and
 *   an optional context label: a value copied to another subject, version or field fails to
 *   decrypt.
 * - **go** (the Go library's format, always readable, written only when configured): bare
 *   standard base64 of `nonce ‖ ciphertext ‖ tag`, no associated data, key version out of band.
 *
 * @module
 */
import { GCM_NONCE_SIZE, GCM_TAG_SIZE } from "./cipher.ts";
import { decodeBase64Std, decodeBase64Url, encodeBase64Url, utf8Encode } from "./encoding.ts";
import { MAX_KEY_VERSION } from "./validation.ts";

/** The prefix of every es2 value. */
export const ES2_PREFIX = "es2:";

/** Formats an envelope can be in. */
export type EnvelopeFormat = "es2" | "go";

/** A parsed value: its format, its key version when embedded, and the sealed bytes. */
export type ParsedCiphertext =
  | { readonly format: "es2"; readonly keyVersion: number; readonly sealed: Uint8Array }
  | { readonly format: "go"; readonly keyVersion: null; readonly sealed: Uint8Array };

const MIN_SEALED = GCM_NONCE_SIZE + GCM_TAG_SIZE;
const VERSION = /^[1-9][0-9]{0,9}$/;
const GO_CHARS = /^[A-Za-z0-9+/=\r\n]+$/;

/** Writes an es2 value. */
export function formatEs2(keyVersion: number, sealed: Uint8Array): string {
  return `${ES2_PREFIX}${keyVersion}:${encodeBase64Url(sealed)}`;
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
    const sealed = decodeBase64Url(text.slice(colon + 1));
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

const AAD_LABEL = utf8Encode("eventsalsa/encryption/es2");

/**
 * Associated data of an es2 value: a label, then length-prefixed scope, scope id and context, and
 * the key version, so no two distinct tuples encode alike.
 */
export function es2AssociatedData(
  scope: string,
  scopeId: string,
  keyVersion: number,
  context: string | undefined,
): Uint8Array {
  const s = utf8Encode(scope);
  const i = utf8Encode(scopeId);
  const c = context === undefined ? null : utf8Encode(context);
  const out = new Uint8Array(
    AAD_LABEL.length + 1 + 4 + s.length + 4 + i.length + 4 + 1 + (c === null ? 0 : 4 + c.length),
  );
  const view = new DataView(out.buffer);
  let o = 0;
  out.set(AAD_LABEL, o);
  o += AAD_LABEL.length;
  out[o++] = 0;
  view.setUint32(o, s.length);
  out.set(s, o + 4);
  o += 4 + s.length;
  view.setUint32(o, i.length);
  out.set(i, o + 4);
  o += 4 + i.length;
  view.setUint32(o, keyVersion);
  o += 4;
  if (c === null) {
    out[o] = 0;
  } else {
    out[o++] = 1;
    view.setUint32(o, c.length);
    out.set(c, o + 4);
  }
  return out;
}
