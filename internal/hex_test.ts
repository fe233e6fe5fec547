import assert from "node:assert/strict";
import { test } from "node:test";
import { bytesFromHex, decodeHexInto } from "./hex.ts";

const ALL = Uint8Array.from({ length: 256 }, (_, i) => i);
const ALL_HEX = Array.from(ALL, (b) => b.toString(16).padStart(2, "0")).join("");

/** The same target without the runtime's `setFromHex`: the fallback decoder. */
function withoutNative(target: Uint8Array): Uint8Array {
  Object.defineProperty(target, "setFromHex", { value: undefined });
  return target;
}

test("hex: every byte value, native and fallback, lower and upper case", () => {
  for (
    const make of [
      (n: number) => new Uint8Array(n),
      (n: number) => withoutNative(new Uint8Array(n)),
    ]
  ) {
    for (const text of [ALL_HEX, ALL_HEX.toUpperCase()]) {
      const target = make(256);
      decodeHexInto(target, text);
      assert.deepEqual(target, ALL);
    }
  }
});

test("hex: many values into one buffer, each its own view", () => {
  const [a, empty, b, all] = bytesFromHex(["00ff", "", "7b7d", ALL_HEX]);
  assert.deepEqual(a, new Uint8Array([0, 255]));
  assert.deepEqual(empty, new Uint8Array([]));
  assert.deepEqual(b, new TextEncoder().encode("{}"));
  assert.deepEqual(all, ALL);
  assert.equal(a.buffer, all.buffer);
  assert.equal(all.byteOffset, 4);
  assert.deepEqual(bytesFromHex([]), []);
});

test("hex: not hex is a TypeError, natively and in the fallback", () => {
  for (
    const make of [
      (n: number) => new Uint8Array(n),
      (n: number) => withoutNative(new Uint8Array(n)),
    ]
  ) {
    for (const text of ["0g", "g0", "0 ", "é0", "\u0000\u0000", "+1"]) {
      assert.throws(() => decodeHexInto(make(1), text), TypeError, JSON.stringify(text));
    }
    assert.throws(() => decodeHexInto(make(1), "abc"), TypeError);
    assert.throws(() => decodeHexInto(make(2), "ab"), TypeError);
  }
  assert.throws(() => bytesFromHex(["abc"]), TypeError);
  assert.throws(() => bytesFromHex([null as unknown as string]), TypeError);
});
