import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";

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

  it("devDependencies (test tools, bench peers) are imported by tests and benchmarks only", () => {
    const dev = Object.keys(pkg.devDependencies ?? {});
    assert.ok(
      dev.every((name) => !(name in deno.imports)),
      "dev dependencies stay out of deno.json",
    );
    const root = new URL("./", import.meta.url);
    const files = (readdirSync(root, { recursive: true }) as string[])
      .filter((file) => file.endsWith(".ts") && !file.endsWith("_test.ts"))
      // Benchmarks are not published (deno.json "publish"): they may compare with dev-only peers.
      .filter((file) => !/^(node_modules|\.ci|\.git|bench)[\\/]/.test(file));
    // Import and export statements at the start of a line (JSDoc examples are not code).
    const specifier = /^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/gm;
    for (const file of files) {
      const text = readFileSync(new URL(file, root), "utf8");
      for (const match of text.matchAll(specifier)) {
        const imported = (match[1] ?? match[2]).replace(/^npm:/, "");
        const named = dev.find((name) =>
          imported === name || imported.startsWith(`${name}@`) ||
          imported.startsWith(`${name}/`)
        );
        assert.equal(named, undefined, `${file} imports the dev dependency ${imported}`);
      }
    }
  });

  it("every export points at an existing mod.ts", () => {
    for (const [name, path] of Object.entries(deno.exports as Record<string, string>)) {
      assert.doesNotThrow(() => readFileSync(new URL(path, import.meta.url)), `${name} -> ${path}`);
    }
  });
});
