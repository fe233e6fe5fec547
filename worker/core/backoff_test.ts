import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { failureBackoff, nextPollInterval } from "./backoff.ts";

describe("nextPollInterval", () => {
  it("doubles from the base up to the cap", () => {
    const seen: number[] = [];
    let current = 1_000;
    for (let i = 0; i < 7; i++) seen.push(current = nextPollInterval(current, 30_000, 1_000));
    assert.deepEqual(seen, [2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });
  it("starts at the base when the current value is not positive", () => {
    assert.equal(nextPollInterval(0, 30_000, 500), 500);
    assert.equal(nextPollInterval(-3, 30_000, 500), 500);
  });
  it("caps an overflowing value", () => {
    assert.equal(nextPollInterval(Number.MAX_VALUE, 5_000, 100), 5_000);
  });
});

describe("failureBackoff", () => {
  it("doubles per consecutive failure and caps at the maximum", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => failureBackoff(n, 1_000, 10_000)), [
      1_000,
      2_000,
      4_000,
      8_000,
      10_000,
      10_000,
    ]);
  });
  it("never exceeds the maximum, even for huge counts", () => {
    assert.equal(failureBackoff(10_000, 1_000, 30_000), 30_000);
  });
});
