/**
 * Hex text from PostgreSQL (`encode(bytes, 'hex')`) into bytes, many values into one buffer.
 *
 * Why not postgres.js's own `bytea` parsing: it builds a `Buffer` per value, and on Deno each new
 * `ArrayBuffer` costs about half a microsecond (the runtime's allocator), more than the decoding.
 * A batch of events decodes into one buffer and hands out views: a catch-up read of 1,000 events
 * spent a tenth of its client time in those allocations.
 */

/** `Uint8Array.prototype.setFromHex` where the runtime has it (Deno 2, Bun; not older Node). */
type HexTarget = Uint8Array & {
  setFromHex?: (text: string) => { read: number; written: number };
};

/** Nibble value of each ASCII code, or -1. */
const NIBBLES: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) table[48 + i] = i;
  for (let i = 0; i < 6; i++) table[65 + i] = table[97 + i] = 10 + i;
  return table;
})();

/**
 * Decodes `text` (hex digits, two per byte) into all of `target`, whose length must be
 * `text.length / 2`. Throws a `TypeError` on anything else: a value that is not what the SQL
 * promised is a bug, not data to guess at.
 */
export function decodeHexInto(target: Uint8Array, text: string): void {
  if (text.length !== target.length * 2) {
    throw new TypeError(`hex text of ${text.length} digits for ${target.length} bytes`);
  }
  const native = (target as HexTarget).setFromHex;
  if (native !== undefined) {
    let done: { read: number; written: number } | null = null;
    try {
      done = native.call(target, text);
    } catch {
      // A SyntaxError from the runtime: reported below as the fallback reports it.
    }
    if (done !== null && done.read === text.length && done.written === target.length) return;
    throw new TypeError("hex text with a character that is not a hex digit");
  }
  for (let i = 0, j = 0; i < target.length; i++, j += 2) {
    const high = NIBBLES[text.charCodeAt(j)] ?? -1;
    const low = NIBBLES[text.charCodeAt(j + 1)] ?? -1;
    if (high < 0 || low < 0) {
      throw new TypeError("hex text with a character that is not a hex digit");
    }
    target[i] = (high << 4) | low;
  }
}

/**
 * The bytes of each hex text in `texts`, as views over one new buffer (one allocation for all).
 *
 * @example
 * ```ts
 * const [a, b] = bytesFromHex(["00ff", ""]); // Uint8Array [0, 255], Uint8Array []
 * ```
 */
export function bytesFromHex(texts: readonly string[]): Uint8Array[] {
  let total = 0;
  for (const text of texts) {
    if (typeof text !== "string") throw new TypeError(`hex text expected, got ${typeof text}`);
    total += text.length >> 1;
  }
  const buffer = new Uint8Array(total);
  const views: Uint8Array[] = new Array(texts.length);
  let offset = 0;
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i];
    const view = buffer.subarray(offset, offset + (text.length >> 1));
    decodeHexInto(view, text);
    views[i] = view;
    offset += view.length;
  }
  return views;
}
