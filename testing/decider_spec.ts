import assert from "node:assert/strict";
import {
  CommandHandler,
  type CommandHandlerOptions,
  type CommandResult,
} from "../command/command_handler.ts";
import { checkDecider, decideEvents, type Decider } from "../command/decider.ts";
import type { DomainEvent, EventRegistry } from "../store/event_registry.ts";
import { any } from "../store/expected_version.ts";
import type { PersistedEvent } from "../store/types.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "./in_memory_store.ts";

/**
 * What `thenThrows` accepts: an error class, a pattern for the message, a predicate, or an object
 * whose properties the error must have (as `assert.rejects` takes them).
 *
 * @example
 * ```ts
 * import type { ErrorMatcher } from "@eventsalsa/eventsalsa/testing";
 * const byMessage: ErrorMatcher = /insufficient funds/;
 * const byName: ErrorMatcher = { name: "ConcurrencyError" };
 * ```
 */
export type ErrorMatcher =
  // deno-lint-ignore no-explicit-any
  | (new (...args: any[]) => Error)
  | RegExp
  | ((error: unknown) => boolean)
  | Record<string, unknown>;

/**
 * The last step of a given/when/then specification. Each method runs the specification and
 * rejects (an `AssertionError`) when the outcome differs.
 *
 * @example
 * ```ts
 * import type { Then } from "@eventsalsa/eventsalsa/testing";
 * async function expectNothing<S, E>(then: Then<S, E>): Promise<void> {
 *   await then.thenEvents([]);
 * }
 * ```
 */
export interface Then<State, Event> {
  /** The command produced exactly these events (in order; `[]` for none). */
  thenEvents(expected: readonly Event[]): Promise<void>;
  /** The state after the given events and the command's events equals `expected`. */
  thenState(expected: State): Promise<void>;
  /** The command was refused with an error matching `matcher` (any error when omitted). */
  thenThrows(matcher?: ErrorMatcher): Promise<void>;
}

/**
 * The middle step: which command to run.
 *
 * @example
 * ```ts
 * import type { When } from "@eventsalsa/eventsalsa/testing";
 * function deposit<S, E>(when: When<S, { amount: number }, E>) {
 *   return when.when({ amount: 5 });
 * }
 * ```
 */
export interface When<State, Command, Event> {
  /** Runs `command` against the state the given events produce. */
  when(command: Command): Then<State, Event>;
}

/**
 * A given/when/then specification of a decider: `given(events).when(command)` then an outcome.
 *
 * @example
 * ```ts
 * import type { DeciderSpecification } from "@eventsalsa/eventsalsa/testing";
 * type Spec = DeciderSpecification<number, number, { type: "Added"; data: { n: number } }>;
 * ```
 */
export interface DeciderSpecification<State, Command, Event> {
  /** The history: events that happened before the command (`[]` for a new aggregate). */
  given(events: readonly Event[]): When<State, Command, Event>;
}

/**
 * Options for {@link deciderSpec}.
 *
 * @example
 * ```ts
 * import { defineEvents, eventType } from "@eventsalsa/eventsalsa/store";
 * import type { DeciderSpecOptions } from "@eventsalsa/eventsalsa/testing";
 * const definitions = { Added: eventType<{ n: number }>() };
 * const options: DeciderSpecOptions<typeof definitions> = { events: defineEvents(definitions) };
 * ```
 */
export interface DeciderSpecOptions<Definitions> {
  /**
   * The registry: when given, given events and decided events travel through its codec (encode,
   * decode, upcast) as they would through the store, and an unregistered decided event fails the
   * specification, so codec surprises (a `Date` that comes back a string) show up here.
   */
  events?: EventRegistry<Definitions>;
}

/** A persisted form of `events`, for running them through a registry without a store. */
function persist<Definitions>(
  registry: EventRegistry<Definitions>,
  events: readonly DomainEvent<Definitions>[],
  fromVersion: number,
): PersistedEvent[] {
  const aggregate = { aggregateType: "Spec", aggregateId: "spec" };
  return registry.toEvents(aggregate, events).map((event, i) => ({
    globalPosition: fromVersion + i + 1,
    aggregateType: aggregate.aggregateType,
    aggregateId: aggregate.aggregateId,
    aggregateVersion: fromVersion + i + 1,
    eventId: crypto.randomUUID(),
    eventType: event.eventType,
    eventVersion: event.eventVersion ?? 1,
    payload: event.payload,
    metadata: null,
    createdAt: new Date(),
    traceId: null,
    correlationId: null,
    causationId: null,
  }));
}

/**
 * Given/when/then for a decider, without a database: `given` events are folded with `evolve`,
 * `when` runs `decide`, and `thenEvents`, `thenState` or `thenThrows` check the outcome. With the
 * registry (`options.events`), events go through its codec as they would through the store.
 *
 * @example
 * ```ts
 * import { it } from "node:test";
 * import type { Decider } from "@eventsalsa/eventsalsa/command";
 * import { deciderSpec } from "@eventsalsa/eventsalsa/testing";
 *
 * type Event =
 *   | { type: "Deposited"; data: { amount: number } }
 *   | { type: "Withdrawn"; data: { amount: number } };
 * type Command = { type: "Withdraw"; amount: number };
 * const account: Decider<number, Command, Event> = {
 *   initialState: () => 0,
 *   evolve: (balance, e) => e.type === "Deposited" ? balance + e.data.amount : balance - e.data.amount,
 *   decide: (command, balance) => {
 *     if (command.amount > balance) throw new Error("insufficient funds");
 *     return [{ type: "Withdrawn", data: { amount: command.amount } }];
 *   },
 * };
 * const spec = deciderSpec(account);
 *
 * it("withdraws what is there", () =>
 *   spec.given([{ type: "Deposited", data: { amount: 10 } }])
 *     .when({ type: "Withdraw", amount: 4 })
 *     .thenEvents([{ type: "Withdrawn", data: { amount: 4 } }]));
 *
 * it("refuses an overdraft", () =>
 *   spec.given([]).when({ type: "Withdraw", amount: 1 }).thenThrows(/insufficient funds/));
 * ```
 */
export function deciderSpec<State, Command, Event, Definitions = unknown>(
  decider: Decider<State, Command, Event>,
  options: DeciderSpecOptions<Definitions> = {},
): DeciderSpecification<State, Command, Event> {
  checkDecider(decider);
  const registry = options.events as unknown as EventRegistry<unknown> | undefined;
  /** Events as `evolve` sees them: through the registry when there is one. */
  const roundTrip = (events: readonly Event[], fromVersion: number): readonly Event[] =>
    registry === undefined ? events : persist(
      registry,
      events as unknown as readonly DomainEvent<unknown>[],
      fromVersion,
    ).map((event) => registry.fromEvent(event) as unknown as Event);
  const fold = (state: State, events: readonly Event[]) =>
    events.reduce((s, event) => decider.evolve(s, event), state);
  return {
    given(history) {
      return {
        when(command) {
          const run = async () => {
            const given = roundTrip(history, 0);
            const state = fold(decider.initialState(), given);
            const decided = await decideEvents(decider, command, state);
            const stored = roundTrip(decided, given.length);
            return { decided, state: fold(state, stored) };
          };
          return {
            async thenEvents(expected) {
              const { decided } = await run();
              assert.deepStrictEqual(decided, expected);
            },
            async thenState(expected) {
              const { state } = await run();
              assert.deepStrictEqual(state, expected);
            },
            async thenThrows(matcher) {
              await assert.rejects(run(), matcher as Parameters<typeof assert.rejects>[1]);
            },
          };
        },
      };
    },
  };
}

/**
 * Options for {@link commandHandlerSpec}: the command handler's, without the store (an
 * `InMemoryEventStore` is made for each specification), and the aggregate id to use.
 *
 * @example
 * ```ts
 * import type { CommandHandlerSpecOptions } from "@eventsalsa/eventsalsa/testing";
 * type Options = CommandHandlerSpecOptions<number, number, Record<string, never>>;
 * ```
 */
export type CommandHandlerSpecOptions<State, Command, Definitions> =
  & Omit<
    CommandHandlerOptions<
      State,
      Command,
      Definitions,
      InMemoryTransaction | InMemoryEventStore
    >,
    "store"
  >
  & {
    /** The aggregate the specification runs on; `"spec-1"` when omitted. */
    aggregateId?: string;
  };

/**
 * A given/when/then specification that runs the real {@link CommandHandler} over a fresh
 * `InMemoryEventStore`: `given` events are appended to the store, `when` handles the command,
 * and the outcome is checked. `lastResult` holds the handler's result after a `then` that ran.
 *
 * @example
 * ```ts
 * import type { CommandHandlerSpecification } from "@eventsalsa/eventsalsa/testing";
 * async function appendedCount(spec: CommandHandlerSpecification<number, number, unknown>) {
 *   return (await spec.store.readStream(spec.store, "Counter", "spec-1")).version;
 * }
 * ```
 */
export interface CommandHandlerSpecification<State, Command, Definitions>
  extends DeciderSpecification<State, Command, DomainEvent<Definitions>> {
  /** The store of the last specification run (inspect the stream after a `then`). */
  readonly store: InMemoryEventStore;
  /** The handler's result of the last specification run, or null. */
  readonly lastResult: CommandResult<State, Definitions> | null;
}

/**
 * Given/when/then over the command handler and an `InMemoryEventStore`: the same decider, the same
 * registry, snapshots if configured (with an `InMemorySnapshotStore`), retries and all. `thenEvents`
 * compares the appended events, decoded; `thenState` the state the handler returns.
 *
 * @example
 * ```ts
 * import { it } from "node:test";
 * import type { Decider } from "@eventsalsa/eventsalsa/command";
 * import { defineEvents, type DomainEvent, eventType } from "@eventsalsa/eventsalsa/store";
 * import { commandHandlerSpec } from "@eventsalsa/eventsalsa/testing";
 *
 * const definitions = { Incremented: eventType<{ by: number }>() };
 * const counter: Decider<number, number, DomainEvent<typeof definitions>> = {
 *   initialState: () => 0,
 *   evolve: (count, event) => count + event.data.by,
 *   decide: (by) => [{ type: "Incremented", data: { by } }],
 * };
 * const spec = commandHandlerSpec({
 *   events: defineEvents(definitions),
 *   aggregateType: "Counter",
 *   decider: counter,
 * });
 * it("counts", () =>
 *   spec.given([{ type: "Incremented", data: { by: 2 } }]).when(3).thenState(5));
 * ```
 */
export function commandHandlerSpec<State, Command, Definitions>(
  options: CommandHandlerSpecOptions<State, Command, Definitions>,
): CommandHandlerSpecification<State, Command, Definitions> {
  const { aggregateId = "spec-1", ...handlerOptions } = options;
  let store = new InMemoryEventStore();
  let lastResult: CommandResult<State, Definitions> | null = null;
  // Validates the options now, not at the first `then`.
  new CommandHandler({ ...handlerOptions, store });
  return {
    get store() {
      return store;
    },
    get lastResult() {
      return lastResult;
    },
    given(history) {
      return {
        when(command) {
          const run = async () => {
            store = new InMemoryEventStore();
            lastResult = null;
            const handler = new CommandHandler({ ...handlerOptions, store });
            if (history.length > 0) {
              await store.append(
                store,
                any(),
                options.events.toEvents(
                  { aggregateType: handler.aggregateType, aggregateId },
                  history,
                ),
              );
            }
            lastResult = await handler.handle(store, aggregateId, command);
            return lastResult;
          };
          return {
            async thenEvents(expected) {
              const result = await run();
              const decoded = result.events.map((event) => {
                const { type, data } = options.events.fromEvent(event);
                return { type, data } as DomainEvent<Definitions>;
              });
              assert.deepStrictEqual(decoded, expected);
            },
            async thenState(expected) {
              assert.deepStrictEqual((await run()).state, expected);
            },
            async thenThrows(matcher) {
              await assert.rejects(run(), matcher as Parameters<typeof assert.rejects>[1]);
            },
          };
        },
      };
    },
  };
}
