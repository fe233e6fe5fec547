/**
 * eventsalsa against Emmett's PostgreSQL event store (`@event-driven-io/emmett-postgresql`, a
 * dev-only dependency: never part of the published package), in one process, on one fresh
 * database, calls alternating (`comparePaired`): the ratio is eventsalsa's throughput over
 * Emmett's.
 *
 * Appends of 1 and 10 events at 1 and 8 connections, each side through its auto-commit API
 * (eventsalsa: `store.append(sql, …)`, one statement sent alone; Emmett: `appendToStream`), and
 * eventsalsa inside `sql.begin` (the transaction-first path) against the same Emmett call.
 *
 * `deno run -A bench/peers/emmett.ts` (needs DATABASE_URL; creates and drops its own database,
 * since Emmett keeps its tables in `public`).
 */
import postgres from "postgres";
import { getPostgreSQLEventStore } from "@event-driven-io/emmett-postgresql";
import { any, migrate, PostgresStore } from "../../store/mod.ts";
import { type BenchResult, comparePaired, databaseUrl, printTable } from "../runner.ts";

/** Runs the peer lines on a fresh database next to `url`'s; returns the results. */
export async function emmettBenchmarks(url: string): Promise<BenchResult[]> {
  const database = `eventsalsa_peers_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${database}`);
  const target = new URL(url);
  target.pathname = `/${database}`;
  const results: BenchResult[] = [];
  const sql = postgres(target.toString(), { max: 8, onnotice: () => {} });
  const emmett = getPostgreSQLEventStore(target.toString());
  try {
    await migrate(sql);
    const store = new PostgresStore();
    const data = { sku: "espresso", quantity: 2, price: 3.2 };
    const payload = new TextEncoder().encode(JSON.stringify(data));
    let n = 0;
    const ours = (size: number) => {
      const id = `o-${++n}`;
      return Array.from({ length: size }, (_, i) => ({
        aggregateType: "Order",
        aggregateId: id,
        eventType: `E${i}`,
        payload,
      }));
    };
    const theirs = (size: number) =>
      emmett.appendToStream(
        `order-${++n}`,
        Array.from({ length: size }, (_, i) => ({ type: `E${i}`, data })),
      );
    // Emmett creates its schema on first use: outside the timed rounds.
    await theirs(1);
    for (const connections of [1, 8]) {
      for (const size of [1, 10]) {
        results.push(
          await comparePaired({
            name: `append ${size} event(s), ${connections} connection(s): eventsalsa vs Emmett`,
            connections,
            calls: 400,
            opsPerCall: size,
            rounds: 7,
            run: () => store.append(sql, any(), ours(size)),
            baseline: () => theirs(size),
            note: "events/s",
          }),
          await comparePaired({
            name:
              `append ${size} event(s) in sql.begin, ${connections} connection(s): eventsalsa vs Emmett`,
            connections,
            calls: 400,
            opsPerCall: size,
            rounds: 7,
            run: () => sql.begin((tx) => store.append(tx, any(), ours(size))),
            baseline: () => theirs(size),
            note: "events/s",
          }),
        );
      }
    }
  } finally {
    await emmett.close();
    await sql.end({ timeout: 5 });
    await admin.unsafe(`DROP DATABASE ${database} WITH (FORCE)`);
    await admin.end();
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("peers/emmett.ts");
  if (url !== null) printTable(await emmettBenchmarks(url));
}
