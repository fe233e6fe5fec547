import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CipherOperationError,
  DecryptionError,
  EncryptionError,
  KeyDestroyedError,
  KeyExistsError,
  KeyNotFoundError,
} from "./errors.ts";

describe("encryption errors", () => {
  const subject = { scope: "user-pii", scopeId: "u-1", keyVersion: 2 };

  it("key-state errors keep Go's texts and carry the subject", () => {
    const destroyedAt = new Date(0);
    const cases: Array<
      [KeyNotFoundError | KeyDestroyedError | KeyExistsError, string, string, string]
    > = [
      [
        new KeyNotFoundError(subject),
        "KeyNotFoundError",
        "ERR_KEY_NOT_FOUND",
        "encryption key not found",
      ],
      [
        new KeyDestroyedError(subject, destroyedAt),
        "KeyDestroyedError",
        "ERR_KEY_DESTROYED",
        "encryption key has been destroyed",
      ],
      [
        new KeyExistsError({ scope: "s", scopeId: "i" }),
        "KeyExistsError",
        "ERR_KEY_EXISTS",
        "encryption key already exists",
      ],
    ];
    for (const [error, name, code, text] of cases) {
      assert.ok(error instanceof Error);
      assert.equal(error.name, name);
      assert.equal((error as unknown as { code: string }).code, code);
      assert.ok(error.message.startsWith(`${text}: `), error.message);
    }
    assert.equal(cases[0][0].message, "encryption key not found: user-pii/u-1 v2");
    assert.deepEqual([cases[0][0].scope, cases[0][0].scopeId, cases[0][0].keyVersion], [
      "user-pii",
      "u-1",
      2,
    ]);
    assert.equal(cases[2][0].message, "encryption key already exists: s/i");
    assert.equal(cases[2][0].keyVersion, null);
    assert.equal((cases[1][0] as KeyDestroyedError).destroyedAt, destroyedAt);
  });

  it("cipher failures carry a reason and, when known, the subject", () => {
    const cause = new Error("inner");
    const decryption = new DecryptionError("authentication failed", subject, { cause });
    assert.ok(decryption instanceof CipherOperationError);
    assert.equal(decryption.message, "decryption failed: user-pii/u-1 v2: authentication failed");
    assert.equal(decryption.reason, "authentication failed");
    assert.equal(decryption.code, "ERR_DECRYPTION");
    assert.equal(decryption.cause, cause);
    const encryption = new EncryptionError("AES-GCM encryption failed");
    assert.equal(encryption.message, "encryption failed: AES-GCM encryption failed");
    assert.deepEqual([encryption.scope, encryption.scopeId, encryption.keyVersion], [
      null,
      null,
      null,
    ]);
    assert.equal(encryption.name, "EncryptionError");
  });
});
