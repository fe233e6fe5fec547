/**
 * How the command handler tells the caller's transaction from a handle that opens transactions
 * (a postgres.js pool, the in-memory store itself), and how it opens one.
 *
 * @module
 */
import type postgres from "postgres";
import { isPool, type SqlExecutor } from "../internal/postgres_client.ts";
import { begin } from "../internal/transaction.ts";

/**
 * Opens transactions for the command handler. Given a handle that can open transactions (a
 * pool), the handler runs each attempt in a fresh transaction of its own; given a transaction, it
 * works inside it. The default ({@link autoTransactions}) knows postgres.js pools and the
 * in-memory store; implement this for another store.
 *
 * @example
 * ```ts
 * import type { TransactionPort } from "@eventsalsa/eventsalsa/command";
 *
 * interface MyPool { transaction<T>(work: (tx: MyTx) => Promise<T>): Promise<T> }
 * interface MyTx { query(text: string): Promise<unknown> }
 * const myTransactions: TransactionPort<MyPool | MyTx> = {
 *   opensTransactions: (handle) => "transaction" in handle,
 *   begin: (handle, work) => (handle as MyPool).transaction(work),
 * };
 * ```
 */
export interface TransactionPort<Tx> {
  /** Whether `handle` opens transactions (a pool) rather than being one. */
  opensTransactions(handle: Tx): boolean;
  /** Runs `work` in a new transaction on `handle`: commit when it resolves, rollback when it throws. */
  begin<T>(handle: Tx, work: (tx: Tx) => Promise<T>): Promise<T>;
}

type Transactor = { transaction: (work: (tx: unknown) => Promise<unknown>) => Promise<unknown> };

/** A postgres.js pool or reserved connection (anything that can `begin`). */
const opensPostgresTransactions = (handle: unknown): boolean =>
  handle != null && isPool(handle as SqlExecutor);

function isTransactor(handle: unknown): handle is Transactor {
  return typeof (handle as Partial<Transactor> | null)?.transaction === "function";
}

/**
 * The default {@link TransactionPort}: a postgres.js pool or reserved connection (anything with
 * `begin`) opens a transaction with it (through the library's connection-loss-safe `begin`), an
 * object with `transaction(work)` (the `InMemoryEventStore`) opens one with that, and anything
 * else is taken to be the caller's transaction.
 *
 * @example
 * ```ts
 * import { autoTransactions } from "@eventsalsa/eventsalsa/command";
 * import { InMemoryEventStore } from "@eventsalsa/eventsalsa/testing";
 * const store = new InMemoryEventStore();
 * console.log(autoTransactions.opensTransactions(store)); // true
 * ```
 */
export const autoTransactions: TransactionPort<unknown> = {
  opensTransactions(handle: unknown): boolean {
    return opensPostgresTransactions(handle) || isTransactor(handle);
  },
  begin<T>(handle: unknown, work: (tx: unknown) => Promise<T>): Promise<T> {
    if (opensPostgresTransactions(handle)) {
      // deno-lint-ignore no-explicit-any
      return begin(handle as unknown as postgres.Sql<any>, (tx) => work(tx));
    }
    if (isTransactor(handle)) return handle.transaction(work) as Promise<T>;
    return Promise.reject(new TypeError("this handle cannot open a transaction"));
  },
};
