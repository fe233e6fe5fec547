import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AssertionError } from "node:assert";
import type { Decider } from "../command/decider.ts";
import { defineEvents, type DomainEvent, eventType } from "../store/event_registry.ts";
import { ValidationError } from "../store/errors.ts";
import { commandHandlerSpec, deciderSpec } from "./decider_spec.ts";
import { InMemorySnapshotStore } from "./in_memory_snapshot_store.ts";

const definitions = {
  Opened: eventType<{ owner: string; at: string }>(),
  Deposited: eventType<{ amount: number }>(),
  Withdrawn: eventType<{ amount: number }>(),
};
const AccountEvents = defineEvents(definitions);
type Event = DomainEvent<typeof definitions>;
type Account = { owner: string | null; balance: number };
type Command =
  | { type: "open"; owner: string }
  | { type: "deposit"; amount: number }
  | { type: "withdraw"; amount: number };

class InsufficientFunds extends Error {
  override readonly name = "InsufficientFunds";
}

const account: Decider<Account, Command, Event> = {
  initialState: () => ({ owner: null, balance: 0 }),
  evolve(state, event) {
    switch (event.type) {
      case "Opened":
        return { ...state, owner: event.data.owner };
      case "Deposited":
        return { ...state, balance: state.balance + event.data.amount };
      case "Withdrawn":
        return { ...state, balance: state.balance - event.data.amount };
    }
  },
  decide(command, state) {
    switch (command.type) {
      case "open":
        return state.owner === null
          ? [{ type: "Opened", data: { owner: command.owner, at: "2026-01-01" } }]
          : [];
      case "deposit":
        return { type: "Deposited", data: { amount: command.amount } };
      case "withdraw":
        if (command.amount > state.balance) throw new InsufficientFunds("insufficient funds");
        return [{ type: "Withdrawn", data: { amount: command.amount } }];
    }
  },
};

const opened: Event = { type: "Opened", data: { owner: "ada", at: "2026-01-01" } };
const deposited = (amount: number): Event => ({ type: "Deposited", data: { amount } });

describe("deciderSpec", () => {
  const spec = deciderSpec(account, { events: AccountEvents });

  it("then events", () =>
    spec.given([opened, deposited(10)]).when({ type: "withdraw", amount: 4 })
      .thenEvents([{ type: "Withdrawn", data: { amount: 4 } }]));

  it("a single returned event counts as one", () =>
    spec.given([opened]).when({ type: "deposit", amount: 1 }).thenEvents([deposited(1)]));

  it("then nothing", () =>
    spec.given([opened]).when({ type: "open", owner: "bob" }).thenEvents([]));

  it("then state", () =>
    spec.given([opened, deposited(10)]).when({ type: "withdraw", amount: 3 })
      .thenState({ owner: "ada", balance: 7 }));

  it("then throws", async () => {
    await spec.given([]).when({ type: "withdraw", amount: 1 }).thenThrows(InsufficientFunds);
    await spec.given([]).when({ type: "withdraw", amount: 1 }).thenThrows(/insufficient/);
    await spec.given([]).when({ type: "withdraw", amount: 1 }).thenThrows();
  });

  it("fails when the outcome differs", async () => {
    await assert.rejects(
      spec.given([opened]).when({ type: "deposit", amount: 1 }).thenEvents([deposited(2)]),
      AssertionError,
    );
    await assert.rejects(
      spec.given([opened]).when({ type: "deposit", amount: 1 }).thenThrows(),
      AssertionError,
    );
  });

  it("with the registry, an unregistered decided event fails the specification", async () => {
    const sloppy: Decider<Account, Command, Event> = {
      ...account,
      decide: () => [{ type: "Closed", data: {} } as unknown as Event],
    };
    await deciderSpec(sloppy).given([]).when({ type: "open", owner: "x" })
      .thenEvents([{ type: "Closed", data: {} } as unknown as Event]);
    await deciderSpec(sloppy, { events: AccountEvents }).given([]).when({
      type: "open",
      owner: "x",
    })
      .thenState({ owner: null, balance: 0 }).then(
        () => assert.fail("expected a ValidationError"),
        (error) => assert.ok(error instanceof ValidationError),
      );
  });

  it("runs events through the registry's codec, as the store would", async () => {
    // A Date in event data comes back from JSON as a string: the spec shows what replay shows.
    type DatedEvent = { type: "Opened"; data: { owner: string; at: string } };
    const dated: Decider<unknown, Date, DatedEvent> = {
      initialState: () => null,
      evolve: (_, event) => event.data.at,
      decide: (at) => [{ type: "Opened", data: { owner: "ada", at: at as unknown as string } }],
    };
    const at = new Date(0);
    await deciderSpec(dated).given([]).when(at).thenState(at);
    await deciderSpec(dated, { events: AccountEvents }).given([]).when(at)
      .thenState(at.toISOString());
  });
});

describe("commandHandlerSpec", () => {
  const spec = commandHandlerSpec({
    events: AccountEvents,
    aggregateType: "Account",
    decider: account,
    snapshots: { store: new InMemorySnapshotStore(), policy: 2 },
  });

  it("runs the real handler over the in-memory store", async () => {
    await spec.given([opened, deposited(10)]).when({ type: "withdraw", amount: 4 })
      .thenEvents([{ type: "Withdrawn", data: { amount: 4 } }]);
    assert.equal(spec.lastResult?.version, 3);
    assert.equal(spec.lastResult?.snapshotWritten, true);
    assert.equal((await spec.store.readStream(spec.store, "Account", "spec-1")).version, 3);
  });

  it("then state and then throws", async () => {
    await spec.given([opened]).when({ type: "deposit", amount: 5 })
      .thenState({ owner: "ada", balance: 5 });
    await spec.given([opened]).when({ type: "withdraw", amount: 5 }).thenThrows(InsufficientFunds);
    assert.equal((await spec.store.readStream(spec.store, "Account", "spec-1")).version, 1);
  });

  it("validates the handler options at once", () => {
    assert.throws(
      () => commandHandlerSpec({ events: AccountEvents, aggregateType: "", decider: account }),
      ValidationError,
    );
  });
});
