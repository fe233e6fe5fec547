import { ConcurrencyError, DuplicateEventIdError } from "../store/errors.ts";
import type { ExpectedVersion } from "../store/expected_version.ts";
import { iteratePages } from "../store/iterate.ts";
import type {
  AppendResult,
  Event,
  EventFilter,
  EventStore,
  IterateEventsOptions,
  PersistedEvent,
  Stream,
  StreamAppend,
  VersionRange,
} from "../store/types.ts";
import { normalizeAppends } from "../store/append_many.ts";
import {
  appendResult,
  checkAggregate,
  checkReadEvents,
  checkReadStream,
  normalizeAppend,
  type NormalizedAppend,
} from "../store/validation.ts";
import { parseIdentifier } from "../internal/sql_identifier.ts";
import { ValidationError } from "../store/errors.ts";

/**
 * Two in-memory transactions wait for each other's aggregate locks; like PostgreSQL, one of them is
 * chosen to fail so the other can go on.
 *
 * @example
 * ```ts
 * import { InMemoryDeadlockError } from "@eventsalsa/eventsalsa/testing";
 * const error = new InMemoryDeadlockError("Order/o-1");
 * console.log(error.name); // "InMemoryDeadlockError"
 * ```
 */
export class InMemoryDeadlockError extends Error {
  /** Stable error name. */
  override readonly name: string = "InMemoryDeadlockError";
  /** Creates the error for the lock that would have closed the cycle. */
  constructor(aggregate: string) {
    super(`deadlock detected waiting for the lock on ${aggregate}`);
  }
}

type State = "open" | "committed" | "rolledBack";

interface Lock {
  holder: InMemoryTransaction;
  waiters: Array<() => void>;
}

const keyOf = (type: string, id: string): string => `${type}\u0000${id}`;

function copyEvent(event: PersistedEvent): PersistedEvent {
  return {
    ...event,
    payload: event.payload.slice(),
    metadata: event.metadata === null ? null : structuredClone(event.metadata),
    createdAt: new Date(event.createdAt.getTime()),
  };
}

/** Index of the first event with position > `after` in a position-sorted array. */
function firstAfter(events: readonly PersistedEvent[], after: number): number {
  let lo = 0, hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (events[mid].globalPosition <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A transaction of the {@link InMemoryEventStore}: its writes are visible to itself at once and to
 * everyone else only after commit; a rollback makes them vanish (their positions stay unused,
 * like PostgreSQL's sequence). Other in-memory components join it through `onCommit`/`onRollback`.
 *
 * @example
 * ```ts
 * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
 * const store = new InMemoryEventStore();
 * await store.transaction(async (tx) => {
 *   tx.onCommit(() => console.log("committed"));
 * });
 * ```
 */
export class InMemoryTransaction {
  #state: State = "open";
  #aborted: string | null = null;
  /** Own uncommitted events, in position order. */
  readonly pendingEvents: PersistedEvent[] = [];
  /** Own uncommitted head versions. */
  readonly pendingHeads: Map<string, number> = new Map();
  /** Aggregate locks held until commit or rollback. */
  readonly locks: Set<string> = new Set();
  /** The lock this transaction is waiting for, for deadlock detection. */
  waitingFor: string | null = null;
  readonly #commitHooks: Array<() => void> = [];
  readonly #rollbackHooks: Array<() => void> = [];
  /** Notifications to deliver on commit: channel and payload. */
  readonly notifications: Array<[string, string]> = [];

  /** Whether the transaction is still open. */
  get isOpen(): boolean {
    return this.#state === "open";
  }

  /** Runs `hook` after a successful commit. */
  onCommit(hook: () => void): void {
    this.#commitHooks.push(hook);
  }

  /** Runs `hook` after a rollback. */
  onRollback(hook: () => void): void {
    this.#rollbackHooks.push(hook);
  }

  /** Throws unless the transaction can run statements (mirrors PostgreSQL's aborted state). */
  assertUsable(): void {
    if (this.#state !== "open") throw new Error(`transaction is already ${this.#state}`);
    if (this.#aborted !== null) {
      throw new Error(
        `current transaction is aborted (${this.#aborted}); roll it back before running more statements`,
      );
    }
  }

  /** Marks the transaction failed: every later statement throws, commit turns into rollback. */
  abort(reason: string): void {
    this.#aborted ??= reason;
  }

  /** Whether a statement failed inside this transaction. */
  get isAborted(): boolean {
    return this.#aborted !== null;
  }

  /** Ends the transaction; internal to the store. */
  finish(state: "committed" | "rolledBack"): void {
    this.#state = state;
    for (const hook of state === "committed" ? this.#commitHooks : this.#rollbackHooks) hook();
  }
}

/**
 * Options for {@link InMemoryEventStore}.
 *
 * @example
 * ```ts
 * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
 * const store = new InMemoryEventStore({ notifyChannel: "events" });
 * ```
 */
export interface InMemoryEventStoreOptions {
  /** Like `PostgresStore`'s: deliver `(channel, last position)` to listeners on commit. */
  notifyChannel?: string | null;
}

/**
 * The event store in memory, with the PostgreSQL store's semantics: the same validation and typed
 * errors, per-aggregate locks held until commit (so `noStream`/`exact` races have one winner and
 * `any()` races get contiguous versions), positions drawn at append time (so commits can make a
 * lower position visible after a higher one, and rollbacks leave holes), and notifications on
 * commit only. Methods take an {@link InMemoryTransaction} or the store itself (auto-commit).
 *
 * @example
 * ```ts
 * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
 * import { noStream } from "@eventsalsa/eventsalsa/store";
 * const store = new InMemoryEventStore();
 * await store.transaction((tx) =>
 *   store.append(tx, noStream(), [
 *     { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderPlaced", payload: new Uint8Array() },
 *   ])
 * );
 * console.log(await store.headVersion(store, "Order", "o-1")); // 1
 * ```
 */
export class InMemoryEventStore implements EventStore<InMemoryTransaction | InMemoryEventStore> {
  /** The notify channel, or null. */
  readonly notifyChannel: string | null;
  #events: PersistedEvent[] = [];
  #heads = new Map<string, number>();
  #eventIds = new Set<string>();
  #nextPosition = 1;
  #locks = new Map<string, Lock>();
  #listeners = new Map<string, Set<(payload: string) => void>>();

  /** Creates an empty store. */
  constructor(options: InMemoryEventStoreOptions = {}) {
    this.notifyChannel = options.notifyChannel == null ? null : (() => {
      try {
        return parseIdentifier(options.notifyChannel, "notifyChannel", { allowSchema: false })
          .name;
      } catch (error) {
        throw new ValidationError((error as Error).message);
      }
    })();
  }

  /**
   * Runs `work` in a transaction: commit when it resolves, rollback when it throws (the error is
   * rethrown). A transaction in which a statement failed is rolled back even if `work` resolves.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * const head = await store.transaction((tx) => store.headVersion(tx, "Order", "o-1"));
   * ```
   */
  async transaction<T>(work: (tx: InMemoryTransaction) => Promise<T>): Promise<T> {
    const tx = new InMemoryTransaction();
    let result: T;
    try {
      result = await work(tx);
    } catch (error) {
      this.#rollback(tx);
      throw error;
    }
    if (tx.isAborted) {
      this.#rollback(tx);
      throw new Error("transaction was aborted by a failed statement and has been rolled back");
    }
    this.#commit(tx);
    return result;
  }

  /**
   * Subscribes to notifications on `channel` (delivered after commit); returns the unsubscribe.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore({ notifyChannel: "events" });
   * const stop = store.listen("events", (position) => console.log("up to", position));
   * stop();
   * ```
   */
  listen(channel: string, callback: (payload: string) => void): () => void {
    let set = this.#listeners.get(channel);
    if (!set) this.#listeners.set(channel, set = new Set());
    set.add(callback);
    return () => set.delete(callback);
  }

  /**
   * Positions drawn by transactions that have neither committed nor rolled back yet, ascending.
   * Read-only; the worker's in-memory gap rule uses it the way the PostgreSQL adapter uses the
   * transaction snapshot: a missing position is a permanent hole once no open transaction that
   * was open when the hole was seen still holds it. Every transaction that drew a position holds
   * its aggregate's lock until it ends, so the lock holders are exactly the open appenders.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * console.log(store.inFlightPositions()); // []
   * ```
   */
  inFlightPositions(): number[] {
    const positions = new Set<number>();
    for (const lock of this.#locks.values()) {
      if (!lock.holder.isOpen) continue;
      for (const event of lock.holder.pendingEvents) positions.add(event.globalPosition);
    }
    return [...positions].sort((a, b) => a - b);
  }

  #commit(tx: InMemoryTransaction): void {
    for (const event of tx.pendingEvents) {
      const at = firstAfter(this.#events, event.globalPosition);
      this.#events.splice(at, 0, event);
      this.#eventIds.add(event.eventId);
    }
    for (const [key, version] of tx.pendingHeads) this.#heads.set(key, version);
    this.#release(tx);
    tx.finish("committed");
    for (const [channel, payload] of tx.notifications) {
      for (const listener of this.#listeners.get(channel) ?? []) listener(payload);
    }
  }

  #rollback(tx: InMemoryTransaction): void {
    if (!tx.isOpen) return;
    this.#release(tx);
    tx.finish("rolledBack");
  }

  #release(tx: InMemoryTransaction): void {
    for (const key of tx.locks) {
      const lock = this.#locks.get(key)!;
      const next = lock.waiters.shift();
      if (next) next();
      else this.#locks.delete(key);
    }
    tx.locks.clear();
  }

  async #lock(tx: InMemoryTransaction, key: string): Promise<boolean> {
    if (tx.locks.has(key)) return false;
    const lock = this.#locks.get(key);
    if (!lock) {
      this.#locks.set(key, { holder: tx, waiters: [] });
      tx.locks.add(key);
      return true;
    }
    // Wait-for cycle: the holder (transitively) waits for a lock this transaction holds.
    for (let holder: InMemoryTransaction | undefined = lock.holder; holder;) {
      if (holder === tx) throw new InMemoryDeadlockError(key.replace("\u0000", "/"));
      const waited: string | null = holder.waitingFor;
      holder = waited === null ? undefined : this.#locks.get(waited)?.holder;
    }
    tx.waitingFor = key;
    await new Promise<void>((resolve) => lock.waiters.push(resolve));
    tx.waitingFor = null;
    lock.holder = tx;
    tx.locks.add(key);
    return true;
  }

  #unlock(tx: InMemoryTransaction, key: string): void {
    const lock = this.#locks.get(key)!;
    tx.locks.delete(key);
    const next = lock.waiters.shift();
    if (next) next();
    else this.#locks.delete(key);
  }

  /**
   * Appends events to one aggregate if `expected` holds; see `PostgresStore.append`.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * import { any } from "@eventsalsa/eventsalsa/store";
   * const store = new InMemoryEventStore();
   * const result = await store.append(store, any(), [
   *   { aggregateType: "Cart", aggregateId: "c-1", eventType: "ItemAdded", payload: new Uint8Array([1]) },
   * ]);
   * ```
   */
  async append(
    tx: InMemoryTransaction | InMemoryEventStore,
    expected: ExpectedVersion,
    events: readonly Event[],
  ): Promise<AppendResult> {
    if (tx instanceof InMemoryEventStore) {
      // Auto-commit: the inner call validates, once.
      return await this.transaction((inner) => this.append(inner, expected, events));
    }
    return await this.#append(tx, normalizeAppend(expected, events));
  }

  async #append(tx: InMemoryTransaction, batch: NormalizedAppend): Promise<AppendResult> {
    tx.assertUsable();
    const { aggregateType, aggregateId } = batch;
    const key = keyOf(aggregateType, aggregateId);
    const acquired = await this.#lock(tx, key);
    tx.assertUsable();
    const pending = tx.pendingHeads.get(key);
    const head = pending ?? this.#heads.get(key);
    const exists = head !== undefined;
    const current = head ?? 0;
    const ok = batch.expected.kind === "any" ||
      (batch.expected.kind === "noStream" && !exists) ||
      (batch.expected.kind === "streamExists" && exists) ||
      (batch.expected.kind === "exact" && exists && current === batch.expected.version);
    if (!ok) {
      // Like PostgreSQL: a failed conditional write takes no lock and leaves the transaction usable.
      if (acquired) this.#unlock(tx, key);
      throw new ConcurrencyError(aggregateType, aggregateId, batch.expected, current);
    }
    const taken = new Set(tx.pendingEvents.map((e) => e.eventId));
    for (const event of batch.events) {
      if (this.#eventIds.has(event.eventId) || taken.has(event.eventId)) {
        tx.abort("duplicate event id");
        throw new DuplicateEventIdError(aggregateType, aggregateId, event.eventId);
      }
    }
    const result = appendResult(batch, current, batch.events.map(() => this.#nextPosition++));
    tx.pendingEvents.push(...result.events.map(copyEvent));
    tx.pendingHeads.set(key, result.toVersion);
    if (this.notifyChannel !== null) {
      tx.notifications.push([this.notifyChannel, String(result.globalPositions.at(-1))]);
    }
    return result;
  }

  /**
   * Appends to several aggregates, all or nothing; see `PostgresStore.appendMany`.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * import { any, noStream } from "@eventsalsa/eventsalsa/store";
   * const store = new InMemoryEventStore();
   * const payload = new Uint8Array([1]);
   * const [a, b] = await store.appendMany(store, [
   *   { expected: any(), events: [{ aggregateType: "A", aggregateId: "1", eventType: "E", payload }] },
   *   { expected: noStream(), events: [{ aggregateType: "B", aggregateId: "1", eventType: "E", payload }] },
   * ]);
   * ```
   */
  async appendMany(
    tx: InMemoryTransaction | InMemoryEventStore,
    appends: readonly StreamAppend[],
  ): Promise<AppendResult[]> {
    if (tx instanceof InMemoryEventStore) {
      return await this.transaction((inner) => this.appendMany(inner, appends));
    }
    const batches = normalizeAppends(appends);
    tx.assertUsable();
    // Like PostgreSQL's statement: lock every existing head in key order, check them all, and
    // write only when every check passes (a failed check keeps no lock it took).
    const keys = batches.map((b) => keyOf(b.aggregateType, b.aggregateId));
    const acquired: string[] = [];
    for (const key of [...keys].sort()) {
      if (await this.#lock(tx, key)) acquired.push(key);
      tx.assertUsable();
    }
    for (const [i, batch] of batches.entries()) {
      const head = tx.pendingHeads.get(keys[i]) ?? this.#heads.get(keys[i]);
      const { expected } = batch;
      const ok = expected.kind === "any" ||
        (expected.kind === "noStream" && head === undefined) ||
        (expected.kind === "streamExists" && head !== undefined) ||
        (expected.kind === "exact" && head !== undefined && head === expected.version);
      if (!ok) {
        for (const key of acquired) this.#unlock(tx, key);
        throw new ConcurrencyError(batch.aggregateType, batch.aggregateId, expected, head ?? 0);
      }
    }
    const results: AppendResult[] = [];
    for (const batch of batches) {
      results.push(await this.#append(tx, batch));
    }
    return results;
  }

  /** Committed events plus the transaction's own, in position order. */
  #visible(tx: InMemoryTransaction | InMemoryEventStore): readonly PersistedEvent[] {
    if (tx instanceof InMemoryEventStore || tx.pendingEvents.length === 0) return this.#events;
    tx.assertUsable();
    return [...this.#events, ...tx.pendingEvents].sort((a, b) =>
      a.globalPosition - b.globalPosition
    );
  }

  /**
   * Reads an aggregate's events; see `PostgresStore.readStream`.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * const stream = await store.readStream(store, "Order", "o-1");
   * ```
   */
  readStream(
    tx: InMemoryTransaction | InMemoryEventStore,
    aggregateType: string,
    aggregateId: string,
    range?: VersionRange,
  ): Promise<Stream> {
    try {
      const args = checkReadStream(aggregateType, aggregateId, range);
      const events = this.#visible(tx)
        .filter((e) =>
          e.aggregateType === args.aggregateType && e.aggregateId === args.aggregateId &&
          e.aggregateVersion >= args.fromVersion && e.aggregateVersion <= args.toVersion
        )
        .sort((a, b) => a.aggregateVersion - b.aggregateVersion)
        .map(copyEvent);
      return Promise.resolve({
        aggregateType: args.aggregateType,
        aggregateId: args.aggregateId,
        events,
        version: events.length === 0 ? 0 : events[events.length - 1].aggregateVersion,
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Reads the global log after a position; see `PostgresStore.readEvents`.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * const page = await store.readEvents(store, 0, 100);
   * ```
   */
  readEvents(
    tx: InMemoryTransaction | InMemoryEventStore,
    afterPosition: number,
    limit: number,
    filter?: EventFilter,
  ): Promise<PersistedEvent[]> {
    try {
      const args = checkReadEvents(afterPosition, limit, filter);
      const types = args.aggregateTypes === null ? null : new Set(args.aggregateTypes);
      const visible = this.#visible(tx);
      const out: PersistedEvent[] = [];
      for (let i = firstAfter(visible, args.afterPosition); i < visible.length; i++) {
        if (out.length >= args.limit) break;
        if (types === null || types.has(visible[i].aggregateType)) out.push(copyEvent(visible[i]));
      }
      return Promise.resolve(out);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The highest visible position, or 0.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * console.log(await store.latestPosition(store)); // 0
   * ```
   */
  latestPosition(tx: InMemoryTransaction | InMemoryEventStore): Promise<number> {
    try {
      const visible = this.#visible(tx);
      return Promise.resolve(visible.length === 0 ? 0 : visible[visible.length - 1].globalPosition);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The aggregate's head version as `tx` sees it, or 0.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * console.log(await store.headVersion(store, "Order", "o-1")); // 0
   * ```
   */
  headVersion(
    tx: InMemoryTransaction | InMemoryEventStore,
    aggregateType: string,
    aggregateId: string,
  ): Promise<number> {
    try {
      const args = checkAggregate(aggregateType, aggregateId);
      const key = keyOf(args.aggregateType, args.aggregateId);
      if (tx instanceof InMemoryTransaction) tx.assertUsable();
      const own = tx instanceof InMemoryTransaction ? tx.pendingHeads.get(key) : undefined;
      return Promise.resolve(own ?? this.#heads.get(key) ?? 0);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Iterates the global log page by page.
   *
   * @example
   * ```ts
   * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
   * const store = new InMemoryEventStore();
   * for await (const event of store.iterateEvents(store)) console.log(event.globalPosition);
   * ```
   */
  iterateEvents(
    tx: InMemoryTransaction | InMemoryEventStore,
    options?: IterateEventsOptions,
  ): AsyncIterable<PersistedEvent> {
    return iteratePages(
      (after, limit, filter) => this.readEvents(tx, after, limit, filter),
      options,
    );
  }
}
