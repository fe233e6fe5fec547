import type postgres from "postgres";
import { migrate } from "../store/migration.ts";
import { PostgresStore, type SqlExecutor } from "../store/postgres_store.ts";
import { InMemoryEventStore, type InMemoryTransaction } from "./in_memory_store.ts";
import type { StoreHarness, StoreHarnessFactory, StoreHarnessOptions } from "./store_contract.ts";
import { testDatabase, type TestDatabaseOptions } from "./test_database.ts";

const CHANNEL = "eventsalsa_contract";

/**
 * A harness factory for the contract suite on {@link PostgresStore}: each scenario gets its own
 * schema from `testDatabase(databaseOptions)`, migrated with the scenario's options.
 *
 * @example
 * ```ts
 * import { eventStoreContract, postgresStoreHarness } from "@eventsalsa/eventsalsa/testing";
 * eventStoreContract("PostgresStore, prepare: false", postgresStoreHarness({ prepare: false }));
 * ```
 */
export function postgresStoreHarness(
  databaseOptions: TestDatabaseOptions = {},
): StoreHarnessFactory<SqlExecutor> {
  return async (options: StoreHarnessOptions): Promise<StoreHarness<SqlExecutor>> => {
    const db = await testDatabase(databaseOptions);
    const sql = db.supportsConcurrency
      ? db.connect({ prepare: databaseOptions.prepare ?? true, max: 20 })
      : db.sql;
    await migrate(sql, {
      partitioning: options.partitioning ? { strategy: "native", ...options.partitioning } : null,
    });
    const store = new PostgresStore({ notifyChannel: CHANNEL });
    return {
      store,
      transaction: <T>(work: (tx: SqlExecutor) => Promise<T>) =>
        sql.begin((tx) => work(tx)) as Promise<T>,
      notifyChannel: CHANNEL,
      async listen(onNotify: (payload: string) => void): Promise<() => Promise<void>> {
        // LISTEN needs a session of its own: through a transaction pooler, on the server directly.
        const listening = databaseOptions.pooler === undefined ? sql : db.connectDirect({ max: 1 });
        const listener: postgres.ListenMeta = await listening.listen(CHANNEL, onNotify);
        return () => listener.unlisten();
      },
      concurrencySkipReason: db.concurrencySkipReason,
      rawQuery: (text: string, params: unknown[] = []) =>
        sql.unsafe(text, params as postgres.ParameterOrJSON<never>[]).values(),
      close: () => db.close(),
    };
  };
}

/**
 * A harness factory for the contract suite on {@link InMemoryEventStore} (no partitioning).
 *
 * @example
 * ```ts
 * import { eventStoreContract, inMemoryStoreHarness } from "@eventsalsa/eventsalsa/testing";
 * eventStoreContract("in memory", inMemoryStoreHarness());
 * ```
 */
export function inMemoryStoreHarness(): StoreHarnessFactory<
  InMemoryTransaction | InMemoryEventStore
> {
  return (
    options: StoreHarnessOptions,
  ): Promise<StoreHarness<InMemoryTransaction | InMemoryEventStore> | null> => {
    if (options.partitioning) return Promise.resolve(null);
    const store = new InMemoryEventStore({ notifyChannel: CHANNEL });
    return Promise.resolve({
      store,
      transaction: <T>(work: (tx: InMemoryTransaction) => Promise<T>) => store.transaction(work),
      notifyChannel: CHANNEL,
      listen(onNotify: (payload: string) => void): Promise<() => Promise<void>> {
        const stop = store.listen(CHANNEL, onNotify);
        return Promise.resolve(() => Promise.resolve(stop()));
      },
      concurrencySkipReason: null,
      close: () => Promise.resolve(),
    });
  };
}
