import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decryptWithKey, encryptWithKey } from "./aes_gcm.ts";
import type { KeyOperations } from "./data_keys.ts";
import { DecryptionError, EncryptionError, InvalidInputError } from "./errors.ts";
import type { StoredKey } from "./key_store.ts";
import {
  checkRewrapOptions,
  driveRewrap,
  RewrapAbortedError,
  type RewrapBatchIo,
  rewrapKey,
  type RewrapRequest,
} from "./rewrap.ts";

const row = (encryptedDek: Uint8Array, keyVersion = 1): StoredKey => ({
  scope: "s",
  scopeId: "i",
  keyVersion,
  encryptedDek,
  systemKeyId: "old",
  createdAt: new Date(0),
  revokedAt: null,
});

describe("checkRewrapOptions (scenarios 33-38)", () => {
  it("fills the default batch size and passes good options", () => {
    assert.deepEqual(checkRewrapOptions({ from: "old", to: "new" }), {
      from: "old",
      to: "new",
      batchSize: 100,
      dryRun: false,
    });
  });

  it("rejects missing, equal or malformed options with readable messages", () => {
    const cases: [object, RegExp][] = [
      [{ to: "new" }, /source system key id/],
      [{ from: "old" }, /target system key id/],
      [{ from: "k", to: "k" }, /must differ/],
      [{ from: "a", to: "b", batchSize: -1 }, /batch size/],
      [{ from: "a", to: "b", batchSize: 0 }, /batch size/],
      [{ from: "a", to: "b", onRowError: "x" }, /onRowError/],
    ];
    for (const [options, message] of cases) {
      assert.throws(
        () => checkRewrapOptions(options as never),
        (error: Error) => error instanceof InvalidInputError && message.test(error.message),
      );
    }
  });
});

describe("rewrapKey", () => {
  const from = new Uint8Array(32).fill(1);
  const to = new Uint8Array(32).fill(2);
  const bound = (key: Uint8Array): KeyOperations => ({
    encrypt: (plaintext) => encryptWithKey(key, plaintext),
    decrypt: (ciphertext) => decryptWithKey(key, ciphertext),
  });

  it("re-wraps the same DEK under the target key with a fresh nonce", () => {
    const dek = new Uint8Array(32).fill(9);
    const wrapped = encryptWithKey(from, dek);
    const rewrapped = rewrapKey(bound(from), bound(to), row(wrapped));
    assert.deepEqual(decryptWithKey(to, rewrapped), dek);
    assert.notDeepEqual(rewrapped.subarray(0, 12), wrapped.subarray(0, 12));
  });

  it("a row that does not open under the source key is DecryptionError with its coordinates", () => {
    assert.throws(
      () => rewrapKey(bound(from), bound(to), row(encryptWithKey(to, new Uint8Array(32)), 7)),
      (error) =>
        error instanceof DecryptionError && error.keyVersion === 7 && error.scopeId === "i",
    );
  });

  it("a rewrap that does not verify is EncryptionError", () => {
    const lying: KeyOperations = { ...bound(to), decrypt: () => new Uint8Array(32) };
    const wrapped = encryptWithKey(from, new Uint8Array(32).fill(3));
    assert.throws(() => rewrapKey(bound(from), lying, row(wrapped)), EncryptionError);
  });
});

describe("driveRewrap", () => {
  const request = (extra: Partial<RewrapRequest> = {}): RewrapRequest => ({
    fromSystemKeyId: "old",
    toSystemKeyId: "new",
    batchSize: 2,
    dryRun: false,
    rewrapRow: (r) => r.encryptedDek,
    ...extra,
  });

  it("stops after a short batch, walks with a cursor, and counts CAS misses as skipped", async () => {
    const cursors: unknown[] = [];
    const batches = [[row(new Uint8Array(1), 1), row(new Uint8Array(1), 2)], [
      row(new Uint8Array(1), 3),
    ]];
    const io: RewrapBatchIo = {
      runBatch: (cursor, _limit, process) => {
        cursors.push(cursor);
        const rows = batches.shift() ?? [];
        const updates = process(rows);
        assert.ok(updates.every((u) => u.systemKeyId === "new"));
        return Promise.resolve({ read: rows.length, written: Math.max(0, updates.length - 1) });
      },
      countRemaining: () => Promise.resolve(2),
    };
    const result = await driveRewrap(request(), io);
    assert.deepEqual(cursors, [null, { scope: "s", scopeId: "i", keyVersion: 2 }]);
    assert.deepEqual(
      [
        result.matchedRows,
        result.rewrappedRows,
        result.skippedRows,
        result.remainingRows,
        result.batches,
      ],
      [3, 1, 2, 2, 2],
    );
  });

  it("wraps a store error in RewrapAbortedError with the totals so far", async () => {
    let calls = 0;
    const io: RewrapBatchIo = {
      runBatch: (_cursor, _limit, process) => {
        if (++calls === 2) return Promise.reject(new Error("connection lost"));
        process([row(new Uint8Array(1), 1), row(new Uint8Array(1), 2)]);
        return Promise.resolve({ read: 2, written: 2 });
      },
      countRemaining: () => Promise.resolve(0),
    };
    const error = await driveRewrap(request(), io).then(() => null, (e) => e);
    assert.ok(error instanceof RewrapAbortedError);
    assert.equal(error.result.rewrappedRows, 2);
    assert.equal(error.result.batches, 1);
    assert.equal(error.result.remainingRows, -1);
    assert.match(error.message, /connection lost/);
  });

  it("lists at most 100 failures but counts them all", async () => {
    const rows = Array.from({ length: 150 }, (_, i) => row(new Uint8Array(1), i + 1));
    let done = false;
    const io: RewrapBatchIo = {
      runBatch: (_cursor, _limit, process) => {
        if (done) return Promise.resolve({ read: 0, written: 0 });
        done = true;
        process(rows);
        return Promise.resolve({ read: rows.length, written: 0 });
      },
      countRemaining: () => Promise.resolve(150),
    };
    const result = await driveRewrap(
      request({
        batchSize: 1000,
        rewrapRow: () => {
          throw new DecryptionError("bad");
        },
      }),
      io,
    );
    assert.equal(result.failedRows, 150);
    assert.equal(result.failures.length, 100);
    assert.equal(result.skippedRows, 0);
  });
});
