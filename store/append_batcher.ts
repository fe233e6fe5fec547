/**
 * Group commit for auto-commit appends: concurrent callers' appends to different aggregates travel
 * together as one statement (one transaction, one fsync), while each caller still gets its own
 * result or its own error.
 *
 * @module
 */
import type { SqlExecutor } from "../internal/postgres_client.ts";
import { ConcurrencyError, DuplicateEventIdError } from "./errors.ts";
import type { ExpectedVersion } from "./expected_version.ts";
import { appendStreams, type PostgresStore } from "./postgres_store.ts";
import type { AppendResult, Event } from "./types.ts";
import { normalizeAppend, type NormalizedAppend } from "./validation.ts";

/**
 * Options of {@link AppendBatcher}.
 *
 * @example
 * ```ts
 * import type { AppendBatcherOptions } from "@eventsalsa/eventsalsa/store";
 * const options: AppendBatcherOptions = { maxInFlight: 4, maxBatch: 128 };
 * ```
 */
export interface AppendBatcherOptions {
  /**
   * Statements in flight at once (each on a connection of its own); default 8. Keep it at or
   * below the pool's `max`: callers queue while every one is busy, and the next statement takes
   * everything queued.
   */
  maxInFlight?: number;
  /** Appends per statement, at most; default 256. */
  maxBatch?: number;
}

interface Pending {
  readonly batch: NormalizedAppend;
  readonly key: string;
  resolve(result: AppendResult): void;
  reject(error: unknown): void;
}

/** Attempts of a statement that PostgreSQL chose as a deadlock victim (nothing was written). */
const DEADLOCK_ATTEMPTS = 3;

/**
 * Coalesces concurrent auto-commit appends into shared statements (see the module doc). Each
 * append is checked and committed on its own terms: a `ConcurrencyError`, a duplicate event id or
 * a validation error of one caller fails that caller only. Two appends to one aggregate never share
 * a statement (the later waits for the next), so per-aggregate order is the callers' order.
 *
 * Use it where many requests append to different aggregates at once and each would otherwise pay
 * its own commit; an append that must commit with other writes of yours belongs in your
 * transaction instead (`store.append(tx, …)`).
 *
 * @example
 * ```ts
 * import postgres from "postgres";
 * import process from "node:process";
 * import { AppendBatcher, noStream, PostgresStore } from "@eventsalsa/eventsalsa/store";
 * const sql = postgres(process.env.DATABASE_URL!, { max: 8 });
 * const batcher = new AppendBatcher(sql, new PostgresStore());
 * const payload = new TextEncoder().encode("{}");
 * const results = await Promise.all(
 *   ["o-1", "o-2", "o-3"].map((id) =>
 *     batcher.append(noStream(), [{ aggregateType: "Order", aggregateId: id, eventType: "Placed", payload }])
 *   ),
 * );
 * console.log(results.map((r) => r.globalPositions[0]));
 * ```
 */
export class AppendBatcher {
  readonly #sql: SqlExecutor;
  readonly #store: PostgresStore;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #inFlight = 0;
  /** Aggregates with an append in a statement now: their next append waits for it. */
  readonly #busy = new Set<string>();

  /** A batcher appending through `store` on the pool `sql`. */
  constructor(sql: SqlExecutor, store: PostgresStore, options: AppendBatcherOptions = {}) {
    const maxInFlight = options.maxInFlight ?? 8;
    const maxBatch = options.maxBatch ?? 256;
    for (const [name, value] of [["maxInFlight", maxInFlight], ["maxBatch", maxBatch]] as const) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`${name} must be a positive integer, got ${value}`);
      }
    }
    this.#sql = sql;
    this.#store = store;
    this.#maxInFlight = maxInFlight;
    this.#maxBatch = maxBatch;
  }

  /**
   * Appends `events` (one aggregate) if `expected` holds, committed by the time it resolves;
   * rejects with this call's own `ValidationError`, `ConcurrencyError` or
   * `DuplicateEventIdError`.
   *
   * @example
   * ```ts
   * import postgres from "postgres";
   * import process from "node:process";
   * import { any, AppendBatcher, PostgresStore } from "@eventsalsa/eventsalsa/store";
   * const batcher = new AppendBatcher(postgres(process.env.DATABASE_URL!), new PostgresStore());
   * await batcher.append(any(), [{ aggregateType: "Cart", aggregateId: "c-1", eventType: "Opened", payload: new Uint8Array() }]);
   * ```
   */
  append(expected: ExpectedVersion, events: readonly Event[]): Promise<AppendResult> {
    let batch: NormalizedAppend;
    try {
      batch = normalizeAppend(expected, events);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.#queue.push({
        batch,
        key: `${batch.aggregateType}\u0000${batch.aggregateId}`,
        resolve,
        reject,
      });
      this.#pump();
    });
  }

  /** Starts statements while there is work queued and a slot free. */
  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const taken = this.#take();
      if (taken.length === 0) return; // everything queued waits for an aggregate in flight
      for (const pending of taken) this.#busy.add(pending.key);
      this.#inFlight++;
      void this.#send(taken).finally(() => {
        for (const pending of taken) this.#busy.delete(pending.key);
        this.#inFlight--;
        this.#pump();
      });
    }
  }

  /** The next statement's appends: queue order, one per aggregate, up to `maxBatch`. */
  #take(): Pending[] {
    const taken: Pending[] = [];
    const keys = new Set<string>(this.#busy);
    const rest: Pending[] = [];
    for (const pending of this.#queue) {
      // A later append to an aggregate taken, skipped or in flight waits, keeping caller order.
      if (taken.length < this.#maxBatch && !keys.has(pending.key)) taken.push(pending);
      else rest.push(pending);
      keys.add(pending.key);
    }
    this.#queue = rest;
    return taken;
  }

  /**
   * Sends one statement; settles each caller. A duplicate event id fails the whole statement:
   * its owner is rejected and the others are sent again without it.
   */
  async #send(pendings: Pending[]): Promise<void> {
    let attempt = 0;
    while (pendings.length > 0) {
      let outcomes: Array<AppendResult | ConcurrencyError | null>;
      try {
        outcomes = await appendStreams(
          this.#store,
          this.#sql,
          pendings.map((p) => p.batch),
          false,
        );
      } catch (error) {
        // A duplicate event id, or a head created concurrently (`noStream`), fails the whole
        // statement: it is that caller's error only, and the others go again without it.
        const own = error instanceof DuplicateEventIdError || error instanceof ConcurrencyError;
        if (own && pendings.length > 1) {
          const owner = pendings.findIndex((p) =>
            p.batch.aggregateType === error.aggregateType &&
            p.batch.aggregateId === error.aggregateId
          );
          if (owner >= 0) {
            pendings[owner].reject(error);
            pendings = pendings.filter((_, i) => i !== owner);
            continue;
          }
        }
        const code = (error as { code?: unknown } | null)?.code;
        if (code === "40P01" && ++attempt < DEADLOCK_ATTEMPTS) continue;
        for (const pending of pendings) pending.reject(error);
        return;
      }
      outcomes.forEach((outcome, i) => {
        if (outcome instanceof ConcurrencyError) pendings[i].reject(outcome);
        else if (outcome === null) pendings[i].reject(new Error("append not written"));
        else pendings[i].resolve(outcome);
      });
      return;
    }
  }
}
