import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

// Every example runs to completion under the runtime running this test (Deno or Bun), against
// DATABASE_URL when set, else the embedded PGlite.
const isDeno = "Deno" in globalThis;
const runtime = process.execPath;

function run(example: string): { status: number | null; output: string } {
  const path = fileURLToPath(new URL(example, import.meta.url));
  const args = isDeno ? ["run", "-A", path] : [path];
  const result = spawnSync(runtime, args, { encoding: "utf8", timeout: 120_000, env: process.env });
  return { status: result.status, output: `${result.stdout}\n${result.stderr}` };
}

describe("examples", () => {
  for (
    const [example, expected] of [
      ["demo.ts", /PII is unreadable \(KeyDestroyedError\)\ndone in/],
      ["register_user.ts", /refused duplicate: EmailReservation\//],
      ["inline_projection.ts", /balance 125 at version 2; stream head 2/],
      [
        "aggregate_snapshots.ts",
        /versions 26, 27, 28, 29, 30, 31\n.*\nada: balance 250 at version 32; snapshot at version 30 \+ 2 events\nafter TRUNCATE: same state from 32 events/,
      ],
      ["account_projection.ts", /account-\w+: 3 deposits, balance 425/],
      [
        "pii_shredding.ts",
        /after a key rotation: ada@example\.com\nafter deletion: KeyDestroyedError; the events remain: UserRegistered, UserDeleted/,
      ],
      [
        "secret_rotation.ts",
        /first token under key v1, second under v2\nboth readable: sk_live_first, sk_live_second\nactive version: 2\nafter revoke and destroy: KeyDestroyedError/,
      ],
    ] as const
  ) {
    it(`${example} runs and prints what it promises`, () => {
      const { status, output } = run(example);
      assert.equal(status, 0, output);
      assert.match(output, expected);
    });
  }
});
