/**
 * Store benchmarks against raw postgres.js doing the same database work in the same run.
 * `deno run -A bench/store.ts [--events 100000]` (needs DATABASE_URL; runs in its own schema).
 */
import postgres from "postgres";
import { any, AppendBatcher, exact, migrate, migrationSql, PostgresStore } from "../store/mod.ts";
import { ConcurrencyError } from "../store/errors.ts";
import {
  type BenchResult,
  compare,
  comparePaired,
  databaseUrl,
  numberArgument,
  printTable,
} from "./runner.ts";

const payload = new TextEncoder().encode(
  JSON.stringify({ sku: "espresso", quantity: 2, price: 3.2 }),
);
const metadata = { source: "bench" };

/** Runs every store benchmark on `url` in a fresh schema; returns the results. */
export async function storeBenchmarks(
  url: string,
  totalEvents: number,
  connectionCounts: readonly number[] = [1, 8],
  isolate = true,
): Promise<BenchResult[]> {
  // On a shared server the run gets its own schema (dropped at the end); an embedded database is
  // fresh and single-session, so it runs in `public` on one connection.
  const schema = isolate ? `eventsalsa_bench_${Date.now()}` : "public";
  const admin = () => postgres(url, { max: 1, onnotice: () => {} });
  if (isolate) {
    const setup = admin();
    await setup.unsafe(`CREATE SCHEMA ${schema}`);
    await setup.end();
  }
  const max = Math.max(...connectionCounts);
  const sql = postgres(url, { max, onnotice: () => {}, connection: { search_path: schema } });
  const results: BenchResult[] = [];
  try {
    await migrate(sql);
    // The baseline table has the same shape; baselines insert the same rows without the library.
    await sql.unsafe(migrationSql({ eventsTable: "raw_events", headsTable: "raw_heads" }));
    const store = new PostgresStore();
    let aggregate = 0;
    const batch = (size: number) => {
      const id = `a-${++aggregate}`;
      return Array.from({ length: size }, (_, i) => ({
        aggregateType: "Order",
        aggregateId: id,
        eventType: `E${i}`,
        payload,
        metadata,
      }));
    };
    const rawRows = (size: number) => {
      const id = `r-${++aggregate}`;
      return Array.from({ length: size }, (_, i) => ({
        aggregate_type: "Order",
        aggregate_id: id,
        aggregate_version: i + 1,
        event_id: crypto.randomUUID(),
        event_type: `E${i}`,
        event_version: 1,
        payload,
        metadata: sql.json(metadata),
        created_at: new Date(),
      }));
    };
    for (const connections of connectionCounts) {
      for (const size of [1, 10, 100]) {
        // Commit latency (fsync) dominates small appends and moves from second to second on a
        // shared disk, so library and baseline transactions alternate (see comparePaired).
        results.push(
          await comparePaired({
            name: `append ${size} event(s)/tx, ${connections} connection(s)`,
            connections,
            calls: size === 100 ? 160 : 400,
            opsPerCall: size,
            rounds: 7,
            run: () => sql.begin((tx) => store.append(tx, any(), batch(size))),
            baseline: () => sql.begin((tx) => tx`INSERT INTO raw_events ${tx(rawRows(size))}`),
            note: "events/s",
          }),
        );
      }
    }

    // The same database work by hand: the heads row as a statement of its own, then the events.
    // (A plain insert of a new aggregate's head, without the version check: the cheapest form.)
    for (const size of [1, 10]) {
      results.push(
        await comparePaired({
          name: `append ${size} event(s)/tx, ${max} connection(s), vs raw with a heads row`,
          connections: max,
          calls: 400,
          opsPerCall: size,
          run: () => sql.begin((tx) => store.append(tx, any(), batch(size))),
          baseline: () =>
            sql.begin(async (tx) => {
              const rows = rawRows(size);
              await tx`INSERT INTO raw_heads (aggregate_type, aggregate_id, aggregate_version)
                VALUES ('Order', ${rows[0].aggregate_id}, ${size})`;
              await tx`INSERT INTO raw_events ${tx(rows)}`;
            }),
          note: "events/s",
        }),
      );
    }

    // Several aggregates in one atomic append: appendMany (one statement) against the same rows
    // by hand in one transaction (one insert per aggregate with its heads row).
    results.push(
      await comparePaired({
        name:
          `appendMany 4 aggregates x 1 event/tx, ${max} connection(s), vs raw per-aggregate inserts`,
        connections: max,
        calls: 400,
        opsPerCall: 4,
        run: () =>
          sql.begin((tx) =>
            store.appendMany(tx, [0, 1, 2, 3].map(() => ({ expected: any(), events: batch(1) })))
          ),
        baseline: () =>
          sql.begin(async (tx) => {
            for (let i = 0; i < 4; i++) {
              const rows = rawRows(1);
              await tx`INSERT INTO raw_heads (aggregate_type, aggregate_id, aggregate_version)
                VALUES ('Order', ${rows[0].aggregate_id}, 1)`;
              await tx`INSERT INTO raw_events ${tx(rows)}`;
            }
          }),
        note: "events/s",
      }),
    );

    // Group commit: 64 concurrent callers, each appending one event to its own aggregate, through
    // the batcher against one raw transaction per call, on the same pool.
    if (max > 1) {
      const callers = 64;
      const perCaller = 10;
      const batcher = new AppendBatcher(sql, store, { maxInFlight: max });
      results.push(
        await compare({
          name: `AppendBatcher: ${callers} callers on ${max} connections, vs raw one tx per call`,
          ops: callers * perCaller,
          rounds: 5,
          run: () =>
            Promise.all(Array.from({ length: callers }, async () => {
              for (let i = 0; i < perCaller; i++) await batcher.append(any(), batch(1));
            })).then(() => {}),
          baseline: () =>
            Promise.all(Array.from({ length: callers }, async () => {
              for (let i = 0; i < perCaller; i++) {
                await sql.begin((tx) => tx`INSERT INTO raw_events ${tx(rawRows(1))}`);
              }
            })).then(() => {}),
          note: "events/s",
        }),
      );
    }

    // Conflicts: 8 writers race exact(version) on one aggregate; conflicts are the expected outcome.
    await store.append(sql, any(), [{
      aggregateType: "Hot",
      aggregateId: "1",
      eventType: "E",
      payload,
    }]);
    let conflicts = 0, successes = 0;
    const contend = async () => {
      for (let i = 0; i < 50; i++) {
        const version = await store.headVersion(sql, "Hot", "1");
        try {
          await sql.begin((tx) =>
            store.append(tx, exact(version), [{
              aggregateType: "Hot",
              aggregateId: "1",
              eventType: "E",
              payload,
            }])
          );
          successes++;
        } catch (error) {
          if (!(error instanceof ConcurrencyError)) throw error;
          conflicts++;
        }
      }
    };
    const start = performance.now();
    await Promise.all(Array.from({ length: 8 }, contend));
    const seconds = (performance.now() - start) / 1000;
    results.push({
      name: "exact() on one aggregate, 8 writers: successes",
      opsPerSecond: successes / seconds,
      baselineOpsPerSecond: null,
      ratio: null,
      spread: 0,
      note: "appends/s",
    });
    results.push({
      name: "exact() on one aggregate, 8 writers: conflicts",
      opsPerSecond: conflicts / seconds,
      baselineOpsPerSecond: null,
      ratio: null,
      spread: 0,
      note: "conflicts/s",
    });
    console.log(
      JSON.stringify({
        name: "conflicts: 8 writers exact()",
        ops_per_s: Math.round(successes / seconds),
        conflicts_per_s: Math.round(conflicts / seconds),
        baseline_ops_per_s: null,
        ratio: null,
      }),
    );

    // readStream of a 1,000-event aggregate vs the raw select.
    for (let i = 0; i < 10; i++) {
      await store.append(
        sql,
        any(),
        Array.from(
          { length: 100 },
          () => ({ aggregateType: "Big", aggregateId: "1", eventType: "E", payload, metadata }),
        ),
      );
    }
    // Both sides on one reserved connection: on a pool they would land on different backends,
    // whose placement on the two cores then decides more than the code does.
    const reader = await sql.reserve();
    results.push(
      await comparePaired({
        name: "readStream 1,000-event aggregate",
        connections: 1,
        calls: 100,
        opsPerCall: 1,
        // Each read allocates ~1,000 rows on both sides, so garbage collection lands on either
        // side unevenly from round to round; fifteen rounds keep the median steady.
        rounds: 15,
        run: () => store.readStream(reader, "Big", "1"),
        baseline: () =>
          reader`SELECT * FROM events WHERE aggregate_type = 'Big' AND aggregate_id = '1' ORDER BY aggregate_version`,
        note: "reads/s",
      }),
    );
    reader.release();

    // readEvents paging through the whole log vs the raw keyset select.
    const present = await store.latestPosition(sql);
    for (let filled = present; filled < totalEvents; filled += 1000) {
      await sql.begin(async (tx) => {
        for (let i = 0; i < 10; i++) await store.append(tx, any(), batch(100));
      });
    }
    // The first `totalEvents` events in pages of 1,000, on one reserved connection (as above).
    const pages = Math.ceil(totalEvents / 1000);
    const pageThrough = async (read: (after: number) => Promise<number>) => {
      let after = 0;
      for (let page = 0; page < pages; page++) after = await read(after);
    };
    const pager = await sql.reserve();
    results.push(
      await comparePaired({
        name: `readEvents paging ${(pages * 1000).toLocaleString("en")} events, pages of 1,000`,
        connections: 1,
        calls: 1,
        opsPerCall: pages * 1000,
        rounds: 5,
        run: () =>
          pageThrough(async (after) => {
            const page = await store.readEvents(pager, after, 1000);
            return page[page.length - 1].globalPosition;
          }),
        baseline: () =>
          pageThrough(async (after) => {
            const page =
              await pager`SELECT * FROM events WHERE global_position > ${after} ORDER BY global_position LIMIT 1000`;
            return Number(page[page.length - 1].global_position);
          }),
        note: "events/s",
      }),
    );
    pager.release();
  } finally {
    await sql.end();
    if (isolate) {
      const cleanup = admin();
      await cleanup.unsafe(`DROP SCHEMA ${schema} CASCADE`);
      await cleanup.end();
    }
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("store.ts");
  if (url) printTable(await storeBenchmarks(url, numberArgument("events", 100_000)));
}
