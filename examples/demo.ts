/**
 * `deno task demo`: the event store end to end. Runs on the embedded PGlite when DATABASE_URL is
 * unset, on your PostgreSQL when it is set. Safe to re-run: every run uses a fresh order id.
 */
import postgres from "postgres";
import {
  ConcurrencyError,
  exact,
  migrate,
  noStream,
  type PersistedEvent,
  PostgresStore,
} from "../store/mod.ts";
import { startEmbeddedDatabase } from "../testing/mod.ts";
import { readEnv } from "../internal/env.ts";

const databaseUrl = readEnv("DATABASE_URL");
const embedded = databaseUrl ? null : await startEmbeddedDatabase();
const sql = postgres(databaseUrl ?? embedded!.url, { max: embedded ? 1 : 4, onnotice: () => {} });
console.log(
  embedded
    ? "Database: embedded PGlite (set DATABASE_URL to use your PostgreSQL)"
    : "Database: DATABASE_URL",
);

try {
  await migrate(sql);
  const store = new PostgresStore();
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const orderId = `order-${crypto.randomUUID().slice(0, 8)}`;
  const orderEvent = (eventType: string, body: unknown) => ({
    aggregateType: "Order",
    aggregateId: orderId,
    eventType,
    payload: json(body),
    metadata: { source: "demo" },
  });

  // 1. Place the order: noStream() means "this order must not exist yet".
  const placed = await sql.begin((tx) =>
    store.append(tx, noStream(), [
      orderEvent("OrderPlaced", { customer: "ada", currency: "EUR" }),
      orderEvent("ItemAdded", { sku: "espresso", quantity: 2, price: 3.2 }),
      orderEvent("ItemAdded", { sku: "croissant", quantity: 1, price: 2.5 }),
    ])
  );
  console.log(
    `Placed ${orderId}: versions ${placed.fromVersion + 1}..${placed.toVersion} at positions ${
      placed.globalPositions.join(", ")
    }`,
  );

  // 2. Two clerks load version 3 and both try to act on it; only the first append wins.
  const loaded = await store.readStream(sql, "Order", orderId);
  await sql.begin((tx) =>
    store.append(tx, exact(loaded.version), [orderEvent("OrderConfirmed", { by: "clerk-1" })])
  );
  try {
    await sql.begin((tx) =>
      store.append(tx, exact(loaded.version), [orderEvent("OrderCancelled", { by: "clerk-2" })])
    );
    throw new Error("the stale append should have conflicted");
  } catch (error) {
    if (!(error instanceof ConcurrencyError)) throw error;
    console.log(`Conflict caught: ${error.message}`);
  }

  // 3. Read the stream back and rebuild the aggregate from its events.
  interface Order {
    customer: string;
    status: string;
    items: Array<{ sku: string; quantity: number; price: number }>;
  }
  const apply = (order: Order, event: PersistedEvent): Order => {
    const body = JSON.parse(new TextDecoder().decode(event.payload));
    switch (event.eventType) {
      case "OrderPlaced":
        return { ...order, customer: body.customer, status: "placed" };
      case "ItemAdded":
        return { ...order, items: [...order.items, body] };
      case "OrderConfirmed":
        return { ...order, status: "confirmed" };
      case "OrderCancelled":
        return { ...order, status: "cancelled" };
      default:
        return order;
    }
  };
  const stream = await store.readStream(sql, "Order", orderId);
  const order = stream.events.reduce(apply, { customer: "", status: "new", items: [] });
  const total = order.items.reduce((sum, item) => sum + item.quantity * item.price, 0);
  console.log(`Stream ${orderId} at version ${stream.version}:`);
  for (const e of stream.events) console.log(`  v${e.aggregateVersion} ${e.eventType}`);
  console.log(
    `Rebuilt: ${order.customer}'s order is ${order.status}, ${order.items.length} items, total ${
      total.toFixed(2)
    } EUR`,
  );
} finally {
  await sql.end();
  await embedded?.close();
}
