/**
 * eventsalsa against Emmett's PostgreSQL event store (`@event-driven-io/emmett-postgresql`, a
 * dev-only dependency: never part of the published package), in one process, each part on a fresh
 * database of its own (Emmett keeps its tables in `public`).
 *
 * - Appends (`comparePaired`, calls alternating; the ratio is eventsalsa's throughput over
 *   Emmett's): 1 and 10 events at 1 and 8 connections, each side through its auto-commit API
 *   (eventsalsa: `store.append(sql, …)`, one statement sent alone; Emmett: `appendToStream`), and
 *   eventsalsa inside `sql.begin` (the transaction-first path) against the same Emmett call.
 * - Catch-up (`compare`, whole runs alternating, medians): one appender writes N events (100
 *   per call, 1,000 streams) into each store; then, each round, a fresh no-op consumer reads all of
 *   them from the start, batches of 1,000 with no pause: eventsalsa's `Worker` (timed from `start`
 *   to the batch that commits the last position) against Emmett's consumer with one reactor
 *   (`store.consumer({ pulling, stopWhen: { noMessagesLeft: true } })`, timed from `start` until it
 *   returns). Both include their start-up; Emmett's reactor stores its checkpoint after every
 *   message, eventsalsa's worker once per batch.
 * - Delivery: 8 concurrent appenders write 10,000 one-event appends in total while a consumer
 *   (default options of each library) runs; after the writes, the consumer gets until nothing new
 *   arrives for 3 s. Reported: distinct events delivered over events written. Emmett reads in
 *   (transaction id, position) order and keeps the last position read as its checkpoint, so an
 *   event whose transaction commits after one with a higher position can be passed over.
 *
 * `deno run -A bench/peers/emmett.ts [--events 100000] [--rounds 3] [--only appends|catchup|delivery]`
 * (needs DATABASE_URL; creates and drops its own databases).
 */
import postgres from "postgres";
import {
  getPostgreSQLEventStore,
  type PostgresEventStore,
} from "@event-driven-io/emmett-postgresql";
import { any, migrate, PostgresStore } from "../../store/mod.ts";
import { migrate as migrateWorker, Worker } from "../../worker/mod.ts";
import {
  type BenchResult,
  catchUpWorker,
  compare,
  comparePaired,
  databaseUrl,
  numberArgument,
  printTable,
} from "../runner.ts";

/** What one part gets: eventsalsa's pool and store, Emmett's store, on a fresh database. */
interface Peers {
  readonly sql: postgres.Sql;
  readonly store: PostgresStore;
  readonly emmett: PostgresEventStore;
}

let databases = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `part` on a fresh database next to `url`'s (both libraries' schemas), then drops it. */
async function onFreshDatabase<T>(url: string, part: (peers: Peers) => Promise<T>): Promise<T> {
  const database = `eventsalsa_peers_${Date.now()}_${++databases}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${database}`);
  const target = new URL(url);
  target.pathname = `/${database}`;
  const sql = postgres(target.toString(), { max: 8, onnotice: () => {} });
  const emmett = getPostgreSQLEventStore(target.toString());
  try {
    await migrate(sql);
    await migrateWorker(sql);
    // Emmett creates its schema on first use: outside anything timed.
    await emmett.appendToStream("warm-up", [{ type: "WarmedUp", data: {} }]);
    return await part({ sql, store: new PostgresStore(), emmett });
  } finally {
    await emmett.close();
    await sql.end({ timeout: 5 });
    // A connection the forced drop terminates (one of Emmett's `pg` pool still closing, seen once)
    // surfaces in this process as an unhandled client error: let the sessions go first.
    for (let i = 0; i < 50; i++) {
      const [{ n }] = await admin<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = ${database}`;
      if (n === 0) break;
      await sleep(100);
    }
    await admin.unsafe(`DROP DATABASE ${database} WITH (FORCE)`);
    await admin.end();
  }
}

const data = { sku: "espresso", quantity: 2, price: 3.2 };
const payload = new TextEncoder().encode(JSON.stringify(data));

/** Appends of 1 and 10 events at 1 and 8 connections, paired. */
export function emmettAppendBenchmarks(url: string): Promise<BenchResult[]> {
  return onFreshDatabase(url, async ({ sql, store, emmett }) => {
    const results: BenchResult[] = [];
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
    return results;
  });
}

const CATCH_UP_BATCH = 1_000;

/** Catch-up of a fresh no-op consumer over `events` events, eventsalsa's Worker vs Emmett's. */
export function emmettCatchUpBenchmark(
  url: string,
  events: number,
  rounds: number,
): Promise<BenchResult> {
  return onFreshDatabase(url, async ({ sql, store, emmett }) => {
    // One appender per store, 100 events per call over 1,000 streams (setup, not timed).
    const perCall = 100;
    for (let call = 0; call * perCall < events; call++) {
      const size = Math.min(perCall, events - call * perCall);
      await store.append(
        sql,
        any(),
        Array.from({ length: size }, (_, i) => ({
          aggregateType: "Order",
          aggregateId: `o-${call % 1_000}-${call}`,
          eventType: `E${i}`,
          payload,
        })),
      );
      await emmett.appendToStream(
        `order-${call % 1_000}-${call}`,
        Array.from({ length: size }, (_, i) => ({ type: `E${i}`, data })),
      );
    }
    await sql.unsafe("VACUUM ANALYZE events");
    await sql.unsafe("VACUUM ANALYZE emt_messages");
    const [{ last }] = await sql<
      { last: string }[]
    >`SELECT max(global_position) AS last FROM events`;
    const target = Number(last);
    // Emmett's store holds the warm-up event too.
    const emmettTotal = events + 1;
    let run = 0;

    const ours = async () => {
      const name = `catch_up_${++run}`;
      let handled = 0;
      await catchUpWorker(sql, store, [{ name, handle: () => void handled++ }], target, {
        workerId: `catch-up-${run}`,
        batchSize: CATCH_UP_BATCH,
      });
      if (handled !== events) throw new Error(`eventsalsa handled ${handled} of ${events}`);
    };

    const theirs = async () => {
      let handled = 0;
      const consumer = emmett.consumer({
        pulling: { batchSize: CATCH_UP_BATCH, pullingFrequencyInMs: 0 },
        stopWhen: { noMessagesLeft: true },
      });
      consumer.reactor({
        processorId: `catch_up_${++run}`,
        eachMessage: () => {
          handled++;
          return Promise.resolve();
        },
      });
      await consumer.start();
      await consumer.stop();
      if (handled !== emmettTotal) {
        throw new Error(`Emmett handled ${handled} of ${emmettTotal}`);
      }
    };

    return await compare({
      name:
        `catch-up ${events} events, batch ${CATCH_UP_BATCH}: eventsalsa Worker vs Emmett consumer`,
      ops: events,
      run: ours,
      baseline: theirs,
      rounds,
      warmup: 0,
      note: "events/s",
    });
  });
}

/** One delivery check's outcome. */
export interface DeliveryResult {
  readonly name: string;
  readonly delivered: number;
  readonly total: number;
}

const WRITERS = 8;
const DELIVERY_EVENTS = 10_000;

/**
 * Writes `DELIVERY_EVENTS` one-event appends from `WRITERS` concurrent loops while a consumer runs,
 * then waits until every event was delivered or nothing new arrived for 3 s.
 */
async function deliveryCheck(
  name: string,
  start: (seen: (id: string) => void) => () => Promise<void>,
  append: (writer: number, i: number, id: string) => Promise<unknown>,
): Promise<DeliveryResult> {
  const written = new Set<string>();
  const delivered = new Set<string>();
  let lastNew = performance.now();
  const stop = start((id) => {
    if (!delivered.has(id)) {
      delivered.add(id);
      lastNew = performance.now();
    }
  });
  await Promise.all(Array.from({ length: WRITERS }, async (_, writer) => {
    for (let i = 0; i < DELIVERY_EVENTS / WRITERS; i++) {
      const id = crypto.randomUUID();
      written.add(id);
      await append(writer, i, id);
    }
  }));
  lastNew = Math.max(lastNew, performance.now());
  const countDelivered = () => [...written].filter((id) => delivered.has(id)).length;
  while (countDelivered() < written.size && performance.now() - lastNew < 3_000) await sleep(50);
  await stop();
  const result = { name, delivered: countDelivered(), total: written.size };
  console.log(JSON.stringify(result));
  return result;
}

/** The delivery check for each library, each on a fresh database. */
export async function emmettDeliveryChecks(url: string): Promise<DeliveryResult[]> {
  const label = `${WRITERS} concurrent appenders, ${DELIVERY_EVENTS} events`;
  const theirs = await onFreshDatabase(url, ({ emmett }) =>
    deliveryCheck(
      `delivery during ${label}: Emmett consumer`,
      (seen) => {
        const consumer = emmett.consumer();
        consumer.reactor({
          processorId: "delivery",
          eachMessage: (message) => {
            const id = (message.data as { id?: string }).id;
            if (id !== undefined) seen(id);
            return Promise.resolve();
          },
        });
        const running = consumer.start();
        return async () => {
          await consumer.stop();
          await running;
        };
      },
      (writer, i, id) =>
        emmett.appendToStream(`order-${writer}-${i}`, [{ type: "Placed", data: { id } }]),
    ));
  const ours = await onFreshDatabase(url, ({ sql, store }) =>
    deliveryCheck(
      `delivery during ${label}: eventsalsa Worker`,
      (seen) => {
        const worker = new Worker(sql, store, [{
          name: "delivery",
          handle: (_tx, event) => seen(event.eventId),
        }], { workerId: "delivery" });
        const running = worker.start();
        return async () => {
          await worker.stop();
          await running;
        };
      },
      (writer, i, eventId) =>
        store.append(sql, any(), [{
          aggregateType: "Order",
          aggregateId: `o-${writer}-${i}`,
          eventType: "Placed",
          payload,
          eventId,
        }]),
    ));
  if (ours.delivered !== ours.total) {
    throw new Error(`eventsalsa delivered ${ours.delivered} of ${ours.total}`);
  }
  return [theirs, ours];
}

/** Every part (or the one `only` names); prints the tables. */
export async function emmettBenchmarks(
  url: string,
  options: { events?: number; rounds?: number; only?: string } = {},
): Promise<{ results: BenchResult[]; delivery: DeliveryResult[] }> {
  const { events = 100_000, rounds = 3, only } = options;
  const results: BenchResult[] = [];
  let delivery: DeliveryResult[] = [];
  if (only === undefined || only === "appends") results.push(...await emmettAppendBenchmarks(url));
  if (only === undefined || only === "catchup") {
    results.push(await emmettCatchUpBenchmark(url, events, rounds));
  }
  if (only === undefined || only === "delivery") delivery = await emmettDeliveryChecks(url);
  return { results, delivery };
}

/** A `--name value` text flag, or undefined. */
function textArgument(name: string): string | undefined {
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  const args: string[] = runtime.Deno?.args ?? runtime.process?.argv ?? [];
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : undefined;
}

if (import.meta.main) {
  const url = databaseUrl("peers/emmett.ts");
  if (url !== null) {
    const only = textArgument("only");
    if (only !== undefined && !["appends", "catchup", "delivery"].includes(only)) {
      throw new Error("--only must be appends, catchup or delivery");
    }
    const { results, delivery } = await emmettBenchmarks(url, {
      events: numberArgument("events", 100_000),
      rounds: numberArgument("rounds", 3),
      only,
    });
    if (results.length > 0) printTable(results);
    for (const d of delivery) {
      console.log(
        `${d.name}: ${d.delivered} of ${d.total} (${(d.delivered / d.total * 100).toFixed(1)} %)`,
      );
    }
    if (delivery.length === 2) {
      // Share of the events written that each consumer delivered, eventsalsa over Emmett.
      const [theirs, ours] = delivery;
      const ratio = (ours.delivered / ours.total) / (theirs.delivered / theirs.total);
      console.log(
        JSON.stringify({
          name: "delivery, eventsalsa over Emmett",
          ratio: Number(ratio.toFixed(3)),
        }),
      );
    }
  }
}
