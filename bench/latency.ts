/**
 * Appends over a slow network: a TCP proxy in this process delays every chunk by a fixed time in
 * each direction, as a cloud database's round trip does. There the round trip, not the fsync,
 * decides an append's cost, so the library's one-statement append given the pool (one round trip)
 * is compared with Emmett's `appendToStream` (a dev-only peer), with the same append in
 * `sql.begin` (three round trips: BEGIN, the statement, COMMIT) and with raw postgres.js doing the
 * same insert in a transaction.
 *
 * `deno run -A bench/latency.ts [--calls 200]` (needs DATABASE_URL; creates and drops a database of
 * its own).
 */
import net from "node:net";
import postgres from "postgres";
import { getPostgreSQLEventStore } from "@event-driven-io/emmett-postgresql";
import { any, migrate, migrationSql, PostgresStore } from "../store/mod.ts";
import {
  type BenchResult,
  comparePaired,
  databaseUrl,
  numberArgument,
  printTable,
} from "./runner.ts";

/** A proxy to `target` that holds every chunk `delayMs` before passing it on, in both directions. */
async function delayingProxy(
  target: { host: string; port: number },
  delayMs: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  // Chunks keep their order: each direction is one queue released by one timer per chunk.
  const pipe = (from: net.Socket, to: net.Socket) => {
    from.on("data", (chunk) => {
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, delayMs);
    });
    from.on("close", () => setTimeout(() => to.destroy(), delayMs));
    from.on("error", () => to.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const payload = new TextEncoder().encode(JSON.stringify({ sku: "espresso", quantity: 2 }));

/** Runs the latency lines at each delay; returns the results. */
export async function latencyBenchmarks(
  url: string,
  delaysMs: readonly number[] = [0.5, 2],
  calls = 200,
): Promise<BenchResult[]> {
  const target = new URL(url);
  // A database of its own: Emmett keeps its tables in `public`.
  const database = `eventsalsa_bench_latency_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${database}`);
  const results: BenchResult[] = [];
  let n = 0; // aggregate ids stay unique across the delays (one database)
  try {
    for (const delay of delaysMs) {
      const proxy = await delayingProxy(
        { host: target.hostname, port: Number(target.port || 5432) },
        delay,
      );
      const proxied = new URL(url);
      proxied.hostname = "127.0.0.1";
      proxied.port = String(proxy.port);
      proxied.pathname = `/${database}`;
      const sql = postgres(proxied.toString(), { max: 8, onnotice: () => {} });
      try {
        await migrate(sql);
        await sql.unsafe(migrationSql({ eventsTable: "raw_events", headsTable: "raw_heads" }));
        const store = new PostgresStore();
        const event = () => ({
          aggregateType: "Order",
          aggregateId: `a-${++n}`,
          eventType: "Placed",
          payload,
        });
        const raw = () =>
          sql.begin((tx) =>
            tx`INSERT INTO raw_events ${
              tx({
                aggregate_type: "Order",
                aggregate_id: `r-${++n}`,
                aggregate_version: 1,
                event_id: crypto.randomUUID(),
                event_type: "Placed",
                event_version: 1,
                payload,
                metadata: null,
                created_at: new Date(),
              })
            }`
          );
        // Emmett's auto-commit append through the same proxy (it keeps its tables in `public`
        // of the database the URL names: the bench's own database, see `latencyBenchmarks`).
        const emmett = getPostgreSQLEventStore(proxied.toString());
        await emmett.appendToStream(`warm-${delay}`, [{ type: "Placed", data: { n: 0 } }]);
        results.push(
          await comparePaired({
            name: `append 1 event given the pool, ${delay} ms each way, vs Emmett appendToStream`,
            connections: 8,
            calls,
            opsPerCall: 1,
            rounds: 5,
            run: () => store.append(sql, any(), [event()]),
            baseline: () =>
              emmett.appendToStream(`order-${++n}`, [{ type: "Placed", data: { n } }]).then(
                () => {},
              ),
            note: "events/s",
          }),
        );
        await emmett.close();
        results.push(
          await comparePaired({
            name: `append 1 event given the pool, ${delay} ms each way, vs raw sql.begin + insert`,
            connections: 8,
            calls,
            opsPerCall: 1,
            rounds: 5,
            run: () => store.append(sql, any(), [event()]),
            baseline: raw,
            note: "events/s",
          }),
          await comparePaired({
            name: `append 1 event in sql.begin, ${delay} ms each way, vs raw sql.begin + insert`,
            connections: 8,
            calls,
            opsPerCall: 1,
            rounds: 5,
            run: () => sql.begin((tx) => store.append(tx, any(), [event()])),
            baseline: raw,
            note: "events/s",
          }),
        );
      } finally {
        await sql.end({ timeout: 5 });
        await proxy.close();
      }
    }
  } finally {
    await admin.unsafe(`DROP DATABASE ${database} WITH (FORCE)`);
    await admin.end();
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("latency.ts");
  if (url !== null) {
    printTable(await latencyBenchmarks(url, [0.5, 2], numberArgument("calls", 200)));
  }
}
