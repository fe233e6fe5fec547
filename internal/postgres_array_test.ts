import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { textArrayLiteral, toHex } from "./postgres_array.ts";

describe("PostgreSQL array literals", () => {
  it("quotes every element and escapes quotes and backslashes; null is NULL", () => {
    assert.equal(textArrayLiteral([]), "{}");
    assert.equal(
      textArrayLiteral(["a", null, 'say "hi"', "back\\slash", "{,}"]),
      String.raw`{"a",NULL,"say \"hi\"","back\\slash","{,}"}`,
    );
    assert.equal(textArrayLiteral(["NULL"]), '{"NULL"}');
  });

  it("hex-encodes bytes", () => {
    assert.equal(toHex(new Uint8Array([0, 15, 16, 255])), "000f10ff");
    assert.equal(toHex(new Uint8Array()), "");
  });
});
