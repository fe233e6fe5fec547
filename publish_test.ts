// What a user of the published package gets: documentation links that resolve inside the package,
// entry points that do not pull the embedded database in, and a publish workflow on the Deno
// version CI tests with.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const read = (file: string) => readFileSync(join(root, file), "utf8");
const deno = JSON.parse(read("deno.json")) as {
  exports: Record<string, string>;
  imports: Record<string, string>;
  publish: { exclude: string[] };
};

/** A `publish.exclude` pattern as a test on a root-relative path (`dir/`, `*`, `**\/`). */
function excludes(pattern: string): (path: string) => boolean {
  if (pattern.endsWith("/")) return (path) => path.startsWith(pattern);
  const source = pattern.split("**/").map((part) =>
    part.split("*").map((text) => text.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*")
  ).join("(?:.*/)?");
  const regex = new RegExp(`^${source}$`);
  return (path) => regex.test(path);
}
const excluded = deno.publish.exclude.map(excludes);
const published = (path: string) => existsSync(join(root, path)) && !excluded.some((x) => x(path));

describe("the published package", () => {
  it("every relative link in the README and the published docs resolves inside the package", () => {
    const pages = ["README.md", "bench/README.md"].concat(
      readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`),
    ).filter(published);
    assert.ok(pages.includes("README.md") && pages.includes("docs/design.md"), pages.join(", "));
    const broken: string[] = [];
    for (const page of pages) {
      for (const [, target] of read(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:|^#/.test(target)) continue; // absolute URL or same-page anchor
        const path = relative(root, resolve(root, dirname(page), target.split("#")[0]));
        if (!published(path)) broken.push(`${page}: ${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it("no entry point but testing reaches PGlite or testcontainers", () => {
    const fromSpecifier = (specifier: string): string | null => {
      const mapped = deno.imports[specifier] ?? specifier;
      if (mapped.startsWith("node:")) return null;
      const bare = mapped.replace(/^npm:\/?/, "");
      const parts = bare.split("/");
      const name = bare.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
      return name.replace(/(.)@.*$/, "$1");
    };
    const packagesOf = (entry: string): Set<string> => {
      const seen = new Set<string>();
      const packages = new Set<string>();
      const visit = (file: string) => {
        if (seen.has(file)) return;
        seen.add(file);
        const text = readFileSync(file, "utf8");
        const specifiers = [
          // Statements at the start of a line, not crossing a comment or a declaration, and dynamic
          // imports outside comment lines: the examples inside JSDoc comments do not count.
          ...text.matchAll(/^\s*(?:import|export)\s+[^"';/=()]*?\bfrom\s*["']([^"']+)["']/gm),
          ...text.matchAll(/^\s*import\s*["']([^"']+)["']/gm),
          ...text.matchAll(/^(?!\s*\*).*\bimport\(\s*["']([^"']+)["']\s*\)/gm),
        ].map((match) => match[1]);
        for (const specifier of specifiers) {
          if (specifier.startsWith(".")) visit(resolve(dirname(file), specifier));
          else {
            const name = fromSpecifier(specifier);
            if (name !== null) packages.add(name);
          }
        }
      };
      visit(join(root, entry));
      return packages;
    };
    const heavy = /^@electric-sql\/|^testcontainers$/;
    for (const [name, entry] of Object.entries(deno.exports)) {
      const packages = [...packagesOf(entry)].sort();
      assert.ok(packages.includes("postgres"), `${name}: ${packages.join(", ")}`);
      if (name === "./testing") {
        assert.ok(packages.includes("@electric-sql/pglite"), packages.join(", "));
      } else {
        assert.deepEqual(
          packages.filter((p) => heavy.test(p)),
          [],
          `${name} pulls the embedded database`,
        );
      }
    }
  });

  it("the publish workflow installs the Deno version CI pins", () => {
    const workflow = read(".github/workflows/publish.yml");
    const pinned = JSON.parse(read(".ci/tools/package.json")).dependencies.deno as string;
    assert.match(workflow, new RegExp(`deno-version: v${pinned.replace(/\./g, "\\.")}\\n`));
    assert.match(workflow, /id-token: write/);
    assert.match(workflow, /\n\s+run: deno publish\n/);
  });
});
