import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { VERSION } from "./version.ts";

describe("eventsalsa --version", () => {
  it("cli/version.ts matches deno.json, jsr.json and package.json", () => {
    for (const file of ["deno.json", "jsr.json", "package.json"]) {
      const path = fileURLToPath(new URL(`../${file}`, import.meta.url));
      const { version } = JSON.parse(readFileSync(path, "utf8"));
      assert.equal(VERSION, version, `cli/version.ts says ${VERSION}, ${file} says ${version}`);
    }
  });
});
