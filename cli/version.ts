/**
 * The version of this library, as `eventsalsa --version` prints it. A constant rather than a read
 * of deno.json, so it is the same under Deno, Bun and from JSR; `version_test.ts` fails when it
 * differs from deno.json, jsr.json or package.json (bump them together).
 */
export const VERSION = "0.1.0";
