import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const read = (file: string) => JSON.parse(readFileSync(new URL(file, import.meta.url), "utf8"));

describe("package configuration", () => {
  const deno = read("./deno.json");
  const pkg = read("./package.json");
  const jsr = read("./jsr.json");

  it("deno.json imports and package.json dependencies declare the same versions", () => {
    const fromDeno = Object.fromEntries(
      Object.entries(deno.imports as Record<string, string>).map(([name, specifier]) => {
        const match = /^npm:(@?[^@]+)@(.+)$/.exec(specifier);
        assert.ok(match, `${name} in deno.json must be an npm: specifier with a version`);
        assert.equal(match[1], name, `${name} maps to a different package`);
        return [name, match[2]];
      }),
    );
    assert.deepEqual(fromDeno, pkg.dependencies);
  });

  it("jsr.json agrees with deno.json on name, version, exports and publish excludes", () => {
    assert.equal(jsr.name, "@eventsalsa/eventsalsa");
    assert.equal(deno.name, jsr.name);
    assert.equal(deno.version, jsr.version);
    assert.equal(pkg.version, jsr.version);
    assert.deepEqual(deno.exports, jsr.exports);
    assert.deepEqual(deno.publish, jsr.publish);
  });

  it("every export points at an existing mod.ts", () => {
    for (const [name, path] of Object.entries(deno.exports as Record<string, string>)) {
      assert.doesNotThrow(() => readFileSync(new URL(path, import.meta.url)), `${name} -> ${path}`);
    }
  });
});
