import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  constantTimeEqual,
  constantTimeEqualText,
  decodeBase64Std,
  decodeBase64Url,
  decodeBase64UrlPortable,
  encodeBase64Std,
  encodeBase64Url,
  fromHex,
  portableBase64,
  toHex,
  utf8DecodeStrict,
  utf8Encode,
  zeroBytes,
} from "./encoding.ts";

const bytes = (...values: number[]) => Uint8Array.from(values);

describe("base64 (standard, Go decoding rules)", () => {
  it("encodes with padding like RFC 4648 test vectors", () => {
    const cases: [string, string][] = [
      ["", ""],
      ["f", "Zg=="],
      ["fo", "Zm8="],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg=="],
      ["fooba", "Zm9vYmE="],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [plain, encoded] of cases) {
      assert.equal(encodeBase64Std(utf8Encode(plain)), encoded);
      assert.deepEqual(decodeBase64Std(encoded), utf8Encode(plain));
    }
    assert.equal(encodeBase64Std(bytes(0xfb, 0xff, 0xbf)), "+/+/");
  });

  it("round-trips every byte value and length", () => {
    for (let length = 0; length < 70; length++) {
      const data = Uint8Array.from({ length }, (_, i) => (i * 37 + length) & 255);
      assert.deepEqual(decodeBase64Std(encodeBase64Std(data)), data);
      assert.deepEqual(decodeBase64Url(encodeBase64Url(data)), data);
    }
  });

  it("ignores CR and LF anywhere, as Go does", () => {
    assert.deepEqual(decodeBase64Std("Zm9v\r\nYmFy"), utf8Encode("foobar"));
    assert.deepEqual(decodeBase64Std("Z\nm\r9vYg=\n="), utf8Encode("foob"));
  });

  it("rejects what Go rejects: missing padding, URL alphabet, spaces, junk", () => {
    for (
      const bad of ["Zm9vYg", "Zm9vYg=", "Zm-_", "Zm9 v", "Zm9v=", "Z===", "====", "Zg==Zg==", "A"]
    ) {
      assert.equal(decodeBase64Std(bad), null, bad);
    }
  });

  it("accepts non-zero trailing bits, as Go's StdEncoding does", () => {
    assert.deepEqual(decodeBase64Std("Zh=="), decodeBase64Std("Zg=="));
  });

  it("long base64url goes through the platform decoder, with the portable one's answers", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (let i = 0; i < 200; i++) {
      const length = 500 + Math.floor(Math.random() * 3000);
      let text = "";
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(Math.random() * 64)];
      // Now and then a character outside the alphabet, at a random place.
      if (i % 4 === 0) {
        const at = Math.floor(Math.random() * length);
        text = text.slice(0, at) + [" ", "=", "+", "/", "\n", "é"][i % 6] + text.slice(at + 1);
      }
      const expected = decodeBase64UrlPortable(text);
      assert.deepEqual(decodeBase64Url(text), expected, `length ${text.length}`);
      const into = new Uint8Array(4096);
      assert.deepEqual(decodeBase64Url(text, into), expected);
    }
  });

  it("the platform encoder, when present, writes exactly what the portable one writes", () => {
    for (let length = 0; length < 40; length++) {
      const data = crypto.getRandomValues(new Uint8Array(length));
      assert.equal(encodeBase64Std(data), portableBase64.std(data));
      assert.equal(encodeBase64Url(data), portableBase64.url(data));
    }
  });

  it("decodes into a caller's buffer when it is large enough", () => {
    const into = new Uint8Array(8).fill(9);
    const out = decodeBase64Url("Zm9v", into)!;
    assert.equal(out.buffer, into.buffer);
    assert.deepEqual(out, utf8Encode("foo"));
    const small = new Uint8Array(1);
    const fresh = decodeBase64Url("Zm9vYmFy", small)!;
    assert.notEqual(fresh.buffer, small.buffer);
    assert.deepEqual(fresh, utf8Encode("foobar"));
  });

  it("base64url has no padding and its own alphabet", () => {
    assert.equal(encodeBase64Url(bytes(0xfb, 0xff, 0xbf, 0x01)), "-_-_AQ");
    assert.equal(decodeBase64Url("-_-_AQ=="), null);
    assert.equal(decodeBase64Url("+/+/"), null);
    assert.equal(decodeBase64Url("A"), null);
  });
});

describe("hex, UTF-8, comparison, zeroing", () => {
  it("hex round-trips and rejects odd or non-hex input", () => {
    assert.equal(toHex(bytes(0, 15, 255)), "000fff");
    assert.deepEqual(fromHex("000FfF"), bytes(0, 15, 255));
    assert.equal(fromHex("abc"), null);
    assert.equal(fromHex("zz"), null);
  });

  it("strict UTF-8 decoding refuses invalid sequences", () => {
    assert.equal(utf8DecodeStrict(utf8Encode("héllo ✓")), "héllo ✓");
    assert.equal(utf8DecodeStrict(bytes(0xff, 0xfe)), null);
    assert.equal(utf8DecodeStrict(bytes(0xc3)), null);
  });

  it("constant-time comparisons compare contents and lengths", () => {
    assert.equal(constantTimeEqual(bytes(1, 2), bytes(1, 2)), true);
    assert.equal(constantTimeEqual(bytes(1, 2), bytes(1, 3)), false);
    assert.equal(constantTimeEqual(bytes(1), bytes(1, 2)), false);
    assert.equal(constantTimeEqualText("abc", "abc"), true);
    assert.equal(constantTimeEqualText("abc", "abd"), false);
    assert.equal(constantTimeEqualText("abc", "ab"), false);
  });

  it("86-88. zeroBytes zeroes 5 bytes and is safe on empty, null and undefined", () => {
    const data = bytes(1, 2, 3, 4, 5);
    zeroBytes(data);
    assert.deepEqual(data, new Uint8Array(5));
    zeroBytes(new Uint8Array(0));
    zeroBytes(null);
    zeroBytes(undefined);
  });
});
