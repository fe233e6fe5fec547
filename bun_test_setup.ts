/**
 * Bun only (bunfig.toml preloads it for `bun test`): gives every test 120 s instead of Bun's 5 s
 * default, which the embedded database's start-up and the multi-process tests exceed.
 *
 * Bun 1.4 ignores `[test] timeout` in bunfig.toml, and `setDefaultTimeout` holds for the file that
 * calls it only, so this plugin puts that call at the top of each test file as Bun loads it (on the
 * file's first line: line numbers stay as they are). A test's own `timeout` option still wins.
 *
 * @module
 */

const TIMEOUT_MS = 120_000;

interface BunRuntime {
  plugin(plugin: {
    name: string;
    setup(build: {
      onLoad(
        options: { filter: RegExp },
        load: (args: { path: string }) => Promise<{ contents: string; loader: "ts" }>,
      ): void;
    }): void;
  }): void;
  file(path: string): { text(): Promise<string> };
}

const bun = (globalThis as { Bun?: BunRuntime }).Bun;
if (bun !== undefined) {
  bun.plugin({
    name: "eventsalsa test timeout",
    setup(build) {
      build.onLoad({ filter: /[._]test\.ts$/ }, async ({ path }) => ({
        contents: `import { setDefaultTimeout as __eventsalsaTimeout } from "bun:test"; ` +
          `__eventsalsaTimeout(${TIMEOUT_MS}); ${await bun.file(path).text()}`,
        loader: "ts",
      }));
    },
  });
}
