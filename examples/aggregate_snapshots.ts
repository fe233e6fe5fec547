/**
 * An aggregate on the command handler: a decider (initialState, evolve, decide) over typed events,
 * snapshots every 10 events (gzip-compressed, in a custom table), conflicts retried by the handler,
 * and a truncation of the snapshots table that changes nothing but speed.
 *
 *   deno run -A examples/aggregate_snapshots.ts
 */
import {
  CommandHandler,
  type Decider,
  gzip,
  migrate as migrateSnapshots,
  PostgresSnapshotStore,
} from "../command/mod.ts";
import { defineEvents, type DomainEvent, eventType, migrate, PostgresStore } from "../store/mod.ts";
import { connect } from "./connect.ts";

const definitions = {
  AccountOpened: eventType<{ owner: string }>(),
  MoneyDeposited: eventType<{ amount: number }>(),
  MoneyWithdrawn: eventType<{ amount: number }>(),
};
const AccountEvents = defineEvents(definitions);

type Account = { owner: string | null; balance: number };
type Command =
  | { type: "open"; owner: string }
  | { type: "deposit"; amount: number }
  | { type: "withdraw"; amount: number };

class InsufficientFunds extends Error {
  override readonly name = "InsufficientFunds";
}

const account: Decider<Account, Command, DomainEvent<typeof definitions>> = {
  initialState: () => ({ owner: null, balance: 0 }),
  evolve(state, event) {
    switch (event.type) {
      case "AccountOpened":
        return { ...state, owner: event.data.owner };
      case "MoneyDeposited":
        return { ...state, balance: state.balance + event.data.amount };
      case "MoneyWithdrawn":
        return { ...state, balance: state.balance - event.data.amount };
    }
  },
  decide(command, state) {
    if (command.type === "open") {
      return state.owner === null
        ? [{ type: "AccountOpened", data: { owner: command.owner } }]
        : []; // opening twice is a no-op
    }
    if (state.owner === null) throw new Error("no such account");
    if (command.type === "deposit") {
      return [{ type: "MoneyDeposited", data: { amount: command.amount } }];
    }
    if (command.amount > state.balance) {
      throw new InsufficientFunds(`balance ${state.balance} < ${command.amount}`);
    }
    return [{ type: "MoneyWithdrawn", data: { amount: command.amount } }];
  },
};

const db = await connect("eventsalsa_example_snapshots");
try {
  await migrate(db.sql);
  await migrateSnapshots(db.sql, { table: "account_snapshots" });
  const accounts = new CommandHandler({
    store: new PostgresStore(),
    events: AccountEvents,
    aggregateType: "Account",
    decider: account,
    snapshots: {
      store: new PostgresSnapshotStore({ table: "account_snapshots" }),
      policy: 10, // a snapshot once 10 events have been appended since the last one
      transformers: [gzip()],
    },
    retry: { maxAttempts: 20 },
  });
  const id = `acc-${crypto.randomUUID().slice(0, 8)}`;

  await accounts.handle(db.sql, id, { type: "open", owner: "ada" }); // its own transaction
  for (let i = 1; i <= 24; i++) {
    await accounts.handle(db.sql, id, { type: "deposit", amount: 10 });
  }
  // Six writers at once: the losers of each race reload and retry, nobody sees an error.
  const results = await Promise.all(
    Array.from({ length: 6 }, () => accounts.handle(db.sql, id, { type: "deposit", amount: 5 })),
  );
  const versions = results.map((r) => r.version).sort((a, b) => a - b);
  console.log(`6 concurrent deposits landed at versions ${versions.join(", ")}`);

  // In the caller's transaction, together with anything else the caller writes.
  await db.sql.begin((tx) => accounts.handle(tx, id, { type: "withdraw", amount: 20 }));
  try {
    await accounts.handle(db.sql, id, { type: "withdraw", amount: 1_000 });
  } catch (error) {
    if (!(error instanceof InsufficientFunds)) throw error;
    console.log(`refused: ${error.message} (nothing written)`);
  }

  const loaded = await accounts.load(db.sql, id);
  console.log(
    `${loaded.state.owner}: balance ${loaded.state.balance} at version ${loaded.version}; ` +
      `snapshot at version ${loaded.snapshotVersion} + ${loaded.eventsReplayed} events`,
  );

  await db.sql`TRUNCATE account_snapshots`;
  const replayed = await accounts.load(db.sql, id);
  const same = replayed.state.balance === loaded.state.balance &&
    replayed.version === loaded.version;
  console.log(
    `after TRUNCATE: ${same ? "same" : "DIFFERENT"} state from ${replayed.eventsReplayed} events`,
  );
  if (!same) throw new Error("a snapshot changed the state");
} finally {
  await db.close();
}
