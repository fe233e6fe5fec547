/**
 * The decider: an aggregate as three pure functions. `initialState` is the state before any event,
 * `evolve` folds one event into the state, and `decide` turns a command and the current state into
 * the events to append (or throws a domain error). Nothing here knows about storage.
 *
 * @module
 */
import { ValidationError } from "../store/errors.ts";

/**
 * An aggregate's behaviour, without storage. `Event` is usually a registry's
 * `DomainEvent<typeof definitions>` (`{ type, data }`), so `evolve` and `decide` switch on `type`.
 *
 * When the command handler replays stored events, each one is decoded by the registry (upcast to
 * its current version) before `evolve` sees it; the events a command appends are decoded from the
 * bytes just written before they are folded, so the state a command returns is exactly the state
 * a later replay (or snapshot) produces.
 *
 * @example
 * ```ts
 * import type { Decider } from "@eventsalsa/eventsalsa/command";
 *
 * type Event = { type: "Deposited"; data: { amount: number } };
 * type Command = { type: "Deposit"; amount: number };
 * const account: Decider<{ balance: number }, Command, Event> = {
 *   initialState: () => ({ balance: 0 }),
 *   evolve: (state, event) => ({ balance: state.balance + event.data.amount }),
 *   decide: (command) => [{ type: "Deposited", data: { amount: command.amount } }],
 * };
 * ```
 */
export interface Decider<State, Command, Event> {
  /** The state of an aggregate with no events. Called once per load; return a fresh value. */
  readonly initialState: () => State;
  /** Folds one event into the state. Pure: return the new state (mutating and returning is fine). */
  readonly evolve: (state: State, event: Event) => State;
  /**
   * The events a command produces in a state: one event, an array (empty for "nothing to do"),
   * or a promise of either. Throw to refuse the command; nothing is written then.
   */
  readonly decide: (
    command: Command,
    state: State,
  ) => Event | readonly Event[] | Promise<Event | readonly Event[]>;
}

/**
 * Checks that `decider` has the three functions, and returns it. A typo in a hand-written object
 * is a `ValidationError` at start-up instead of a `TypeError` on the first command.
 *
 * @example
 * ```ts
 * import { defineDecider } from "@eventsalsa/eventsalsa/command";
 *
 * type Event = { type: "Incremented"; data: { by: number } };
 * const counter = defineDecider<number, { by: number }, Event>({
 *   initialState: () => 0,
 *   evolve: (count, event) => count + event.data.by,
 *   decide: (command) => ({ type: "Incremented", data: { by: command.by } }),
 * });
 * ```
 */
export function defineDecider<State, Command, Event>(
  decider: Decider<State, Command, Event>,
): Decider<State, Command, Event> {
  checkDecider(decider);
  return decider;
}

/** Throws a `ValidationError` unless `decider` has the three functions. */
export function checkDecider(decider: unknown): void {
  if (typeof decider !== "object" || decider === null) {
    throw new ValidationError("decider must be an object with initialState, evolve and decide");
  }
  for (const name of ["initialState", "evolve", "decide"] as const) {
    if (typeof (decider as Record<string, unknown>)[name] !== "function") {
      throw new ValidationError(`decider.${name} must be a function`);
    }
  }
}

/** What `decide` returned, as an array (a single event becomes a one-element array). */
export async function decideEvents<State, Command, Event>(
  decider: Decider<State, Command, Event>,
  command: Command,
  state: State,
): Promise<readonly Event[]> {
  const decided = await decider.decide(command, state);
  if (Array.isArray(decided)) return decided as readonly Event[];
  if (decided === undefined || decided === null) {
    throw new ValidationError(
      "decide must return an event, an array of events (empty for none) or a promise of either",
    );
  }
  return [decided as Event];
}
