/**
 * Rewrap: moving every data key from one system key (KEK) to another without touching the data
 * keys themselves, so no application ciphertext changes. This file holds the runtime-agnostic part
 * (options, validation, the per-row work and the batch driver with its counting rules); each key
 * store supplies one batch at a time (`KeyStore.rewrapBatch`).
 *
 * @module
 */
import type { KeyOperations } from "./data_keys.ts";
import { constantTimeEqual, zeroBytes } from "./encoding.ts";
import { DecryptionError, EncryptionError, InvalidInputError } from "./errors.ts";
import type { StoredKey } from "./key_store.ts";

/** Rows per batch when `batchSize` is omitted. */
export const DEFAULT_REWRAP_BATCH_SIZE = 100;
/** The largest accepted `batchSize`. */
export const MAX_REWRAP_BATCH_SIZE = 10_000;
/** How many failures a result lists in full; `failedRows` counts them all. */
export const MAX_LISTED_FAILURES = 100;

/** The position of a row in rewrap order (`scope`, `scopeId`, `keyVersion`). */
export type RewrapCursor = Pick<StoredKey, "scope" | "scopeId" | "keyVersion">;

/**
 * A row that could not be rewrapped (its wrapped key does not open under the source KEK, or the
 * new wrap did not verify). It is left as it was and the run goes on.
 *
 * @example
 * ```ts
 * import type { RewrapFailure } from "@eventsalsa/eventsalsa/encryption";
 * const report = (f: RewrapFailure) => `${f.scope}/${f.scopeId} v${f.keyVersion}: ${f.error.message}`;
 * ```
 */
export interface RewrapFailure {
  /** The row's scope. */
  readonly scope: string;
  /** The row's scope id. */
  readonly scopeId: string;
  /** The row's key version. */
  readonly keyVersion: number;
  /** What went wrong: a `DecryptionError` or `EncryptionError`, without key material. */
  readonly error: Error;
}

/**
 * Totals after each batch, handed to `onProgress`.
 *
 * @example
 * ```ts
 * import type { RewrapProgress } from "@eventsalsa/eventsalsa/encryption";
 * const log = (p: RewrapProgress) => console.log(`batch ${p.batches}: ${p.rewrappedRows} rewrapped`);
 * ```
 */
export interface RewrapProgress {
  /** Batches done so far (committed ones, or checked ones in a dry run). */
  readonly batches: number;
  /** Rows read under the source key so far. */
  readonly matchedRows: number;
  /** Rows moved to the target key so far (0 in a dry run). */
  readonly rewrappedRows: number;
  /** Rows that changed under us (another rewrap moved them first) and were left alone. */
  readonly skippedRows: number;
  /** Rows that could not be rewrapped and were left alone. */
  readonly failedRows: number;
  /** The last row of the batch, in rewrap order. */
  readonly cursor: Pick<StoredKey, "scope" | "scopeId" | "keyVersion"> | null;
}

/**
 * The outcome of a rewrap run. `remainingRows` counts rows still under the source key after the
 * run: failed rows, rows another process held locked (`SKIP LOCKED`) and rows created meanwhile.
 * Rerun until it is 0 (and `failedRows` is 0) before removing the source key from the keyring.
 *
 * @example
 * ```ts
 * import type { RewrapResult } from "@eventsalsa/eventsalsa/encryption";
 * const done = (r: RewrapResult) => r.remainingRows === 0 && r.failedRows === 0;
 * ```
 */
export interface RewrapResult {
  /** Rows read under the source key. */
  readonly matchedRows: number;
  /** Rows moved to the target key. */
  readonly rewrappedRows: number;
  /** Rows that changed concurrently and were left alone. */
  readonly skippedRows: number;
  /** Rows that could not be rewrapped. */
  readonly failedRows: number;
  /** Rows still under the source key after the run. */
  readonly remainingRows: number;
  /** Batches committed (0 in a dry run). */
  readonly batches: number;
  /** Whether this was a dry run (nothing written). */
  readonly dryRun: boolean;
  /** The first 100 failures (`failedRows` counts them all). */
  readonly failures: readonly RewrapFailure[];
}

/**
 * Options of `KeyManager.rewrapSystemKeys`.
 *
 * @example
 * ```ts
 * import type { RewrapSystemKeysOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: RewrapSystemKeysOptions = {
 *   from: "kek-2024",
 *   to: "kek-2025",
 *   batchSize: 500,
 *   dryRun: true,
 *   onProgress: (p) => console.log(p.matchedRows),
 * };
 * ```
 */
export interface RewrapSystemKeysOptions {
  /** The system key id to move keys off. Must be in the keyring. */
  from: string;
  /** The system key id to move keys onto. Must be in the keyring; usually the active one. */
  to: string;
  /** Rows per batch (one transaction each); 100 when omitted, at most 10,000. */
  batchSize?: number;
  /** Check every row (it opens under `from`, and rewraps under `to`) without writing anything. */
  dryRun?: boolean;
  /** Called after each batch. A throw stops the run (committed batches stay committed). */
  onProgress?: (progress: RewrapProgress) => void | Promise<void>;
  /** Called for each row that cannot be rewrapped; the run goes on. */
  onRowError?: (failure: RewrapFailure) => void;
}

/** What {@link driveRewrap} runs: validated ids and the per-row work. */
export interface RewrapRequest {
  /** Source system key id. */
  readonly fromSystemKeyId: string;
  /** Target system key id. */
  readonly toSystemKeyId: string;
  /** Rows per batch. */
  readonly batchSize: number;
  /** Read and check only. */
  readonly dryRun: boolean;
  /** Re-wraps one row's key; throws `DecryptionError`/`EncryptionError` for a bad row. */
  rewrapRow(row: StoredKey): Uint8Array;
  /** Progress hook. */
  readonly onProgress?: (progress: RewrapProgress) => void | Promise<void>;
  /** Row-failure hook. */
  readonly onRowError?: (failure: RewrapFailure) => void;
}

/**
 * The batch primitives {@link driveRewrap} runs on: `KeyStore.rewrapBatch` and
 * `KeyStore.countKeys`, bound to one store, transaction and source key.
 */
export interface RewrapBatchIo {
  /** One batch: the keys after `cursor` (at most `limit`), given to `process`, its result written. */
  runBatch(
    cursor: RewrapCursor | null,
    limit: number,
    process: (rows: StoredKey[]) => StoredKey[],
  ): Promise<{ read: number; written: number }>;
  /** Rows still under the source key. */
  countRemaining(): Promise<number>;
}

/** Validated rewrap options, before the keyring is consulted. */
export interface CheckedRewrapOptions {
  readonly from: string;
  readonly to: string;
  readonly batchSize: number;
  readonly dryRun: boolean;
}

/** Validates rewrap options; every problem is an {@link InvalidInputError}, thrown before any I/O. */
export function checkRewrapOptions(options: RewrapSystemKeysOptions): CheckedRewrapOptions {
  if (options === null || typeof options !== "object") {
    throw new InvalidInputError("rewrap options are required");
  }
  const { from, to, batchSize, dryRun, onProgress, onRowError } = options;
  if (typeof from !== "string" || from === "") {
    throw new InvalidInputError("rewrap: source system key id (from) is required");
  }
  if (typeof to !== "string" || to === "") {
    throw new InvalidInputError("rewrap: target system key id (to) is required");
  }
  if (from === to) {
    throw new InvalidInputError("rewrap: source and target system key ids must differ");
  }
  if (
    batchSize !== undefined &&
    (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_REWRAP_BATCH_SIZE)
  ) {
    throw new InvalidInputError(
      `rewrap: batch size must be an integer from 1 to ${MAX_REWRAP_BATCH_SIZE}, got ${
        String(batchSize)
      }`,
    );
  }
  if (dryRun !== undefined && typeof dryRun !== "boolean") {
    throw new InvalidInputError("rewrap: dryRun must be a boolean");
  }
  if (onProgress !== undefined && typeof onProgress !== "function") {
    throw new InvalidInputError("rewrap: onProgress must be a function");
  }
  if (onRowError !== undefined && typeof onRowError !== "function") {
    throw new InvalidInputError("rewrap: onRowError must be a function");
  }
  return { from, to, batchSize: batchSize ?? DEFAULT_REWRAP_BATCH_SIZE, dryRun: dryRun ?? false };
}

/**
 * The per-row work: open the wrapped key under the source system key, wrap it under the target
 * with a fresh nonce, and check that the new wrap opens to the same key before it is written. The
 * data key is zeroed afterwards; the bound keys belong to the caller.
 */
export function rewrapKey(
  fromKek: KeyOperations,
  toKek: KeyOperations,
  row: StoredKey,
): Uint8Array {
  const context = { scope: row.scope, scopeId: row.scopeId, keyVersion: row.keyVersion };
  let dek: Uint8Array | null = null;
  let check: Uint8Array | null = null;
  try {
    try {
      dek = fromKek.decrypt(row.encryptedDek);
    } catch (error) {
      throw new DecryptionError(
        `wrapped key does not open under system key ${JSON.stringify(row.systemKeyId)}`,
        context,
        { cause: error },
      );
    }
    const rewrapped = toKek.encrypt(dek);
    check = toKek.decrypt(rewrapped);
    if (!constantTimeEqual(check, dek)) {
      throw new EncryptionError("rewrapped key did not verify", context);
    }
    return rewrapped;
  } finally {
    zeroBytes(dek);
    zeroBytes(check);
  }
}

/**
 * A rewrap run stopped on an error other than a bad row (a database error, a failing `onProgress`).
 * Batches committed before it stay committed; `result` holds their totals (`remainingRows` is
 * unknown there and reported as -1). Rerun to continue.
 *
 * @example
 * ```ts
 * import { RewrapAbortedError } from "@eventsalsa/eventsalsa/encryption";
 * function report(error: unknown): void {
 *   if (error instanceof RewrapAbortedError) console.log(error.result.rewrappedRows, "done before", error.cause);
 * }
 * ```
 */
export class RewrapAbortedError extends Error {
  /** Stable error name. */
  override readonly name: string = "RewrapAbortedError";
  /** Stable error code. */
  readonly code: string = "ERR_REWRAP_ABORTED";
  /** Totals of the batches that completed before the error. */
  readonly result: RewrapResult;

  /** Creates the error with the partial totals and the error that stopped the run. */
  constructor(result: RewrapResult, cause: unknown) {
    super(
      `rewrap stopped after ${result.batches} batches (${result.rewrappedRows} rows rewrapped): ` +
        (cause instanceof Error ? cause.message : String(cause)),
      { cause },
    );
    this.result = result;
  }
}

/**
 * Runs a rewrap over a store's batch primitives: keyset pagination in (scope, scopeId, keyVersion)
 * order, so a row that fails is passed over instead of being read again forever; per-row failures
 * are counted, reported and skipped; progress after each batch.
 */
export async function driveRewrap(
  request: RewrapRequest,
  io: RewrapBatchIo,
): Promise<RewrapResult> {
  let matchedRows = 0;
  let rewrappedRows = 0;
  let skippedRows = 0;
  let failedRows = 0;
  let batches = 0;
  const failures: RewrapFailure[] = [];
  let cursor: RewrapCursor | null = null;
  const totals = (remainingRows: number): RewrapResult => ({
    matchedRows,
    rewrappedRows,
    skippedRows,
    failedRows,
    remainingRows,
    batches: request.dryRun ? 0 : batches,
    dryRun: request.dryRun,
    failures,
  });
  try {
    for (;;) {
      let batchFailed = 0;
      let attempted = 0;
      const reported: RewrapFailure[] = [];
      const { read: rows, written: applied } = await io.runBatch(
        cursor,
        request.batchSize,
        (batch) => {
          // Runs inside the batch transaction; it may run again if the store retries the batch, so
          // nothing outside this call is touched until the batch has committed.
          batchFailed = 0;
          attempted = 0;
          reported.length = 0;
          const updates: StoredKey[] = [];
          for (const row of batch) {
            try {
              const encryptedDek = request.rewrapRow(row);
              attempted++;
              updates.push({ ...row, encryptedDek, systemKeyId: request.toSystemKeyId });
            } catch (error) {
              batchFailed++;
              reported.push({
                scope: row.scope,
                scopeId: row.scopeId,
                keyVersion: row.keyVersion,
                error: error instanceof Error ? error : new Error(String(error)),
              });
            }
          }
          if (batch.length > 0) {
            const last = batch[batch.length - 1];
            cursor = { scope: last.scope, scopeId: last.scopeId, keyVersion: last.keyVersion };
          }
          return request.dryRun ? [] : updates;
        },
      );
      if (rows === 0) break;
      batches++;
      matchedRows += rows;
      failedRows += batchFailed;
      if (!request.dryRun) {
        rewrappedRows += applied;
        skippedRows += attempted - applied;
      }
      for (const failure of reported) {
        if (failures.length < MAX_LISTED_FAILURES) failures.push(failure);
        request.onRowError?.(failure);
      }
      await request.onProgress?.({
        batches,
        matchedRows,
        rewrappedRows,
        skippedRows,
        failedRows,
        cursor,
      });
      if (rows < request.batchSize) break;
    }
    return totals(await io.countRemaining());
  } catch (error) {
    throw new RewrapAbortedError(totals(-1), error);
  }
}
