/**
 * The eventsalsa test harness: an in-memory event store with the PostgreSQL store's semantics, a
 * fake clock, the store contract suite (run it against your own store or configuration), the
 * embedded PGlite database and an isolated-schema test-database helper.
 *
 * @example
 * ```ts
 * import { it } from "node:test";
 * import assert from "node:assert/strict";
 * import { FakeClock, InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
 * import { noStream } from "@eventsalsa/eventsalsa/store";
 *
 * it("appends in memory", async () => {
 *   const store = new InMemoryEventStore();
 *   const result = await store.transaction((tx) =>
 *     store.append(tx, noStream(), [
 *       { aggregateType: "Order", aggregateId: "o-1", eventType: "OrderPlaced", payload: new Uint8Array() },
 *     ])
 *   );
 *   assert.equal(result.toVersion, 1);
 *   const clock = new FakeClock(0);
 *   await clock.advance(1000);
 *   assert.equal(clock.now(), 1000);
 * });
 * ```
 *
 * @module
 */
export { FakeClock } from "./fake_clock.ts";
// postgres.js's types that appear in this module's signatures, under names that say whose they are.
export type { PostgresType } from "postgres";
export {
  InMemoryDeadlockError,
  InMemoryEventStore,
  type InMemoryEventStoreOptions,
  InMemoryTransaction,
} from "./in_memory_store.ts";
export { InMemorySnapshotStore } from "./in_memory_snapshot_store.ts";
export {
  commandHandlerSpec,
  type CommandHandlerSpecification,
  type CommandHandlerSpecOptions,
  deciderSpec,
  type DeciderSpecification,
  type DeciderSpecOptions,
  type ErrorMatcher,
  type Then,
  type When,
} from "./decider_spec.ts";
export {
  eventStoreContract,
  type StoreHarness,
  type StoreHarnessFactory,
  type StoreHarnessOptions,
} from "./store_contract.ts";
export { inMemoryStoreHarness, postgresStoreHarness } from "./store_harnesses.ts";
export {
  type EmbeddedDatabase,
  type EmbeddedDatabaseOptions,
  startEmbeddedDatabase,
} from "./embedded_database.ts";
export {
  type TestDatabase,
  testDatabase,
  type TestDatabaseKind,
  type TestDatabaseOptions,
} from "./test_database.ts";
export {
  InMemoryCoordinator,
  type InMemoryCoordinatorOptions,
  type InMemoryDeadLetter,
  type InMemoryRebalance,
  InMemoryWorker,
} from "./in_memory_coordinator.ts";
export {
  SimulatedFault,
  type SimulatedWorkerState,
  simulateWorkers,
  type SimulationAction,
  type SimulationView,
  WorkerSimulationError,
  type WorkerSimulationOptions,
  type WorkerSimulationReport,
} from "./simulation.ts";
export {
  InMemoryKeyStore,
  type InMemoryKeyStoreOptions,
  type KeyRow,
} from "./in_memory_key_store.ts";
export {
  keyStoreContract,
  type KeyStoreHarness,
  type KeyStoreHarnessFactory,
} from "../encryption/key_store_contract.ts";
