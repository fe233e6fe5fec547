/**
 * Register a user with `noStream()` inside your own transaction, and use a reservation aggregate
 * to keep e-mail addresses unique.
 *
 *   deno run -A examples/register_user.ts
 */
import { ConcurrencyError, migrate, noStream, PostgresStore } from "../store/mod.ts";
import { connect } from "./connect.ts";

const db = await connect();
try {
  await migrate(db.sql);
  const store = new PostgresStore();
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

  const registerUser = async (email: string, name: string): Promise<string> => {
    const userId = crypto.randomUUID();
    await db.sql.begin(async (tx) => {
      // Both appends commit together or not at all: the reservation is the uniqueness guard.
      await store.append(tx, noStream(), [{
        aggregateType: "EmailReservation",
        aggregateId: email.toLowerCase(),
        eventType: "EmailReserved",
        payload: json({ userId }),
      }]);
      await store.append(tx, noStream(), [{
        aggregateType: "User",
        aggregateId: userId,
        eventType: "UserRegistered",
        eventVersion: 1,
        payload: json({ email, name }),
        metadata: {},
        createdAt: new Date(),
      }]);
    });
    return userId;
  };

  const email = `ada-${crypto.randomUUID().slice(0, 8)}@example.com`;
  const userId = await registerUser(email, "Ada");
  console.log(`registered ${email} as ${userId}`);
  try {
    await registerUser(email.toUpperCase(), "Ada again");
    throw new Error("the second registration should have been refused");
  } catch (error) {
    if (!(error instanceof ConcurrencyError)) throw error;
    console.log(`refused duplicate: ${error.aggregateType}/${error.aggregateId} already exists`);
  }
  const user = await store.readStream(db.sql, "User", userId);
  console.log(`User ${userId} has ${user.events.length} event(s): ${user.events[0].eventType}`);
} finally {
  await db.close();
}
