import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConcurrencyError, DuplicateEventIdError, ValidationError } from "../store/errors.ts";
import { exact } from "../store/expected_version.ts";
import type { EventStore } from "../store/types.ts";
import { InMemoryEventStore } from "../testing/in_memory_store.ts";
import { FakeClock } from "../testing/fake_clock.ts";
import { CommandHandler, type CommandHandlerOptions, retryDelay } from "./command_handler.ts";
import {
  type Counter,
  counter,
  type CounterCommand,
  CounterError,
  CounterEvents,
  type definitions,
  type Harness,
  harnesses,
  increments,
} from "./command_support_test.ts";
import {
  gzip,
  jsonCodec,
  SnapshotDecodeError,
  type SnapshotOptions,
  type SnapshotRejection,
} from "./snapshots.ts";

// deno-lint-ignore no-explicit-any
type AnyTx = any;
type Options = CommandHandlerOptions<Counter, CounterCommand, typeof definitions, AnyTx>;

const TYPE = "Counter";
const fastRetry = { initialDelayMs: 1, maxDelayMs: 20, maxAttempts: 50 };
const uniqueId = () => `c-${crypto.randomUUID().slice(0, 8)}`;

function handler(
  h: Harness,
  snapshots?: Partial<SnapshotOptions<Counter, AnyTx>> | null,
  extra: Partial<Options> = {},
): CommandHandler<Counter, CounterCommand, typeof definitions, AnyTx> {
  return new CommandHandler<Counter, CounterCommand, typeof definitions, AnyTx>({
    store: h.store,
    events: CounterEvents,
    aggregateType: TYPE,
    decider: counter,
    retry: fastRetry,
    ...(snapshots === null || snapshots === undefined
      ? {}
      : { snapshots: { store: h.snapshots, ...snapshots } }),
    ...extra,
  });
}

/** The state a plain replay gives (no snapshots): the truth to compare with. */
async function replayed(h: Harness, id: string) {
  return await handler(h).load(h.pool, id);
}

async function versions(h: Harness, id: string): Promise<number[]> {
  const stream = await h.store.readStream(h.pool, TYPE, id);
  return stream.events.map((e) => e.aggregateVersion);
}

const inc = (by = 1): CounterCommand => ({ type: "increment", by });

/** A handler whose first attempt finds that another writer appended `value` meanwhile. */
function racyHandler(
  h: Harness,
  id: string,
  expectedHead: number,
  extra: Partial<Options> = {},
): CommandHandler<Counter, CounterCommand, typeof definitions, AnyTx> {
  let interfered = false;
  return handler(h, null, {
    ...extra,
    decider: {
      ...counter,
      async decide(command, state) {
        if (!interfered) {
          // Another writer commits between this attempt's load and its append.
          interfered = true;
          await h.store.append(h.other, exact(expectedHead), increments(TYPE, id, [10]));
        }
        return await counter.decide(command, state);
      },
    },
  });
}

for (const make of harnesses) {
  describe(`CommandHandler (${make === harnesses[0] ? "in memory" : "PostgreSQL"})`, () => {
    const withHarness = (
      name: string,
      body: (h: Harness, t: { skip(reason: string): void }) => Promise<void>,
    ) =>
      it(name, async (t) => {
        const h = await make();
        try {
          await body(h, t);
        } finally {
          await h.close();
        }
      });

    withHarness("handles commands: new version, appended events, new state", async (h) => {
      const counters = handler(h);
      const id = uniqueId();
      const first = await counters.handle(h.pool, id, inc(2), { metadata: { userId: "u-1" } });
      assert.equal(first.version, 1);
      assert.equal(first.previousVersion, 0);
      assert.equal(first.attempts, 1);
      assert.deepEqual(first.state, { count: 2, events: 1 });
      assert.equal(first.events.length, 1);
      assert.equal(first.events[0].aggregateVersion, 1);
      assert.deepEqual(first.events[0].metadata, { userId: "u-1" });
      assert.deepEqual(first.domainEvents, [{ type: "Incremented", data: { by: 2 } }]);
      const second = await counters.handle(h.pool, id, { type: "reset" });
      assert.equal(second.version, 2);
      assert.deepEqual(second.state, { count: 0, events: 2 });
      const loaded = await counters.load(h.pool, id);
      assert.deepEqual(loaded.state, second.state);
      assert.equal(loaded.version, 2);
      assert.equal(loaded.eventsReplayed, 2);
    });

    withHarness("a command that decides nothing writes nothing", async (h) => {
      const id = uniqueId();
      const result = await handler(h).handle(h.pool, id, { type: "noop" });
      assert.equal(result.version, 0);
      assert.deepEqual(result.events, []);
      assert.deepEqual(await versions(h, id), []);
    });

    withHarness(
      "a refused command, bad input and an unregistered event write nothing",
      async (h) => {
        const id = uniqueId();
        const counters = handler(h);
        await assert.rejects(counters.handle(h.pool, id, { type: "fail" }), CounterError);
        await assert.rejects(counters.handle(h.pool, "", inc()), ValidationError);
        await assert.rejects(
          counters.handle(h.pool, id, inc(), { metadata: [] as never }),
          ValidationError,
        );
        const rogue = handler(h, null, {
          decider: { ...counter, decide: () => [{ type: "Nope", data: {} } as never] },
        });
        await assert.rejects(rogue.handle(h.pool, id, inc()), ValidationError);
        assert.deepEqual(await versions(h, id), []);
      },
    );

    withHarness(
      "concurrent commands on one aggregate all succeed through retries, versions contiguous",
      async (h, t) => {
        if (h.concurrencySkip) return t.skip(h.concurrencySkip);
        const counters = handler(h, { policy: 5 });
        const id = uniqueId();
        const writers = 8;
        const each = 6;
        let retried = 0;
        await Promise.all(Array.from({ length: writers }, async () => {
          for (let i = 0; i < each; i++) {
            const result = await counters.handle(h.pool, id, inc(1));
            retried += result.attempts - 1;
          }
        }));
        const total = writers * each;
        assert.deepEqual(await versions(h, id), Array.from({ length: total }, (_, i) => i + 1));
        const loaded = await counters.load(h.pool, id);
        assert.deepEqual(loaded.state, { count: total, events: total });
        assert.deepEqual((await replayed(h, id)).state, loaded.state);
        assert.ok(retried > 0, "8 writers on one aggregate must have collided at least once");
      },
    );

    withHarness("a conflict in its own transaction is retried in a fresh one", async (h, t) => {
      if (h.concurrencySkip) return t.skip(h.concurrencySkip);
      const id = uniqueId();
      await h.store.append(h.other, exact(0), increments(TYPE, id, [1]));
      const result = await racyHandler(h, id, 1).handle(h.pool, id, inc(5));
      assert.equal(result.attempts, 2);
      assert.equal(result.version, 3);
      assert.deepEqual(result.state, { count: 16, events: 3 });
    });

    withHarness(
      "in the caller's transaction a conflict leaves it usable and the retry succeeds there",
      async (h, t) => {
        if (h.concurrencySkip) return t.skip(h.concurrencySkip);
        const id = uniqueId();
        await h.store.append(h.other, exact(0), increments(TYPE, id, [1]));
        const result = await h.transaction(async (tx) => {
          const r = await racyHandler(h, id, 1).handle(tx, id, inc(5));
          // Still usable after the conflict: more work in the same transaction.
          assert.equal(await h.store.headVersion(tx, TYPE, id), 3);
          return r;
        });
        assert.equal(result.attempts, 2);
        assert.deepEqual(result.state, { count: 16, events: 3 });
        assert.deepEqual(await versions(h, id), [1, 2, 3]);

        // With inCallerTransaction: false the conflict is the caller's, and the tx stays usable.
        const strict = racyHandler(h, id, 3, { retry: { inCallerTransaction: false } });
        await h.transaction(async (tx) => {
          await assert.rejects(strict.handle(tx, id, inc(1)), ConcurrencyError);
          assert.equal(await h.store.headVersion(tx, TYPE, id), 4);
        });
      },
    );

    withHarness(
      "under REPEATABLE READ a conflict is PostgreSQL's serialization failure, not retried",
      async (h, t) => {
        if (!h.countingPool) return t.skip("PostgreSQL only");
        if (h.concurrencySkip) return t.skip(h.concurrencySkip);
        const id = uniqueId();
        await h.store.append(h.other, exact(0), increments(TYPE, id, [1]));
        const racy = racyHandler(h, id, 1);
        await assert.rejects(
          h.pool.begin(
            "isolation level repeatable read",
            (tx: AnyTx) => racy.handle(tx, id, inc(5)),
          ),
          (error: { code?: string }) => error.code === "40001",
        );
        assert.deepEqual(await versions(h, id), [1, 2], "only the other writer's event");
      },
    );

    withHarness("gives up after maxAttempts with the ConcurrencyError", async (h, t) => {
      if (h.concurrencySkip) return t.skip(h.concurrencySkip);
      const id = uniqueId();
      let version = 0;
      const hopeless = handler(h, null, {
        retry: { maxAttempts: 3, initialDelayMs: 0, maxDelayMs: 0 },
        decider: {
          ...counter,
          async decide(command, state) {
            await h.store.append(h.other, exact(version), increments(TYPE, id, [1]));
            version++;
            return await counter.decide(command, state);
          },
        },
      });
      await assert.rejects(hopeless.handle(h.pool, id, inc()), ConcurrencyError);
      assert.equal(version, 3);
    });

    withHarness("snapshots: written by policy, loaded with the delta", async (h) => {
      const counters = handler(h, { policy: 3 });
      const id = uniqueId();
      const written: number[] = [];
      for (let i = 1; i <= 7; i++) {
        const result = await counters.handle(h.pool, id, inc(i));
        if (result.snapshotWritten) written.push(result.version);
      }
      assert.deepEqual(written, [3, 6]);
      const loaded = await counters.load(h.pool, id);
      assert.equal(loaded.snapshotVersion, 6);
      assert.equal(loaded.eventsReplayed, 1);
      assert.deepEqual(loaded.state, { count: 28, events: 7 });
      assert.deepEqual(loaded.state, (await replayed(h, id)).state);
    });

    withHarness("the load is one round trip on PostgreSQL", async (h, t) => {
      if (!h.countingPool) return t.skip("PostgreSQL only");
      // A second pool: PGlite serves one session at a time.
      if (h.concurrencySkip) return t.skip(h.concurrencySkip);
      const counters = handler(h, { policy: 2 });
      const id = uniqueId();
      for (let i = 0; i < 5; i++) await counters.handle(h.pool, id, inc());
      const { pool, statements } = h.countingPool();
      await pool`SELECT 1`; // connect (postgres.js reads the array types once per connection)
      statements.length = 0;
      const loaded = await counters.load(pool, id);
      assert.equal(loaded.snapshotVersion, 4);
      assert.equal(loaded.eventsReplayed, 1);
      assert.equal(statements.length, 1, statements.join("\n"));
      await pool.end();
    });

    withHarness(
      "a snapshot at the wrong version is rejected and the stream replayed",
      async (h) => {
        const counters = handler(h, { policy: 1 });
        const id = uniqueId();
        for (let i = 0; i < 3; i++) await counters.handle(h.pool, id, inc(1));
        const good = (await h.snapshotRows()).find((s) => s.aggregateId === id)!;
        const rejections: SnapshotRejection[] = [];
        const watched = handler(h, { policy: 1, onRejected: (r) => rejections.push(r) });

        // Beyond the head (a phantom), with a wrong state that must never be used.
        const payload = new TextEncoder().encode(JSON.stringify({ count: 999, events: 999 }));
        await h.snapshots.put(h.pool, { ...good, aggregateVersion: 10, payload }, null);
        let loaded = await watched.load(h.pool, id);
        assert.deepEqual(loaded.state, { count: 3, events: 3 });
        assert.equal(loaded.rejectedSnapshot?.reason, "orphan");

        // At an existing version but naming another event (not a snapshot of this stream).
        await h.snapshots.put(
          h.pool,
          { ...good, aggregateVersion: 2, eventId: crypto.randomUUID(), payload },
          { aggregateVersion: 10, eventId: good.eventId },
        );
        loaded = await watched.load(h.pool, id);
        assert.deepEqual(loaded.state, { count: 3, events: 3 });
        assert.equal(loaded.rejectedSnapshot?.reason, "orphan");
        assert.equal(rejections.length, 2);

        // The next command replaces the orphan.
        const result = await watched.handle(h.pool, id, inc(1));
        assert.equal(result.snapshotWritten, true);
        loaded = await watched.load(h.pool, id);
        assert.equal(loaded.snapshotVersion, 4);
        assert.deepEqual(loaded.state, { count: 4, events: 4 });
      },
    );

    withHarness("an orphan snapshot (its version no longer in the stream) → replay", async (h) => {
      const counters = handler(h, { policy: 2 });
      const id = uniqueId();
      for (let i = 0; i < 6; i++) await counters.handle(h.pool, id, inc(1));
      assert.equal((await counters.load(h.pool, id)).snapshotVersion, 6);
      // The stream is restored from an older backup: 3 events, different ones.
      await h.rewriteStream(TYPE, id, [5, 5, 5]);
      let loaded = await handler(h, { policy: 2 }).load(h.pool, id);
      assert.equal(loaded.rejectedSnapshot?.reason, "orphan");
      assert.equal(loaded.snapshotVersion, null);
      assert.deepEqual(loaded.state, { count: 15, events: 3 });
      // Same length, other events: still caught (the snapshot names its event).
      await h.rewriteStream(TYPE, id, [7, 7, 7, 7, 7, 7]);
      loaded = await handler(h, { policy: 2 }).load(h.pool, id);
      assert.equal(loaded.rejectedSnapshot?.reason, "orphan");
      assert.deepEqual(loaded.state, { count: 42, events: 6 });
      // The next command writes a snapshot of the stream as it is now.
      const result = await handler(h, { policy: 2 }).handle(h.pool, id, inc(1));
      assert.equal(result.snapshotWritten, true);
      loaded = await handler(h, { policy: 2 }).load(h.pool, id);
      assert.equal(loaded.snapshotVersion, 7);
      assert.deepEqual(loaded.state, { count: 43, events: 7 });
    });

    withHarness("an orphan above the new head is replaced by the next snapshot", async (h) => {
      const id = uniqueId();
      for (let i = 0; i < 8; i++) await handler(h, { policy: 4 }).handle(h.pool, id, inc(1));
      await h.rewriteStream(TYPE, id, [1]);
      const counters = handler(h, { policy: 1 });
      const result = await counters.handle(h.pool, id, inc(1));
      assert.equal(result.version, 2);
      assert.equal(result.snapshotWritten, true, "the orphan at 8 must not block a snapshot at 2");
      const loaded = await counters.load(h.pool, id);
      assert.equal(loaded.snapshotVersion, 2);
      assert.equal(loaded.rejectedSnapshot, null);
    });

    withHarness("unknown or older schema: upcast when a path exists, else replay", async (h) => {
      const id = uniqueId();
      for (let i = 0; i < 4; i++) await handler(h, { policy: 2 }).handle(h.pool, id, inc(2));
      // Schema 2 without an upcaster: the schema-1 snapshot is unusable.
      let loaded = await handler(h, { policy: 100, schemaVersion: 2 }).load(h.pool, id);
      assert.equal(loaded.rejectedSnapshot?.reason, "no-upcaster");
      assert.deepEqual(loaded.state, { count: 8, events: 4 });
      // With an upcaster the old snapshot is lifted.
      type V2 = Counter & { schema: 2 };
      const upcasting = new CommandHandler<V2, CounterCommand, typeof definitions, AnyTx>({
        store: h.store,
        events: CounterEvents,
        aggregateType: TYPE,
        decider: {
          initialState: () => ({ count: 0, events: 0, schema: 2 }),
          evolve: (state, event) => ({ ...counter.evolve(state, event), schema: 2 }),
          decide: counter.decide,
        },
        snapshots: {
          store: h.snapshots,
          schemaVersion: 2,
          policy: 1,
          upcasters: { 1: (old) => ({ ...(old as Counter), schema: 2 }) },
        },
      });
      const lifted = await upcasting.load(h.pool, id);
      assert.equal(lifted.snapshotVersion, 4);
      assert.equal(lifted.snapshotSchemaVersion, 1);
      assert.deepEqual(lifted.state, { count: 8, events: 4, schema: 2 });
      // The next command writes a schema-2 snapshot beside the schema-1 one.
      assert.equal((await upcasting.handle(h.pool, id, inc(1))).snapshotWritten, true);
      assert.equal((await upcasting.load(h.pool, id)).snapshotSchemaVersion, 2);
      // Schema-1 code (a rolling deploy) ignores the newer snapshot and keeps its own.
      loaded = await handler(h, { policy: 100 }).load(h.pool, id);
      assert.equal(loaded.snapshotSchemaVersion, 1);
      assert.deepEqual(loaded.state, { count: 9, events: 5 });
    });

    withHarness(
      "an undecodable snapshot → replay, or SnapshotDecodeError when configured",
      async (h) => {
        const id = uniqueId();
        for (let i = 0; i < 2; i++) await handler(h, { policy: 2 }).handle(h.pool, id, inc(3));
        const good = (await h.snapshotRows()).find((s) => s.aggregateId === id)!;
        await h.snapshots.put(
          h.pool,
          { ...good, payload: new Uint8Array([0xff, 0x00, 0x7b]) },
          null,
        );
        const loaded = await handler(h, { policy: 2 }).load(h.pool, id);
        assert.equal(loaded.rejectedSnapshot?.reason, "corrupt");
        assert.deepEqual(loaded.state, { count: 6, events: 2 });
        await assert.rejects(
          handler(h, { policy: 2, corrupt: "fail" }).load(h.pool, id),
          SnapshotDecodeError,
        );
        await assert.rejects(
          handler(h, { policy: 2, corrupt: "fail" }).handle(h.pool, id, inc(1)),
          SnapshotDecodeError,
        );
        assert.deepEqual(await versions(h, id), [1, 2], "a failed load writes nothing");
      },
    );

    withHarness("gzip: compressed snapshots; switching codecs makes old ones miss", async (h) => {
      const id = uniqueId();
      const plain = handler(h, { policy: 2 });
      for (let i = 0; i < 2; i++) await plain.handle(h.pool, id, inc(1));
      const zipped = handler(h, { policy: 2, transformers: [gzip()] });
      let loaded = await zipped.load(h.pool, id);
      assert.equal(loaded.rejectedSnapshot?.reason, "encoding");
      assert.deepEqual(loaded.state, { count: 2, events: 2 });
      // The first command after the miss rewrites the snapshot (at 3), compressed.
      for (let i = 0; i < 2; i++) await zipped.handle(h.pool, id, inc(1));
      const row = (await h.snapshotRows()).find((s) => s.aggregateId === id)!;
      assert.equal(row.encoding, "json+gzip");
      assert.deepEqual(row.payload.subarray(0, 2), new Uint8Array([0x1f, 0x8b]));
      loaded = await zipped.load(h.pool, id);
      assert.equal(loaded.snapshotVersion, 3);
      assert.equal(loaded.eventsReplayed, 1);
      assert.deepEqual(loaded.state, { count: 4, events: 4 });
    });

    withHarness("truncating the snapshots mid-run changes nothing but speed", async (h, t) => {
      if (h.concurrencySkip) return t.skip(h.concurrencySkip);
      const counters = handler(h, { policy: 3 });
      const id = uniqueId();
      let truncations = 0;
      await Promise.all([
        ...Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 10; i++) await counters.handle(h.pool, id, inc(2));
        }),
        (async () => {
          for (let i = 0; i < 5; i++) {
            await new Promise((resolve) => setTimeout(resolve, 5));
            await h.truncateSnapshots();
            truncations++;
          }
        })(),
      ]);
      assert.equal(truncations, 5);
      const loaded = await counters.load(h.pool, id);
      assert.deepEqual(loaded.state, { count: 80, events: 40 });
      assert.deepEqual(loaded.state, (await replayed(h, id)).state);
      assert.deepEqual(await versions(h, id), Array.from({ length: 40 }, (_, i) => i + 1));
      await h.truncateSnapshots();
      assert.equal((await counters.load(h.pool, id)).snapshotVersion, null);
      const next = await counters.handle(h.pool, id, inc(2));
      assert.equal(next.snapshotWritten, true, "the first command after a truncation re-snapshots");
      assert.deepEqual(next.state, { count: 82, events: 41 });
    });

    withHarness(
      "afterCommit: written after the commit; a failed write does not fail the command",
      async (h) => {
        const id = uniqueId();
        const after = handler(h, { policy: 1, write: "afterCommit" });
        const result = await after.handle(h.pool, id, inc(1));
        assert.equal(result.snapshotWritten, true);
        assert.equal((await after.load(h.pool, id)).snapshotVersion, 1);
        const failures: unknown[] = [];
        const failing = {
          get: h.snapshots.get.bind(h.snapshots),
          put: () => Promise.reject(new Error("disk full")),
        };
        const broken = handler(h, {
          policy: 1,
          write: "afterCommit",
          store: failing,
          onWriteError: (error) => failures.push(error),
        });
        const ok = await broken.handle(h.pool, id, inc(1));
        assert.equal(ok.version, 2);
        assert.equal(ok.snapshotWritten, false);
        assert.equal(failures.length, 1);
        // In "transaction" mode the same failure fails the command and nothing is written.
        const strict = handler(h, { policy: 1, store: failing });
        await assert.rejects(strict.handle(h.pool, id, inc(1)), /disk full/);
        assert.deepEqual(await versions(h, id), [1, 2]);
      },
    );

    withHarness(
      "a state JSON cannot keep fails the command before anything is written",
      async (h) => {
        const id = uniqueId();
        const dated = new CommandHandler<
          { at: Date | null },
          CounterCommand,
          typeof definitions,
          AnyTx
        >({
          store: h.store,
          events: CounterEvents,
          aggregateType: TYPE,
          decider: {
            initialState: () => ({ at: null }),
            evolve: () => ({ at: new Date(0) }),
            decide: () => [{ type: "Reset", data: {} }],
          },
          snapshots: { store: h.snapshots, policy: 1 },
        });
        await assert.rejects(dated.handle(h.pool, id, inc()), { name: "SnapshotEncodeError" });
        assert.deepEqual(await versions(h, id), []);
      },
    );

    withHarness("monotonic put: an older snapshot never replaces a newer one", async (h) => {
      const id = uniqueId();
      const snapshot = {
        aggregateType: TYPE,
        aggregateId: id,
        schemaVersion: 1,
        aggregateVersion: 10,
        eventId: crypto.randomUUID(),
        encoding: "json",
        payload: new TextEncoder().encode("{}"),
      };
      const put = (
        version: number,
        replacing: { aggregateVersion: number; eventId: string } | null,
      ) => h.snapshots.put(h.pool, { ...snapshot, aggregateVersion: version }, replacing);
      assert.equal(await put(10, null), true);
      assert.equal(await put(5, null), false);
      assert.equal((await h.snapshots.get(h.pool, TYPE, id, 1))?.aggregateVersion, 10);
      assert.equal(await put(10, null), true);
      // Replacing a named orphan is allowed; a wrong name is not.
      assert.equal(await put(5, { aggregateVersion: 10, eventId: crypto.randomUUID() }), false);
      assert.equal(await put(5, { aggregateVersion: 10, eventId: snapshot.eventId }), true);
      assert.equal((await h.snapshots.get(h.pool, TYPE, id, 1))?.aggregateVersion, 5);
      await assert.rejects(
        h.snapshots.put(h.pool, { ...snapshot, eventId: "nope" }, null),
        ValidationError,
      );
      await assert.rejects(h.snapshots.get(h.pool, TYPE, id, 0), ValidationError);
    });

    withHarness("a snapshot written in a rolled-back transaction vanishes with it", async (h) => {
      const id = uniqueId();
      const counters = handler(h, { policy: 1 });
      await assert.rejects(
        h.transaction(async (tx) => {
          await counters.handle(tx, id, inc(1));
          throw new Error("caller rolls back");
        }),
        /caller rolls back/,
      );
      assert.equal((await h.snapshotRows()).filter((s) => s.aggregateId === id).length, 0);
      assert.deepEqual(await versions(h, id), []);
    });

    withHarness("writeSnapshot writes at the head now", async (h) => {
      const id = uniqueId();
      const counters = handler(h, { policy: 0 });
      assert.equal(await counters.writeSnapshot(h.pool, id), null);
      for (let i = 0; i < 3; i++) await counters.handle(h.pool, id, inc(1));
      assert.equal((await counters.load(h.pool, id)).snapshotVersion, null);
      assert.equal(await counters.writeSnapshot(h.pool, id), 3);
      const loaded = await counters.load(h.pool, id);
      assert.equal(loaded.snapshotVersion, 3);
      assert.equal(loaded.eventsReplayed, 0);
      assert.deepEqual(loaded.state, { count: 3, events: 3 });
    });
  });
}

describe("CommandHandler without a database", () => {
  const store = new InMemoryEventStore();
  const base: Options = {
    store,
    events: CounterEvents,
    aggregateType: TYPE,
    decider: counter,
  };
  const snapshotStore = { get: () => null, put: () => true } as never;

  it("validates its options", () => {
    const bad: [Partial<Options>, RegExp][] = [
      [{ aggregateType: "" }, /aggregateType/],
      [{ decider: { ...counter, evolve: undefined as never } }, /decider.evolve/],
      [{ store: {} as never }, /EventStore/],
      [{ events: {} as never }, /defineEvents/],
      [{ retry: { maxAttempts: 0 } }, /maxAttempts/],
      [{ retry: { maxAttempts: 1.5 } }, /maxAttempts/],
      [{ retry: { jitter: 2 } }, /jitter/],
      [{ retry: { initialDelayMs: 10, maxDelayMs: 5 } }, /maxDelayMs/],
      [{ snapshots: { store: {} as never } }, /SnapshotStore/],
      [{ snapshots: { store: snapshotStore, schemaVersion: 0 } }, /schemaVersion/],
      [
        { snapshots: { store: snapshotStore, schemaVersion: 2, upcasters: { 2: (x) => x } } },
        /upcasters\[2\]/,
      ],
      [
        { snapshots: { store: snapshotStore, codec: { ...jsonCodec(), name: "a+b" } } },
        /codec name/,
      ],
      [{ snapshots: { store: snapshotStore, policy: -1 } }, /everyNEvents/],
      [{ snapshots: { store: snapshotStore, write: "later" as never } }, /write/],
    ];
    for (const [override, message] of bad) {
      assert.throws(() => new CommandHandler({ ...base, ...override } as Options), (error) => {
        assert.ok(error instanceof ValidationError, String(error));
        assert.match((error as Error).message, message);
        return true;
      });
    }
  });

  it("never retries a DuplicateEventIdError or a ValidationError", async () => {
    for (const error of [new DuplicateEventIdError(TYPE, "x", null), new ValidationError("bad")]) {
      let appends = 0;
      const failing: EventStore<AnyTx> = {
        readStream: store.readStream.bind(store),
        readEvents: store.readEvents.bind(store),
        latestPosition: store.latestPosition.bind(store),
        headVersion: store.headVersion.bind(store),
        iterateEvents: store.iterateEvents.bind(store),
        appendMany: store.appendMany.bind(store),
        append: () => {
          appends++;
          return Promise.reject(error);
        },
      };
      const h = new CommandHandler({ ...base, store: failing });
      await assert.rejects(h.handle(store, "x", inc()), error.constructor as ErrorConstructor);
      assert.equal(appends, 1);
    }
  });

  it("backs off with bounded, jittered delays on the clock it is given", async () => {
    const clock = new FakeClock(0);
    const sleeps: number[] = [];
    const realSleep = clock.sleep.bind(clock);
    clock.sleep = (ms: number, signal?: AbortSignal) => {
      sleeps.push(ms);
      return realSleep(ms, signal);
    };
    const local = new InMemoryEventStore();
    let conflicts = 3;
    let version = 0;
    const h = new CommandHandler<Counter, CounterCommand, typeof definitions, AnyTx>({
      ...base,
      store: local,
      retry: { clock, random: () => 0.5, initialDelayMs: 10, maxDelayMs: 25 },
      decider: {
        ...counter,
        async decide(command, state) {
          if (conflicts-- > 0) {
            await local.append(local, exact(version), increments(TYPE, "b", [1]));
            version++;
          }
          return await counter.decide(command, state);
        },
      },
    });
    const running = h.handle(local, "b", inc());
    for (let i = 0; i < 10 && sleeps.length < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      await clock.advance(100);
    }
    const result = await running;
    assert.equal(result.attempts, 4);
    assert.deepEqual(sleeps, [5, 10, 12.5]);
  });

  it("retryDelay stays within its caps", () => {
    const options = { initialDelayMs: 2, maxDelayMs: 100, jitter: 1 };
    for (let retry = 1; retry < 80; retry++) {
      const cap = Math.min(100, 2 * 2 ** (retry - 1));
      assert.equal(retryDelay(retry, { ...options, random: () => 0 }), cap);
      assert.ok(retryDelay(retry, { ...options, random: () => 0.999999 }) >= 0);
    }
    assert.equal(retryDelay(3, { ...options, jitter: 0, random: () => 0.7 }), 8);
  });

  it("an aborted signal stops the retries", async () => {
    const local = new InMemoryEventStore();
    let version = 0;
    const controller = new AbortController();
    const h = new CommandHandler<Counter, CounterCommand, typeof definitions, AnyTx>({
      ...base,
      store: local,
      retry: { initialDelayMs: 50, maxDelayMs: 50, jitter: 0 },
      decider: {
        ...counter,
        async decide(command, state) {
          await local.append(local, exact(version), increments(TYPE, "s", [1]));
          version++;
          controller.abort(new Error("client went away"));
          return await counter.decide(command, state);
        },
      },
    });
    await assert.rejects(
      h.handle(local, "s", inc(), { signal: controller.signal }),
      /client went away/,
    );
    assert.equal(version, 1);
  });
});
