import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  ConcurrencyError,
  DuplicateEventIdError,
  NoEventsError,
  ValidationError,
} from "../store/errors.ts";
import {
  any,
  exact,
  type ExpectedVersion,
  noStream,
  streamExists,
} from "../store/expected_version.ts";
import { partitionName } from "../store/migration.ts";
import type { AppendResult, Event, EventStore, PersistedEvent } from "../store/types.ts";

/**
 * One store under test, opened fresh for every scenario by a {@link StoreHarnessFactory}.
 *
 * @example
 * ```ts
 * import type { StoreHarness } from "@eventsalsa/eventsalsa/testing";
 * async function count<Tx>(h: StoreHarness<Tx>): Promise<number> {
 *   return await h.transaction((tx) => h.store.latestPosition(tx));
 * }
 * ```
 */
export interface StoreHarness<Tx> {
  /** The store, configured with {@link StoreHarness.notifyChannel} as its notify channel. */
  readonly store: EventStore<Tx>;
  /** Commits when `work` resolves, rolls back (and rethrows) when it throws. */
  transaction<T>(work: (tx: Tx) => Promise<T>): Promise<T>;
  /** The channel the store notifies on. */
  readonly notifyChannel: string;
  /** Subscribes to the store's notifications; resolves once listening, to an unsubscribe. */
  listen(onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  /** Null when several transactions can run at once; otherwise why concurrency scenarios skip. */
  readonly concurrencySkipReason: string | null;
  /** Raw SQL on the backing database, for PostgreSQL-only checks; absent for in-memory stores. */
  readonly rawQuery?: (text: string, params?: unknown[]) => Promise<unknown[][]>;
  /** Releases everything. */
  close(): Promise<void>;
}

/**
 * How a scenario wants the store set up. Factories that cannot honour an option return `null`,
 * and the scenario is skipped with a printed reason.
 *
 * @example
 * ```ts
 * import type { StoreHarnessOptions } from "@eventsalsa/eventsalsa/testing";
 * const options: StoreHarnessOptions = { partitioning: { partitionSize: 5, initialPartitions: 3 } };
 * ```
 */
export interface StoreHarnessOptions {
  /** Native range partitioning of the events table. */
  partitioning?: { partitionSize: number; initialPartitions: number };
}

/**
 * Opens a fresh, empty store for one scenario, or returns null when `options` is not supported.
 *
 * @example
 * ```ts
 * import { InMemoryEventStore, type StoreHarnessFactory } from "@eventsalsa/eventsalsa/testing";
 * const factory: StoreHarnessFactory<unknown> = () => Promise.resolve(null);
 * ```
 */
export type StoreHarnessFactory<Tx> = (
  options: StoreHarnessOptions,
) => Promise<StoreHarness<Tx> | null>;

const encoder = new TextEncoder();

function event(aggregateType: string, aggregateId: string, extra: Partial<Event> = {}): Event {
  return {
    aggregateType,
    aggregateId,
    eventType: "Happened",
    payload: encoder.encode(JSON.stringify({ at: aggregateId })),
    ...extra,
  };
}

function events(type: string, id: string, count: number): Event[] {
  return Array.from({ length: count }, (_, i) => event(type, id, { eventType: `E${i + 1}` }));
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A promise with its resolve function, for holding a transaction open. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** A metadata object nested `levels` deep (the object itself is level 1). */
function nestedMetadata(levels: number): Record<string, unknown> {
  const root: Record<string, unknown> = { level: 1 };
  let current = root;
  for (let level = 2; level <= levels; level++) {
    const child: Record<string, unknown> = { level };
    current.child = child;
    current = child;
  }
  return root;
}

type Outcome = "ok" | "conflict" | "other";

/**
 * Registers the store contract (`describe`/`it` from `node:test`) against any implementation:
 * the 40 acceptance scenarios of the Go library's store tests, concurrency races, NOTIFY on
 * commit only, binary payloads, validation and the duplicate-event-id rule. Runs under `deno test`
 * and `bun test`.
 *
 * @example
 * ```ts
 * import {
 *   eventStoreContract,
 *   InMemoryEventStore,
 *   type InMemoryTransaction,
 * } from "@eventsalsa/eventsalsa/testing";
 *
 * eventStoreContract<InMemoryTransaction | InMemoryEventStore>("my store", (options) => {
 *   if (options.partitioning) return Promise.resolve(null);
 *   const store = new InMemoryEventStore({ notifyChannel: "events" });
 *   return Promise.resolve({
 *     store,
 *     transaction: (work) => store.transaction(work),
 *     notifyChannel: "events",
 *     listen: (onNotify) => {
 *       const stop = store.listen("events", onNotify);
 *       return Promise.resolve(() => Promise.resolve(stop()));
 *     },
 *     concurrencySkipReason: null,
 *     close: () => Promise.resolve(),
 *   });
 * });
 * ```
 */
export function eventStoreContract<Tx>(name: string, factory: StoreHarnessFactory<Tx>): void {
  type Scenario = (h: StoreHarness<Tx>, store: EventStore<Tx>) => Promise<void>;
  type ItContext = { skip(message?: string): void };

  const skip = (t: ItContext, reason: string) => {
    console.log(`skipped (${name}): ${reason}`);
    t.skip(reason);
  };

  const scenario = (
    title: string,
    body: Scenario,
    need: { concurrency?: boolean; raw?: boolean; options?: StoreHarnessOptions } = {},
  ) =>
    it(title, async (t: ItContext) => {
      const h = await factory(need.options ?? {});
      if (h === null) return skip(t, "this store does not support partitioning");
      try {
        if (need.concurrency && h.concurrencySkipReason !== null) {
          return skip(t, h.concurrencySkipReason);
        }
        if (need.raw && !h.rawQuery) return skip(t, "needs raw SQL on PostgreSQL");
        await body(h, h.store);
      } finally {
        await h.close();
      }
    });

  const append = (h: StoreHarness<Tx>, expected: ExpectedVersion, batch: Event[]) =>
    h.transaction((tx) => h.store.append(tx, expected, batch));

  async function outcome(promise: Promise<unknown>): Promise<Outcome> {
    try {
      await promise;
      return "ok";
    } catch (error) {
      return error instanceof ConcurrencyError ? "conflict" : "other";
    }
  }

  const count = (outcomes: Outcome[], which: Outcome) => outcomes.filter((o) => o === which).length;

  describe(`event store contract: ${name}`, () => {
    describe("append and read", () => {
      scenario("1. noStream with 2 events: versions 1..2, consecutive positions", async (h) => {
        const result = await append(h, noStream(), events("Order", "o-1", 2));
        assert.deepEqual(result.events.map((e) => e.aggregateVersion), [1, 2]);
        assert.equal(result.globalPositions[1], result.globalPositions[0] + 1);
        assert.equal(result.fromVersion, 0);
        assert.equal(result.toVersion, 2);
        assert.deepEqual(result.events.map((e) => e.globalPosition), result.globalPositions);
      });

      scenario("2. a raw duplicate (type, id, version) insert is a unique violation", async (h) => {
        await append(h, noStream(), events("Order", "o-1", 1));
        await assert.rejects(
          h.rawQuery!(
            `INSERT INTO events (aggregate_type, aggregate_id, aggregate_version, event_id, event_type, payload)
             VALUES ('Order', 'o-1', 1, $1, 'Dup', '\\x00')`,
            [crypto.randomUUID()],
          ),
          (error: { code?: string }) => error.code === "23505",
        );
      }, { raw: true });

      scenario("3. two any() appends to two aggregates in one transaction", async (h, store) => {
        await h.transaction(async (tx) => {
          await store.append(tx, any(), [event("A", "1")]);
          await store.append(tx, any(), [event("B", "1")]);
        });
        const read = await h.transaction((tx) => store.readEvents(tx, 0, 10));
        assert.equal(read.length, 2);
        assert.ok(read[0].globalPosition < read[1].globalPosition);
        assert.deepEqual(read.map((e) => e.aggregateType), ["A", "B"]);
      });

      scenario(
        "4. a checkpoint at the highest position seen can skip a later commit",
        async (h, store) => {
          const holdA = gate();
          let appendedA!: AppendResult;
          const a = h.transaction(async (tx) => {
            appendedA = await store.append(tx, any(), [event("A", "1")]);
            await holdA.promise;
          });
          await waitFor(() => appendedA !== undefined, "transaction A to append");
          const b = await append(h, any(), [event("B", "1")]);
          assert.ok(appendedA.globalPositions[0] < b.globalPositions[0]);
          const seen = await h.transaction((tx) => store.readEvents(tx, 0, 10));
          assert.deepEqual(seen.map((e) => e.globalPosition), b.globalPositions);
          const naiveCheckpoint = seen[seen.length - 1].globalPosition;
          holdA.open();
          await a;
          assert.deepEqual(
            await h.transaction((tx) => store.readEvents(tx, naiveCheckpoint, 10)),
            [],
          );
          const all = await h.transaction((tx) => store.readEvents(tx, 0, 10));
          assert.deepEqual(all.map((e) => e.globalPosition), [
            appendedA.globalPositions[0],
            b.globalPositions[0],
          ]);
        },
        { concurrency: true },
      );

      scenario("5. a rolled-back append leaves a permanent hole", async (h, store) => {
        let rolledBack!: AppendResult;
        await assert.rejects(
          h.transaction(async (tx) => {
            rolledBack = await store.append(tx, any(), [event("A", "1")]);
            throw new Error("roll back");
          }),
          /roll back/,
        );
        const committed = await append(h, any(), [event("B", "1")]);
        assert.ok(rolledBack.globalPositions[0] < committed.globalPositions[0]);
        const all = await h.transaction((tx) => store.readEvents(tx, 0, 10));
        assert.deepEqual(all.map((e) => e.globalPosition), committed.globalPositions);
        assert.equal(
          await h.transaction((tx) => store.latestPosition(tx)),
          committed.globalPositions[0],
        );
        assert.equal(await h.transaction((tx) => store.headVersion(tx, "A", "1")), 0);
      });

      scenario("6. pagination in pages of 2 without overlap", async (h, store) => {
        for (let i = 0; i < 5; i++) await append(h, any(), [event("P", `p-${i}`)]);
        const pages: number[][] = [];
        let after = 0;
        for (;;) {
          const page = await h.transaction((tx) => store.readEvents(tx, after, 2));
          if (page.length === 0) break;
          pages.push(page.map((e) => e.globalPosition));
          after = page[page.length - 1].globalPosition;
        }
        assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
        assert.equal(new Set(pages.flat()).size, 5);
      });

      scenario("7. head version tracking: any(2) then any(1)", async (h, store) => {
        await append(h, any(), events("T", "t", 2));
        assert.equal(await h.transaction((tx) => store.headVersion(tx, "T", "t")), 2);
        await append(h, any(), events("T", "t", 1));
        assert.equal(await h.transaction((tx) => store.headVersion(tx, "T", "t")), 3);
        const stream = await h.transaction((tx) => store.readStream(tx, "T", "t"));
        assert.deepEqual(stream.events.map((e) => e.aggregateVersion), [1, 2, 3]);
      });

      scenario("8. head versions of several aggregates", async (h, store) => {
        await append(h, any(), [event("T", "a")]);
        await append(h, any(), [event("T", "b")]);
        assert.equal(await h.transaction((tx) => store.headVersion(tx, "T", "a")), 1);
        assert.equal(await h.transaction((tx) => store.headVersion(tx, "T", "b")), 1);
        if (h.rawQuery) {
          const rows = await h.rawQuery("SELECT count(*)::int FROM aggregate_heads");
          assert.equal(rows[0][0], 2);
        }
      });

      scenario("9. readStream: the full stream", async (h, store) => {
        await append(h, noStream(), events("S", "s", 3));
        const stream = await h.transaction((tx) => store.readStream(tx, "S", "s"));
        assert.equal(stream.events.length, 3);
        assert.equal(stream.version, 3);
        assert.equal(stream.aggregateType, "S");
        assert.equal(stream.aggregateId, "s");
        assert.deepEqual(stream.events.map((e) => e.aggregateVersion), [1, 2, 3]);
        assert.deepEqual(stream.events.map((e) => e.eventType), ["E1", "E2", "E3"]);
      });

      scenario("10. readStream from version 2", async (h, store) => {
        await append(h, noStream(), events("S", "s", 3));
        const stream = await h.transaction((tx) =>
          store.readStream(tx, "S", "s", { fromVersion: 2 })
        );
        assert.deepEqual(stream.events.map((e) => e.aggregateVersion), [2, 3]);
        assert.equal(stream.version, 3);
      });

      scenario("11. readStream to version 2", async (h, store) => {
        await append(h, noStream(), events("S", "s", 3));
        const stream = await h.transaction((tx) =>
          store.readStream(tx, "S", "s", { toVersion: 2 })
        );
        assert.deepEqual(stream.events.map((e) => e.aggregateVersion), [1, 2]);
        assert.equal(stream.version, 2);
      });

      scenario("12. readStream window 2..3 of 4", async (h, store) => {
        await append(h, noStream(), events("S", "s", 4));
        const stream = await h.transaction((tx) =>
          store.readStream(tx, "S", "s", { fromVersion: 2, toVersion: 3 })
        );
        assert.equal(stream.events.length, 2);
        assert.equal(stream.version, 3);
      });

      scenario("13. readStream of an unknown aggregate is empty, version 0", async (h, store) => {
        const stream = await h.transaction((tx) => store.readStream(tx, "S", "nobody"));
        assert.deepEqual(stream.events, []);
        assert.equal(stream.version, 0);
        assert.equal(stream.aggregateId, "nobody");
      });

      scenario("14. readStream does not mix aggregates", async (h, store) => {
        await append(h, noStream(), events("S", "a", 2));
        await append(h, noStream(), events("S", "b", 1));
        const a = await h.transaction((tx) => store.readStream(tx, "S", "a"));
        const b = await h.transaction((tx) => store.readStream(tx, "S", "b"));
        assert.equal(a.events.length, 2);
        assert.equal(b.events.length, 1);
        assert.ok(a.events.every((e) => e.aggregateId === "a"));
      });

      scenario(
        "15. readStream orders by version with other events interleaved",
        async (h, store) => {
          await append(h, noStream(), [event("S", "a", { eventType: "First" })]);
          await append(h, noStream(), [event("S", "other")]);
          await append(h, exact(1), [event("S", "a", { eventType: "Second" })]);
          const stream = await h.transaction((tx) => store.readStream(tx, "S", "a"));
          assert.deepEqual(stream.events.map((e) => e.aggregateVersion), [1, 2]);
          assert.deepEqual(stream.events.map((e) => e.eventType), ["First", "Second"]);
        },
      );
    });

    describe("expected versions", () => {
      scenario("16. noStream twice: the second conflicts", async (h) => {
        await append(h, noStream(), [event("U", "1")]);
        await assert.rejects(append(h, noStream(), [event("U", "1")]), ConcurrencyError);
      });

      scenario("17. exact: noStream, exact(1), exact(1) conflicts, exact(2)", async (h) => {
        await append(h, noStream(), [event("U", "1")]);
        assert.equal((await append(h, exact(1), [event("U", "1")])).toVersion, 2);
        await assert.rejects(append(h, exact(1), [event("U", "1")]), (error: unknown) => {
          assert.ok(error instanceof ConcurrencyError);
          assert.equal(error.actualVersion, 2);
          assert.deepEqual(error.expected, exact(1));
          assert.equal(error.aggregateId, "1");
          return true;
        });
        assert.equal((await append(h, exact(2), [event("U", "1")])).toVersion, 3);
      });

      scenario("18. exact(1) on a missing aggregate conflicts", async (h) => {
        await assert.rejects(append(h, exact(1), [event("U", "none")]), (error: unknown) => {
          assert.ok(error instanceof ConcurrencyError);
          assert.equal(error.actualVersion, 0);
          return true;
        });
      });

      scenario("19. exact(0) creates; a second exact(0) conflicts", async (h) => {
        assert.equal((await append(h, exact(0), [event("U", "1")])).toVersion, 1);
        await assert.rejects(append(h, exact(0), [event("U", "1")]), ConcurrencyError);
      });

      scenario("20. any() on a new and on an existing aggregate", async (h) => {
        assert.equal((await append(h, any(), [event("U", "1")])).toVersion, 1);
        assert.equal((await append(h, any(), [event("U", "1")])).toVersion, 2);
      });

      scenario("21. uniqueness by reservation aggregate", async (h) => {
        const reserve = () =>
          append(h, noStream(), [
            event("EmailReservation", "ada@example.com", { eventType: "Reserved" }),
          ]);
        await reserve();
        await assert.rejects(reserve(), ConcurrencyError);
      });

      scenario(
        "streamExists: conflicts on a missing aggregate, appends to an existing one",
        async (h) => {
          await assert.rejects(
            append(h, streamExists(), [event("U", "1")]),
            (error: unknown) => error instanceof ConcurrencyError && error.actualVersion === 0,
          );
          await append(h, noStream(), [event("U", "1")]);
          assert.equal((await append(h, streamExists(), events("U", "1", 2))).toVersion, 3);
        },
      );

      scenario(
        "a conflict writes nothing, draws no position and leaves the transaction usable",
        async (h, store) => {
          const first = await append(h, noStream(), [event("U", "1")]);
          await h.transaction(async (tx) => {
            await assert.rejects(store.append(tx, noStream(), [event("U", "1")]), ConcurrencyError);
            await assert.rejects(store.append(tx, exact(7), [event("U", "1")]), ConcurrencyError);
            await store.append(tx, exact(1), [event("U", "1")]);
          });
          const next = await append(h, any(), [event("U", "2")]);
          const stream = await h.transaction((tx) => store.readStream(tx, "U", "1"));
          assert.equal(stream.version, 2);
          // Two conflicts drew no positions: only the successful append in between used one.
          assert.equal(next.globalPositions[0], first.globalPositions[0] + 2);
        },
      );
    });

    describe("appendMany: several aggregates, all or nothing", () => {
      const many = (h: StoreHarness<Tx>, appends: Parameters<EventStore<Tx>["appendMany"]>[1]) =>
        h.transaction((tx) => h.store.appendMany(tx, appends));

      scenario("results in input order, each stream's versions consecutive", async (h, store) => {
        await append(h, noStream(), events("Acct", "a", 3));
        const [a, b, c] = await many(h, [
          { expected: exact(3), events: events("Acct", "a", 2) },
          { expected: noStream(), events: events("Acct", "b", 1) },
          { expected: any(), events: events("Acct", "c", 3) },
        ]);
        assert.deepEqual([a.fromVersion, a.toVersion], [3, 5]);
        assert.deepEqual([b.fromVersion, b.toVersion], [0, 1]);
        assert.deepEqual(c.events.map((e) => e.aggregateVersion), [1, 2, 3]);
        for (const result of [a, b, c]) {
          for (let i = 1; i < result.globalPositions.length; i++) {
            assert.ok(result.globalPositions[i] > result.globalPositions[i - 1]);
          }
        }
        const stream = await h.transaction((tx) => store.readStream(tx, "Acct", "a"));
        assert.deepEqual(stream.events.map((e) => e.eventType), ["E1", "E2", "E3", "E1", "E2"]);
        assert.deepEqual(
          stream.events.slice(3).map((e) => e.globalPosition),
          a.globalPositions,
        );
      });

      scenario(
        "one failed expectation: its ConcurrencyError, nothing written, no position drawn",
        async (h, store) => {
          const first = await append(h, noStream(), [event("Acct", "a")]);
          await h.transaction(async (tx) => {
            await assert.rejects(
              store.appendMany(tx, [
                { expected: any(), events: [event("Acct", "x")] },
                { expected: exact(5), events: [event("Acct", "a")] },
                { expected: noStream(), events: [event("Acct", "y")] },
              ]),
              (error: unknown) => {
                assert.ok(error instanceof ConcurrencyError);
                assert.equal(error.aggregateId, "a");
                assert.equal(error.actualVersion, 1);
                return true;
              },
            );
            // The transaction stays usable, like a single append's conflict.
            await store.append(tx, exact(1), [event("Acct", "a")]);
          });
          for (const id of ["x", "y"]) {
            assert.equal(await h.transaction((tx) => store.headVersion(tx, "Acct", id)), 0);
          }
          const next = await append(h, any(), [event("Acct", "z")]);
          assert.equal(next.globalPositions[0], first.globalPositions[0] + 2);
        },
      );

      scenario("streamExists and noStream checked per stream", async (h) => {
        await append(h, noStream(), [event("Acct", "a")]);
        await assert.rejects(
          many(h, [
            { expected: streamExists(), events: [event("Acct", "a")] },
            { expected: noStream(), events: [event("Acct", "a2")] },
            { expected: streamExists(), events: [event("Acct", "missing")] },
          ]),
          (error: unknown) =>
            error instanceof ConcurrencyError && error.aggregateId === "missing" &&
            error.actualVersion === 0,
        );
        const [a] = await many(h, [{ expected: streamExists(), events: [event("Acct", "a")] }]);
        assert.equal(a.toVersion, 2);
      });

      scenario("bad input is refused before anything is written", async (h, store) => {
        await assert.rejects(many(h, []), NoEventsError);
        await assert.rejects(
          many(h, [
            { expected: any(), events: [event("Acct", "a")] },
            { expected: any(), events: [event("Acct", "a")] },
          ]),
          ValidationError,
        );
        await assert.rejects(
          many(h, [
            { expected: any(), events: [event("Acct", "a")] },
            { expected: any(), events: [] },
          ]),
          NoEventsError,
        );
        await assert.rejects(
          many(h, "nope" as unknown as Parameters<EventStore<Tx>["appendMany"]>[1]),
          ValidationError,
        );
        assert.equal(await h.transaction((tx) => store.latestPosition(tx)), 0);
      });

      scenario("a duplicate event id fails the whole call", async (h, store) => {
        const eventId = crypto.randomUUID();
        await append(h, any(), [event("Acct", "a", { eventId })]);
        await assert.rejects(
          many(h, [
            { expected: any(), events: [event("Acct", "b")] },
            { expected: any(), events: [event("Acct", "c", { eventId })] },
          ]),
          DuplicateEventIdError,
        );
        assert.equal(await h.transaction((tx) => store.headVersion(tx, "Acct", "b")), 0);
      });

      scenario(
        "concurrent transfers between the same accounts: no deadlock, versions add up",
        async (h, store) => {
          const ids = ["a", "b", "c", "d"];
          for (const id of ids) await append(h, noStream(), [event("Acct", id)]);
          let ok = 0;
          await Promise.all(Array.from({ length: 8 }, async (_, w) => {
            for (let i = 0; i < 10; i++) {
              // Each writer touches two accounts, in its own order.
              const pair = [ids[(w + i) % 4], ids[(w + i + 1 + (w % 3)) % 4]];
              if (pair[0] === pair[1]) continue;
              const result = await outcome(
                h.transaction((tx) =>
                  store.appendMany(
                    tx,
                    pair.map((id) => ({ expected: any(), events: [event("Acct", id)] })),
                  )
                ),
              );
              assert.equal(result, "ok");
              ok++;
            }
          }));
          let total = 0;
          for (const id of ids) {
            total += await h.transaction((tx) => store.headVersion(tx, "Acct", id));
          }
          assert.equal(total, ids.length + 2 * ok);
        },
        { concurrency: true },
      );
    });

    describe("concurrency", () => {
      const race = async (
        writers: number,
        run: (i: number) => Promise<unknown>,
      ) => {
        const start = gate();
        const all = Array.from(
          { length: writers },
          (_, i) => start.promise.then(() => outcome(run(i))),
        );
        start.open();
        return await Promise.all(all);
      };

      scenario("22. 50 writers on noStream: exactly one wins", async (h, store) => {
        const outcomes = await race(50, () => append(h, noStream(), [event("R", "r")]));
        assert.equal(count(outcomes, "ok"), 1);
        assert.equal(count(outcomes, "conflict"), 49);
        const stream = await h.transaction((tx) => store.readStream(tx, "R", "r"));
        assert.deepEqual(stream.events.map((e) => e.aggregateVersion), [1]);
      }, { concurrency: true });

      scenario("23. 50 writers on exact(0): exactly one wins", async (h) => {
        const outcomes = await race(50, () => append(h, exact(0), [event("R", "r")]));
        assert.equal(count(outcomes, "ok"), 1);
        assert.equal(count(outcomes, "conflict"), 49);
      }, { concurrency: true });

      scenario("24. 50 writers on exact(1): exactly one wins", async (h, store) => {
        await append(h, noStream(), [event("R", "r")]);
        const outcomes = await race(50, () => append(h, exact(1), [event("R", "r")]));
        assert.equal(count(outcomes, "ok"), 1);
        assert.equal(count(outcomes, "conflict"), 49);
        const stream = await h.transaction((tx) => store.readStream(tx, "R", "r"));
        assert.equal(stream.version, 2);
        assert.equal(stream.events.length, 2);
      }, { concurrency: true });

      scenario("25. 50 any() writers x 3 events: versions 1..150, contiguous", async (h, store) => {
        const results: AppendResult[] = [];
        const outcomes = await race(50, async () => {
          results.push(await append(h, any(), events("R", "r", 3)));
        });
        assert.equal(count(outcomes, "ok"), 50);
        for (const r of results) {
          assert.equal(r.toVersion - r.fromVersion, 3);
          assert.deepEqual(r.events.map((e) => e.aggregateVersion), [
            r.fromVersion + 1,
            r.fromVersion + 2,
            r.fromVersion + 3,
          ]);
        }
        const stream = await h.transaction((tx) => store.readStream(tx, "R", "r"));
        assert.deepEqual(
          stream.events.map((e) => e.aggregateVersion),
          Array.from({ length: 150 }, (_, i) => i + 1),
        );
      }, { concurrency: true });

      scenario("26. a rollback restores the head", async (h) => {
        await assert.rejects(
          h.transaction(async (tx) => {
            await h.store.append(tx, noStream(), [event("R", "r")]);
            throw new Error("roll back");
          }),
          /roll back/,
        );
        assert.equal((await append(h, noStream(), [event("R", "r")])).toVersion, 1);
      });

      scenario(
        "27. 40 any() writers, half roll back: 20 commits, versions contiguous",
        async (h, store) => {
          const outcomes = await race(40, (i) =>
            h.transaction(async (tx) => {
              await store.append(tx, any(), events("R", "r", 2));
              if (i % 2 === 1) throw new Error("roll back");
            }));
          assert.equal(count(outcomes, "ok"), 20);
          const stream = await h.transaction((tx) => store.readStream(tx, "R", "r"));
          assert.equal(stream.version, 40);
          assert.deepEqual(
            stream.events.map((e) => e.aggregateVersion),
            Array.from({ length: 40 }, (_, i) => i + 1),
          );
        },
        { concurrency: true },
      );

      scenario("28. 10 aggregates x 10 any() writers: no errors", async (h, store) => {
        const outcomes = await race(100, (i) => append(h, any(), [event("M", `m-${i % 10}`)]));
        assert.equal(count(outcomes, "ok"), 100);
        for (let s = 0; s < 10; s++) {
          const stream = await h.transaction((tx) => store.readStream(tx, "M", `m-${s}`));
          assert.equal(stream.version, 10);
          assert.equal(stream.events.length, 10);
        }
      }, { concurrency: true });

      scenario("29. variable batch sizes run concurrently sum up", async (h, store) => {
        const sizes = [1, 2, 3, 5, 8, 1, 4, 2, 6, 3];
        const results: AppendResult[] = [];
        await race(sizes.length, async (i) => {
          results.push(await append(h, any(), events("V", "v", sizes[i])));
        });
        assert.equal(results.length, sizes.length);
        for (const r of results) assert.equal(r.toVersion - r.fromVersion, r.events.length);
        assert.deepEqual(results.map((r) => r.events.length).sort(), [...sizes].sort());
        assert.equal((await h.transaction((tx) => store.readStream(tx, "V", "v"))).version, 35);
      }, { concurrency: true });
    });

    describe("notifications", () => {
      scenario("30. one notification per committed append, payload = last position", async (h) => {
        const received: string[] = [];
        const stop = await h.listen((payload) => received.push(payload));
        try {
          const first = await append(h, noStream(), events("N", "n", 2));
          const second = await append(h, exact(2), events("N", "n", 1));
          await waitFor(() => received.length >= 2, "two notifications");
          assert.deepEqual(received, [
            String(first.globalPositions[1]),
            String(second.globalPositions[0]),
          ]);
        } finally {
          await stop();
        }
      }, { concurrency: true });

      scenario("31. a rolled-back append sends no notification", async (h, store) => {
        const received: string[] = [];
        const stop = await h.listen((payload) => received.push(payload));
        try {
          await assert.rejects(
            h.transaction(async (tx) => {
              await store.append(tx, noStream(), [event("N", "rolled")]);
              throw new Error("roll back");
            }),
            /roll back/,
          );
          const committed = await append(h, noStream(), [event("N", "kept")]);
          await waitFor(() => received.length >= 1, "the committed notification");
          assert.deepEqual(received, [String(committed.globalPositions[0])]);
        } finally {
          await stop();
        }
      }, { concurrency: true });
    });

    describe("payloads and validation", () => {
      scenario(
        "32. trace/correlation round-trip, causation null, JSON metadata with arrays",
        async (h, store) => {
          const result = await append(h, noStream(), [
            event("J", "1", {
              payload: encoder.encode('{"x":1}'),
              metadata: { roles: ["admin", "ops"], nested: { deep: [1, { k: null }] } },
              traceId: "trace-1",
              correlationId: "corr-1",
              causationId: "",
            }),
          ]);
          assert.equal(result.toVersion, 1);
          const [read] = (await h.transaction((tx) => store.readStream(tx, "J", "1"))).events;
          assert.equal(read.traceId, "trace-1");
          assert.equal(read.correlationId, "corr-1");
          assert.equal(read.causationId, null);
          assert.deepEqual(read.metadata, {
            roles: ["admin", "ops"],
            nested: { deep: [1, { k: null }] },
          });
        },
      );

      scenario(
        "33. binary payloads (0x00, 0xFF, non-UTF-8, 64 KiB) round-trip byte-exact",
        async (h, store) => {
          const big = Uint8Array.from({ length: 65536 }, (_, i) => (i * 31 + 7) & 0xff);
          const small = new Uint8Array([0x00, 0xff, 0xc3, 0x28, 0x00, 0x80]);
          const written = await append(h, noStream(), [
            event("B", "1", { payload: small, metadata: null }),
            event("B", "1", { payload: big }),
            event("B", "1", { payload: new Uint8Array(0) }),
          ]);
          const read = (await h.transaction((tx) => store.readStream(tx, "B", "1"))).events;
          assert.deepEqual(read[0].payload, small);
          assert.deepEqual(read[1].payload, big);
          assert.deepEqual(read[2].payload, new Uint8Array(0));
          assert.equal(read[0].metadata, null);
          assert.equal(read[0].eventId, written.events[0].eventId);
          assert.equal(read[0].createdAt.getTime(), written.events[0].createdAt.getTime());
          // A single-event append takes the scalar path: the same bytes and metadata must survive it.
          await append(h, noStream(), [
            event("B", "single", { payload: small, metadata: { quote: 'a"b\\c', list: [] } }),
          ]);
          const [one] = (await h.transaction((tx) => store.readStream(tx, "B", "single"))).events;
          assert.deepEqual(one.payload, small);
          assert.deepEqual(one.metadata, { quote: 'a"b\\c', list: [] });
        },
      );

      scenario(
        "34. bad input is rejected before any SQL; the transaction stays usable",
        async (h, store) => {
          const p = new Uint8Array([1]);
          const base = { aggregateType: "V", aggregateId: "1", eventType: "E", payload: p };
          const cyclic: Record<string, unknown> = {};
          cyclic.self = cyclic;
          await h.transaction(async (tx) => {
            await assert.rejects(store.append(tx, any(), []), NoEventsError);
            const bad: Array<[string, unknown[]]> = [
              ["mixed types", [base, { ...base, aggregateType: "W" }]],
              ["mixed ids", [base, { ...base, aggregateId: "2" }]],
              ["empty aggregateType", [{ ...base, aggregateType: "" }]],
              ["empty aggregateId", [{ ...base, aggregateId: "" }]],
              ["empty eventType", [{ ...base, eventType: "" }]],
              ["payload string", [{ ...base, payload: "bytes" }]],
              ["payload array", [{ ...base, payload: [1, 2] }]],
              ["metadata array", [{ ...base, metadata: [1] }]],
              ["metadata string", [{ ...base, metadata: '{"a":1}' }]],
              ["metadata Date", [{ ...base, metadata: new Date() }]],
              ["metadata NaN", [{ ...base, metadata: { n: NaN } }]],
              ["metadata NUL", [{ ...base, metadata: { s: "a\u0000b" } }]],
              ["bad eventId", [{ ...base, eventId: "not-a-uuid" }]],
              ["eventVersion 0", [{ ...base, eventVersion: 0 }]],
              ["eventVersion 1.5", [{ ...base, eventVersion: 1.5 }]],
              ["invalid createdAt", [{ ...base, createdAt: new Date("nope") }]],
              ["NUL in id", [{ ...base, aggregateId: "a\u0000" }]],
              ["id over 1,024 UTF-8 bytes", [{ ...base, aggregateId: "x".repeat(1022) + "€" }]],
              ["type over 1,024 bytes", [{ ...base, aggregateType: "t".repeat(3000) }]],
              ["correlationId over 1,024 bytes", [{ ...base, correlationId: "c".repeat(1025) }]],
              ["createdAt before 0100", [{ ...base, createdAt: new Date("0050-01-01T00:00:00Z") }]],
              ["createdAt after 9999", [{
                ...base,
                createdAt: new Date("+010000-01-01T00:00:00Z"),
              }]],
              ["sparse batch", Object.assign(new Array(2), { 1: base })],
              ["metadata 101 levels deep", [{ ...base, metadata: nestedMetadata(101) }]],
              ["cyclic metadata", [{ ...base, metadata: cyclic }]],
              ["metadata BigInt", [{ ...base, metadata: { n: 1n } }]],
              ["payload ArrayBuffer", [{ ...base, payload: new ArrayBuffer(1) }]],
              ["repeated eventId", [
                { ...base, eventId: "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6f" },
                { ...base, eventId: "0b6c6f1e-7d0a-4d5e-9f43-2a1c3b4d5e6f" },
              ]],
            ];
            for (const [why, batch] of bad) {
              await assert.rejects(store.append(tx, any(), batch as Event[]), ValidationError, why);
            }
            await assert.rejects(
              store.append(tx, { kind: "exact", version: -1 } as ExpectedVersion, [base]),
              ValidationError,
            );
            await assert.rejects(store.readEvents(tx, -1, 10), ValidationError);
            await assert.rejects(store.readEvents(tx, 0, -1), ValidationError);
            await assert.rejects(store.readEvents(tx, 0.5, 10), ValidationError);
            await assert.rejects(store.readStream(tx, "", "1"), ValidationError);
            await assert.rejects(store.readStream(tx, "V", "i".repeat(1025)), ValidationError);
            await assert.rejects(
              store.readEvents(tx, 0, 10, { aggregateTypes: new Array(1) }),
              ValidationError,
            );
            await assert.rejects(
              store.readStream(tx, "V", "1", { fromVersion: -2 }),
              ValidationError,
            );
            assert.deepEqual(
              (await store.readStream(tx, "V", "1", { fromVersion: 10, toVersion: 5 })).events,
              [],
            );
            assert.deepEqual(await store.readEvents(tx, 999_999, 10), []);
            assert.deepEqual(await store.readEvents(tx, 0, 0), []);
            // Still usable: a valid append in the same transaction succeeds.
            assert.equal((await store.append(tx, noStream(), [base])).toVersion, 1);
          });
          assert.equal(await h.transaction((tx) => store.latestPosition(tx)) > 0, true);
          assert.throws(() => exact(-1), ValidationError);
          assert.throws(() => exact(1.5), TypeError);
        },
      );
    });

    describe("input limits (docs/decisions.md)", () => {
      scenario(
        "the largest accepted values are stored and read back unchanged",
        async (h, store) => {
          // 1,024 UTF-8 bytes each (1 + 113 × (2 + 3 + 4) + 6), in characters of every width.
          const limit = (first: string) => first + "é€😀".repeat(113) + "x".repeat(6);
          const [type, id] = [limit("T"), limit("I")];
          assert.equal(encoder.encode(type).length, 1024);
          const input = event(type, id, {
            eventType: limit("E"),
            traceId: limit("R"),
            correlationId: limit("C"),
            causationId: limit("U"),
            metadata: nestedMetadata(100) as Event["metadata"],
          });
          const earliest = event(type, id, { createdAt: new Date("0100-01-01T00:00:00.000Z") });
          const latest = event(type, id, { createdAt: new Date("9999-12-31T23:59:59.999Z") });
          await append(h, noStream(), [input, earliest, latest]);
          const stream = await h.transaction((tx) => store.readStream(tx, type, id));
          assert.equal(stream.version, 3);
          const [read, first, last] = stream.events;
          assert.equal(read.aggregateType, type);
          assert.equal(read.aggregateId, id);
          assert.equal(read.eventType, input.eventType);
          assert.equal(read.traceId, input.traceId);
          assert.equal(read.correlationId, input.correlationId);
          assert.equal(read.causationId, input.causationId);
          assert.deepEqual(read.metadata, input.metadata);
          // The earliest instant is only compared where the session's time zone prints it with an
          // offset postgres.js parses (UTC does; local mean time offsets with seconds do not).
          if (!Number.isNaN(first.createdAt.getTime())) {
            assert.equal(first.createdAt.getTime(), earliest.createdAt!.getTime());
          }
          assert.equal(last.createdAt.getTime(), latest.createdAt!.getTime());
          assert.equal(await h.transaction((tx) => store.headVersion(tx, type, id)), 3);
        },
      );
    });

    describe("partitioning (native, size 5)", () => {
      const partitioned = (initialPartitions: number) => ({
        raw: true,
        options: { partitioning: { partitionSize: 5, initialPartitions } },
      });
      const rowsIn = async (h: StoreHarness<Tx>, from: number, to: number) =>
        (await h.rawQuery!(`SELECT count(*)::int FROM ${partitionName("events", from, to)}`))[0][0];

      scenario("35. batches cross partition boundaries", async (h) => {
        await append(h, noStream(), events("P", "p", 3));
        for (let b = 1; b < 5; b++) await append(h, exact(3 * b), events("P", "p", 3));
        assert.equal(await rowsIn(h, 1, 5), 5);
        assert.equal(await rowsIn(h, 6, 10), 5);
        assert.equal(await rowsIn(h, 11, 15), 5);
      }, partitioned(4));

      scenario("36. one batch straddles a boundary", async (h) => {
        await append(h, noStream(), events("P", "p", 3));
        const r = await append(h, exact(3), events("P", "p", 4));
        assert.equal(r.fromVersion, 3);
        assert.equal(r.toVersion, 7);
        assert.equal(await rowsIn(h, 1, 5), 5);
        assert.equal(await rowsIn(h, 6, 10), 2);
      }, partitioned(4));

      scenario("37. readStream across partitions", async (h, store) => {
        for (let i = 0; i < 12; i++) await append(h, any(), [event("P", "p")]);
        const full = await h.transaction((tx) => store.readStream(tx, "P", "p"));
        assert.equal(full.events.length, 12);
        assert.equal(full.version, 12);
        const window = await h.transaction((tx) =>
          store.readStream(tx, "P", "p", { fromVersion: 4, toVersion: 9 })
        );
        assert.deepEqual(window.events.map((e) => e.aggregateVersion), [4, 5, 6, 7, 8, 9]);
      }, partitioned(4));

      scenario("38. readEvents pagination across partitions", async (h, store) => {
        for (let i = 0; i < 15; i++) await append(h, noStream(), [event("P", `p-${i}`)]);
        const positions: number[] = [];
        let after = 0;
        for (;;) {
          const page: PersistedEvent[] = await h.transaction((tx) =>
            store.readEvents(tx, after, 4)
          );
          if (page.length === 0) break;
          positions.push(...page.map((e) => e.globalPosition));
          after = page[page.length - 1].globalPosition;
        }
        assert.deepEqual(positions, Array.from({ length: 15 }, (_, i) => i + 1));
      }, partitioned(4));

      scenario("39. latestPosition across partitions", async (h, store) => {
        assert.equal(await h.transaction((tx) => store.latestPosition(tx)), 0);
        for (let i = 0; i < 8; i++) await append(h, any(), [event("P", "p")]);
        assert.equal(await h.transaction((tx) => store.latestPosition(tx)), 8);
      }, partitioned(4));

      scenario(
        "40. appending past the last partition fails and writes nothing",
        async (h, store) => {
          await append(h, noStream(), events("P", "p", 5));
          await assert.rejects(append(h, exact(5), [event("P", "p")]), /no partition/);
          assert.equal(await h.transaction((tx) => store.headVersion(tx, "P", "p")), 5);
        },
        partitioned(1),
      );
    });

    describe("beyond the Go original", () => {
      scenario(
        "a duplicate event id is DuplicateEventIdError, not a version conflict",
        async (h) => {
          const eventId = crypto.randomUUID();
          await append(h, noStream(), [event("D", "1", { eventId })]);
          await assert.rejects(
            append(h, noStream(), [event("D", "2", { eventId })]),
            (error: unknown) => {
              assert.ok(error instanceof DuplicateEventIdError);
              assert.ok(!(error instanceof ConcurrencyError));
              assert.equal(error.eventId, eventId);
              return true;
            },
          );
          assert.equal(await h.transaction((tx) => h.store.headVersion(tx, "D", "2")), 0);
        },
      );

      scenario("positions within a batch increase in input order", async (h) => {
        const r = await append(h, noStream(), events("O", "o", 20));
        for (let i = 1; i < 20; i++) assert.ok(r.globalPositions[i] > r.globalPositions[i - 1]);
        assert.deepEqual(
          r.events.map((e) => e.eventType),
          events("O", "o", 20).map((e) => e.eventType),
        );
      });

      scenario("readEvents filters by aggregate type", async (h, store) => {
        await append(h, any(), [event("A", "1")]);
        await append(h, any(), [event("B", "1")]);
        await append(h, any(), [event("A", "2")]);
        const onlyA = await h.transaction((tx) =>
          store.readEvents(tx, 0, 10, { aggregateTypes: ["A"] })
        );
        assert.deepEqual(onlyA.map((e) => `${e.aggregateType}/${e.aggregateId}`), ["A/1", "A/2"]);
        const all = await h.transaction((tx) =>
          store.readEvents(tx, 0, 10, { aggregateTypes: [] })
        );
        assert.equal(all.length, 3);
      });

      scenario("iterateEvents pages through a long range in order", async (h, store) => {
        for (let i = 0; i < 7; i++) await append(h, any(), events("I", `i-${i}`, 3));
        const seen: number[] = [];
        await h.transaction(async (tx) => {
          for await (const e of store.iterateEvents(tx, { pageSize: 4 })) {
            seen.push(e.globalPosition);
          }
        });
        assert.equal(seen.length, 21);
        assert.deepEqual(seen, [...seen].sort((a, b) => a - b));
        const tail: number[] = [];
        await h.transaction(async (tx) => {
          for await (
            const e of store.iterateEvents(tx, {
              afterPosition: seen[9],
              toPosition: seen[14],
              pageSize: 2,
            })
          ) {
            tail.push(e.globalPosition);
          }
        });
        assert.deepEqual(tail, seen.slice(10, 15));
      });

      scenario(
        "a transaction reads its own uncommitted writes; others do not",
        async (h, store) => {
          const hold = gate();
          let inside: number | undefined;
          const writer = h.transaction(async (tx) => {
            await store.append(tx, noStream(), [event("X", "1")]);
            inside = await store.headVersion(tx, "X", "1");
            await hold.promise;
          });
          await waitFor(() => inside !== undefined, "the writer to append");
          assert.equal(inside, 1);
          assert.equal(await h.transaction((tx) => store.headVersion(tx, "X", "1")), 0);
          assert.deepEqual(await h.transaction((tx) => store.readEvents(tx, 0, 10)), []);
          hold.open();
          await writer;
          assert.equal(await h.transaction((tx) => store.headVersion(tx, "X", "1")), 1);
        },
        { concurrency: true },
      );

      scenario("appended events echo their input and defaults", async (h) => {
        const createdAt = new Date("2026-01-02T03:04:05.678Z");
        const [e] =
          (await append(h, noStream(), [event("X", "1", { createdAt, metadata: { a: 1 } })]))
            .events;
        assert.equal(e.eventVersion, 1);
        assert.match(e.eventId, /^[0-9a-f-]{36}$/);
        assert.equal(e.createdAt.getTime(), createdAt.getTime());
        assert.deepEqual(e.metadata, { a: 1 });
        assert.equal(e.traceId, null);
      });
    });
  });
}
