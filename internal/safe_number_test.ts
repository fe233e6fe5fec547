import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { toSafeNumber } from "./safe_number.ts";

describe("toSafeNumber", () => {
  it("accepts int8 as string, bigint or number", () => {
    assert.equal(toSafeNumber("42", "x"), 42);
    assert.equal(toSafeNumber("-7", "x"), -7);
    assert.equal(toSafeNumber(42n, "x"), 42);
    assert.equal(toSafeNumber(9007199254740991, "x"), 9007199254740991);
  });

  it("refuses values that would round, and non-integers", () => {
    assert.throws(() => toSafeNumber("9007199254740993", "position"), RangeError);
    assert.throws(() => toSafeNumber(2n ** 60n, "position"), RangeError);
    assert.throws(() => toSafeNumber("1.5", "x"), TypeError);
    assert.throws(() => toSafeNumber("", "x"), TypeError);
    assert.throws(() => toSafeNumber("abc", "x"), TypeError);
    assert.throws(() => toSafeNumber(null, "x"), TypeError);
  });
});
