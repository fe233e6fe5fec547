/**
 * `deno task demo` or `bun run demo`: the whole stack in one run, on the embedded PGlite when
 * DATABASE_URL is unset (on your PostgreSQL when it is set, in a schema `eventsalsa_demo`).
 * Re-runnable: every run uses fresh ids.
 *
 * 1. migrates the store, worker and encryption tables;
 * 2. registers customers with encrypted PII and an HMAC blind index for e-mail lookups;
 * 3. places and confirms orders, and catches and retries an optimistic-concurrency conflict;
 * 4. runs a worker with two projections, printing progress until they have caught up;
 * 5. queries the read models;
 * 6. deletes a customer (crypto-shredding): the events stay, the PII is unreadable.
 */
import {
  ConcurrencyError,
  defineEvents,
  eventType,
  exact,
  migrate as migrateStore,
  noStream,
  PostgresStore,
} from "../store/mod.ts";
import { migrate as migrateWorker, status, Worker } from "../worker/mod.ts";
import {
  BlindIndex,
  createEncryption,
  KeyDestroyedError,
  keyringFromMap,
  migrate as migrateEncryption,
  normalizers,
  PostgresKeyStore,
} from "../encryption/mod.ts";
import process from "node:process";
import { connect } from "./connect.ts";

const say = (line = "") => console.log(line);
const started = performance.now();
const db = await connect("eventsalsa_demo");
const { sql } = db;
say(
  db.embedded
    ? "Database: embedded PGlite (set DATABASE_URL to use your PostgreSQL)"
    : "Database: DATABASE_URL",
);

// Typed events: the registry encodes payloads (JSON) and decodes them into a union.
const Customer = defineEvents({
  CustomerRegistered: eventType<{ name: string; email: string; emailIndex: string }>(),
  CustomerDeleted: eventType<{ reason: string }>(),
});
const Order = defineEvents({
  OrderPlaced: eventType<{ customerId: string }>(),
  ItemAdded: eventType<{ sku: string; quantity: number; price: number }>(),
  OrderConfirmed: eventType<{ by: string }>(),
});

try {
  // 1. Schema: idempotent, so re-running is fine.
  await migrateStore(sql);
  await migrateWorker(sql);
  await migrateEncryption(sql);
  await sql`CREATE TABLE IF NOT EXISTS demo_customer_directory (
    customer_id text PRIMARY KEY, email_index text NOT NULL, name text NOT NULL, deleted boolean NOT NULL DEFAULT false)`;
  await sql`CREATE TABLE IF NOT EXISTS demo_order_owner (order_id text PRIMARY KEY, customer_id text NOT NULL)`;
  await sql`CREATE TABLE IF NOT EXISTS demo_customer_revenue (
    customer_id text PRIMARY KEY, orders int NOT NULL DEFAULT 0, revenue numeric NOT NULL DEFAULT 0)`;
  say("1. migrated store, worker and encryption tables");

  // 2. Encryption: system key (KEK) from memory here; from files or env in production.
  const store = new PostgresStore();
  const encryption = createEncryption({
    keyring: keyringFromMap({ "demo-kek": crypto.getRandomValues(new Uint8Array(32)) }, "demo-kek"),
    store: new PostgresKeyStore(),
  });
  const pii = encryption.pii("customer-pii");
  const emailIndex = new BlindIndex({
    keys: { "bi-1": crypto.getRandomValues(new Uint8Array(32)) },
    activeKeyId: "bi-1",
    normalize: { email: [normalizers.nfc, normalizers.trim, normalizers.lowerCase] },
  });
  const run = crypto.randomUUID().slice(0, 6);
  const people = ["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Alan Kay"];
  const customers: Array<{ id: string; email: string }> = [];
  for (let i = 0; i < 40; i++) {
    const id = `customer-${run}-${i}`;
    const name = people[i % people.length];
    const email = `${name.split(" ")[0].toLowerCase()}.${i}.${run}@example.com`;
    await sql.begin(async (tx) => {
      // The key, the ciphertexts and the event commit together.
      await encryption.keyManager.createKey(tx, "customer-pii", id);
      await store.append(
        tx,
        noStream(),
        Customer.toEvents({ aggregateType: "Customer", aggregateId: id }, [{
          type: "CustomerRegistered",
          data: {
            name: await pii.encrypt(tx, id, name),
            email: await pii.encrypt(tx, id, email),
            emailIndex: emailIndex.hash("email", email),
          },
        }]),
      );
    });
    customers.push({ id, email });
  }
  say(`2. registered ${customers.length} customers; names and e-mails encrypted per customer`);

  // 3. Orders, and a conflict: two clerks confirm the same order from the same stale version.
  let orderCount = 0;
  for (const [i, customer] of customers.entries()) {
    for (let o = 0; o < 1 + (i % 4); o++) {
      const orderId = `order-${run}-${++orderCount}`;
      await sql.begin((tx) =>
        store.append(
          tx,
          noStream(),
          Order.toEvents({ aggregateType: "Order", aggregateId: orderId }, [
            { type: "OrderPlaced", data: { customerId: customer.id } },
            {
              type: "ItemAdded",
              data: { sku: "espresso", quantity: 1 + ((i + o) % 3), price: 3.2 },
            },
            { type: "ItemAdded", data: { sku: "croissant", quantity: 1, price: 2.5 } },
            { type: "OrderConfirmed", data: { by: "shop" } },
          ]),
        )
      );
    }
  }
  const contested = `order-${run}-contested`;
  await store.append(
    sql,
    noStream(),
    Order.toEvents({ aggregateType: "Order", aggregateId: contested }, [
      { type: "OrderPlaced", data: { customerId: customers[0].id } },
    ]),
  );
  const seenByBoth = await store.readStream(sql, "Order", contested);
  const addItem = (version: number, by: string) =>
    sql.begin((tx) =>
      store.append(
        tx,
        exact(version),
        Order.toEvents({ aggregateType: "Order", aggregateId: contested }, [
          { type: "ItemAdded", data: { sku: `gift-from-${by}`, quantity: 1, price: 10 } },
        ]),
      )
    );
  await addItem(seenByBoth.version, "clerk-1");
  try {
    await addItem(seenByBoth.version, "clerk-2");
    throw new Error("the stale append should have conflicted");
  } catch (error) {
    if (!(error instanceof ConcurrencyError)) throw error;
    say(`3. placed ${orderCount + 1} orders; conflict caught: ${error.message}`);
    const fresh = await store.readStream(sql, "Order", contested);
    await addItem(fresh.version, "clerk-2");
    await store.append(
      sql,
      exact(fresh.version + 1),
      Order.toEvents({ aggregateType: "Order", aggregateId: contested }, [
        { type: "OrderConfirmed", data: { by: "clerk-2" } },
      ]),
    );
    say(`   clerk-2 reloaded version ${fresh.version}, retried, and confirmed the order`);
  }

  // 4. A worker with two projections; their writes commit with their checkpoints.
  const worker = new Worker(sql, store, [
    {
      name: "demo_customer_directory",
      aggregateTypes: ["Customer"],
      async handle(tx, event) {
        const decoded = Customer.fromEvent(event);
        if (decoded.type === "CustomerRegistered") {
          await tx`INSERT INTO demo_customer_directory (customer_id, email_index, name)
            VALUES (${event.aggregateId}, ${decoded.data.emailIndex}, ${decoded.data.name})
            ON CONFLICT (customer_id) DO NOTHING`;
        } else {
          await tx`UPDATE demo_customer_directory SET deleted = true WHERE customer_id = ${event.aggregateId}`;
        }
      },
    },
    {
      name: "demo_customer_revenue",
      aggregateTypes: ["Order"],
      async handle(tx, event) {
        const decoded = Order.fromEvent(event);
        if (decoded.type === "OrderPlaced") {
          await tx`INSERT INTO demo_order_owner VALUES (${event.aggregateId}, ${decoded.data.customerId})
            ON CONFLICT (order_id) DO NOTHING`;
          await tx`INSERT INTO demo_customer_revenue (customer_id, orders) VALUES (${decoded.data.customerId}, 1)
            ON CONFLICT (customer_id) DO UPDATE SET orders = demo_customer_revenue.orders + 1`;
        } else if (decoded.type === "ItemAdded") {
          const amount = decoded.data.quantity * decoded.data.price;
          await tx`UPDATE demo_customer_revenue r SET revenue = revenue + ${amount}
            FROM demo_order_owner o WHERE o.order_id = ${event.aggregateId} AND r.customer_id = o.customer_id`;
        }
      },
    },
  ], {
    pollInterval: 50,
    maxPollInterval: 500,
    batchSize: 200,
    batchPause: 0,
  });
  const controller = new AbortController();
  const running = worker.start(controller.signal);
  const target = await store.latestPosition(sql);
  const progressStarted = performance.now();
  const bar = (done: number, total: number) => {
    const filled = Math.round((done / Math.max(1, total)) * 20);
    return `[${"#".repeat(filled)}${".".repeat(20 - filled)}]`;
  };
  say("4. worker running two projections:");
  for (;;) {
    const report = await status(sql);
    const mine = report.consumers.filter((c) => c.name.startsWith("demo_"));
    if (mine.length < 2) { // not registered yet
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    const handled = mine.reduce((sum, c) => sum + Math.min(c.checkpoint, target), 0);
    const seconds = (performance.now() - progressStarted) / 1000;
    const line = mine.map((c) =>
      `${c.name.replace("demo_", "")} ${bar(c.checkpoint, target)} lag ${c.lag}`
    )
      .join("  ");
    const rate = Math.round(handled / Math.max(seconds, 0.001));
    const caughtUp = mine.every((c) => c.checkpoint >= target);
    const text = `   ${line}  ${rate.toLocaleString("en")} events/s`;
    if (caughtUp || !process.stdout.isTTY) say(text);
    else process.stdout.write(`\r${text}`);
    if (caughtUp) break;
    if (seconds > 45) throw new Error("the projections did not catch up within 45 s");
    await new Promise((resolve) => setTimeout(resolve, 250));
  }

  // 5. The read models: revenue per customer, names decrypted for display, lookup by e-mail.
  const ids = customers.map((c) => c.id);
  const top = await sql`SELECT r.customer_id, r.orders, r.revenue::float8 AS revenue, d.name
    FROM demo_customer_revenue r JOIN demo_customer_directory d USING (customer_id)
    WHERE r.customer_id IN ${sql(ids)} ORDER BY r.revenue DESC, r.customer_id LIMIT 3`;
  say("5. top customers by revenue:");
  for (const row of top) {
    say(
      `   ${(await pii.decrypt(sql, row.customer_id, row.name)).padEnd(16)} ${row.orders} orders  ${
        row.revenue.toFixed(2)
      } EUR`,
    );
  }
  const wanted = customers[7];
  const [found] = await sql`SELECT customer_id, name FROM demo_customer_directory
    WHERE email_index IN ${sql(emailIndex.candidates("email", ` ${wanted.email.toUpperCase()} `))}`;
  say(
    `   lookup by e-mail (blind index, normalised): ${await pii.decrypt(
      sql,
      found.customer_id,
      found.name,
    )}`,
  );

  // 6. Crypto-shredding: the deletion event and the key destruction commit as one.
  const victim = customers[0];
  await sql.begin(async (tx) => {
    const head = await store.headVersion(tx, "Customer", victim.id);
    await store.append(
      tx,
      exact(head),
      Customer.toEvents({ aggregateType: "Customer", aggregateId: victim.id }, [
        { type: "CustomerDeleted", data: { reason: "right to erasure" } },
      ]),
    );
    await encryption.keyManager.destroyKeys(tx, "customer-pii", victim.id);
  });
  const history = await store.readStream(sql, "Customer", victim.id);
  const registered = Customer.fromEvent(history.events[0]);
  try {
    if (registered.type === "CustomerRegistered") {
      await pii.decrypt(sql, victim.id, registered.data.name);
    }
    throw new Error("the shredded name should not decrypt");
  } catch (error) {
    if (!(error instanceof KeyDestroyedError)) throw error;
    say(
      `6. deleted ${victim.id}: its ${history.events.length} events remain, ` +
        `its PII is unreadable (${error.name})`,
    );
  }
  controller.abort();
  await running;
  say(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await db.close();
}
