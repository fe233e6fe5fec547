/**
 * Byte helpers for the encryption component: base64 in the two alphabets it uses (standard with
 * Go's decoding rules, and unpadded base64url), strict UTF-8, hex, constant-time comparison and
 * zeroing. Hand-written because the platform decoders (`atob`, `Buffer`) accept inputs Go rejects.
 *
 * @module
 */

const STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function decodeTable(alphabet: string): Int16Array {
  const table = new Int16Array(128).fill(-1);
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
}

const STD_DECODE = decodeTable(STD);
const URL_DECODE = decodeTable(URL);
const STD_PAIRS: string[] = [];
const URL_PAIRS: string[] = [];
for (let i = 0; i < 4096; i++) {
  STD_PAIRS.push(STD[i >> 6] + STD[i & 63]);
  URL_PAIRS.push(URL[i >> 6] + URL[i & 63]);
}

function encode(bytes: Uint8Array, alphabet: string, pairs: string[], pad: boolean): string {
  let out = "";
  const full = bytes.length - (bytes.length % 3);
  for (let i = 0; i < full; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += pairs[n >> 12] + pairs[n & 4095];
  }
  const rest = bytes.length - full;
  if (rest === 1) {
    const n = bytes[full] << 16;
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + (pad ? "==" : "");
  } else if (rest === 2) {
    const n = (bytes[full] << 16) | (bytes[full + 1] << 8);
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] +
      (pad ? "=" : "");
  }
  return out;
}

type NativeBase64 = (options?: { alphabet?: string; omitPadding?: boolean }) => string;
// The platform encoder (`Uint8Array.prototype.toBase64`, TC39 stage 4) where it exists: same
// output, several times faster. Decoding stays hand-written for Go's exact acceptance rules.
const nativeToBase64 = (Uint8Array.prototype as { toBase64?: NativeBase64 }).toBase64;

/** Standard base64 (RFC 4648 §4) with `=` padding, as Go's `base64.StdEncoding` writes it. */
export function encodeBase64Std(bytes: Uint8Array): string {
  if (nativeToBase64 !== undefined) return nativeToBase64.call(bytes);
  return encode(bytes, STD, STD_PAIRS, true);
}

/** Unpadded base64url (RFC 4648 §5). */
export function encodeBase64Url(bytes: Uint8Array): string {
  if (nativeToBase64 !== undefined) {
    return nativeToBase64.call(bytes, { alphabet: "base64url", omitPadding: true });
  }
  return encode(bytes, URL, URL_PAIRS, false);
}

/** The portable encoders, for tests that compare them with the platform's. */
export const portableBase64 = {
  std: (bytes: Uint8Array): string => encode(bytes, STD, STD_PAIRS, true),
  url: (bytes: Uint8Array): string => encode(bytes, URL, URL_PAIRS, false),
};

/** Decoded size of `length` base64 characters (no padding), or -1 when impossible. */
function decodedSize(length: number): number {
  const rest = length % 4;
  return rest === 1 ? -1 : Math.floor(length / 4) * 3 + (rest === 0 ? 0 : rest - 1);
}

function decodeQuads(
  text: string,
  table: Int16Array,
  length: number,
  into?: Uint8Array,
): Uint8Array | null {
  // `text` holds only alphabet characters; `length` is its usable length (no padding).
  const rest = length % 4;
  const size = decodedSize(length);
  if (size < 0) return null;
  const out = into === undefined || into.length < size
    ? new Uint8Array(size)
    : into.subarray(0, size);
  let o = 0;
  let i = 0;
  const full = length - rest;
  for (; i < full; i += 4) {
    const a = table[text.charCodeAt(i)] ?? -1;
    const b = table[text.charCodeAt(i + 1)] ?? -1;
    const c = table[text.charCodeAt(i + 2)] ?? -1;
    const d = table[text.charCodeAt(i + 3)] ?? -1;
    if ((a | b | c | d) < 0) return null;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  if (rest >= 2) {
    const a = table[text.charCodeAt(i)] ?? -1;
    const b = table[text.charCodeAt(i + 1)] ?? -1;
    const c = rest === 3 ? table[text.charCodeAt(i + 2)] ?? -1 : 0;
    if ((a | b | c) < 0) return null;
    const n = (a << 18) | (b << 12) | (c << 6);
    out[o++] = n >> 16;
    if (rest === 3) out[o++] = (n >> 8) & 255;
  }
  return out;
}

/**
 * Decodes standard base64 the way Go's `base64.StdEncoding.DecodeString` does: `\r` and `\n` are
 * ignored anywhere, the alphabet is strict (no `-`/`_`, no spaces), `=` padding is required, and
 * non-zero trailing bits are accepted. Returns `null` for input Go would reject.
 */
export function decodeBase64Std(text: string): Uint8Array | null {
  let clean = text;
  if (clean.includes("\r") || clean.includes("\n")) clean = clean.replace(/[\r\n]/g, "");
  if (clean.length % 4 !== 0) return null;
  let length = clean.length;
  if (length > 0 && clean.charCodeAt(length - 1) === 61) {
    length--;
    if (clean.charCodeAt(length - 1) === 61) length--;
  }
  if (length % 4 === 1) return null;
  return decodeQuads(clean, STD_DECODE, length);
}

type NativeFromBase64 = (text: string, options: object) => Uint8Array;
type NativeSetFromBase64 = (text: string, options: object) => { read: number; written: number };
// The platform decoders (TC39 stage 4) where they exist, for long values: several times faster.
// They skip ASCII whitespace, so the alphabet is checked first (a native regular expression).
const nativeFromBase64 = (Uint8Array as unknown as { fromBase64?: NativeFromBase64 }).fromBase64;
const nativeSetFromBase64 = (Uint8Array.prototype as { setFromBase64?: NativeSetFromBase64 })
  .setFromBase64;
const URL_TEXT = /^[A-Za-z0-9_-]*$/;
const NATIVE_OPTIONS = { alphabet: "base64url", lastChunkHandling: "loose" };
/** Below this many characters the loop below is as fast as a native call. */
const NATIVE_MIN_LENGTH = 512;

/**
 * Decodes unpadded base64url; `null` for padding, other characters or an impossible length. With
 * `into`, decodes into (a view of) that buffer when it is large enough, without allocating.
 */
export function decodeBase64Url(text: string, into?: Uint8Array): Uint8Array | null {
  if (
    text.length < NATIVE_MIN_LENGTH || nativeFromBase64 === undefined ||
    nativeSetFromBase64 === undefined
  ) {
    return decodeQuads(text, URL_DECODE, text.length, into);
  }
  const size = decodedSize(text.length);
  if (size < 0 || !URL_TEXT.test(text)) return null;
  if (into !== undefined && into.length >= size) {
    const out = into.subarray(0, size);
    nativeSetFromBase64.call(out, text, NATIVE_OPTIONS);
    return out;
  }
  return nativeFromBase64(text, NATIVE_OPTIONS);
}

/** The portable decoder, for tests that compare it with the platform's. */
export function decodeBase64UrlPortable(text: string): Uint8Array | null {
  return decodeQuads(text, URL_DECODE, text.length);
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

const nativeToHex = (Uint8Array.prototype as { toHex?: () => string }).toHex;

/** Lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  if (nativeToHex !== undefined) return nativeToHex.call(bytes);
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

/** Decodes lower- or upper-case hex of even length; `null` otherwise. */
export function fromHex(text: string): Uint8Array | null {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as `TextEncoder` does). */
export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Strict UTF-8 decoding: `null` for invalid input instead of replacement characters. */
export function utf8DecodeStrict(bytes: Uint8Array): string | null {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Overwrites every byte with 0. Safe on `null`, `undefined` and empty arrays. Best effort: it wipes
 * this buffer, not copies the engine or the garbage collector may have made.
 */
export function zeroBytes(bytes: Uint8Array | null | undefined): void {
  if (bytes !== null && bytes !== undefined) bytes.fill(0);
}

/** Compares two byte arrays in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Compares two ASCII strings (hashes) in time that depends only on their lengths. */
export function constantTimeEqualText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** A plain `Uint8Array` copy (not a `Buffer` view on a driver's shared pool). */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}
