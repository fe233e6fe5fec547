/**
 * `sql.begin` for the transactions the library opens itself, safe when the connection dies.
 *
 * postgres.js 3.4.x ends a transaction by writing ROLLBACK or COMMIT on the transaction's
 * connection once the callback settles. If that connection was closed meanwhile (the backend was
 * terminated, the server ended an idle transaction, the network dropped), the write goes to a
 * socket that is gone and throws `TypeError: Cannot read properties of null (reading 'write')`
 * from a timer, where nobody can catch it: the process dies. `sql.begin` itself already rejects
 * when the connection closes, so the callback's result is not needed any more. Here the callback
 * never settles once its connection is lost, so postgres.js never writes to the dead socket, and
 * the caller gets `begin`'s own rejection (a `CONNECTION_CLOSED` error).
 *
 * @module
 */
import type postgres from "postgres";

/** How long a callback that failed with a connection error waits for the close to be reported. */
const CLOSE_GRACE_MS = 5_000;

/** postgres.js' own connection error codes, and the socket errors Deno and Bun report. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ECONNREFUSED",
]);

/**
 * Whether `error` says the connection (not the statement) failed: postgres.js connection errors,
 * socket errors, and the server's FATAL codes that end the session (class 08, admin or crash
 * shutdown, the idle-in-transaction and idle-session timeouts).
 */
export function isConnectionLoss(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  return CONNECTION_CODES.has(code) || code.startsWith("08") || code === "57P01" ||
    code === "57P02" || code === "57P03" || code === "25P03" || code === "57P05";
}

/** One macrotask turn: every microtask of a socket event that just ran (the close) has settled. */
function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * What a transaction's body learns about its connection: `lost` turns true once the connection
 * is known to be gone; from then on nothing may be sent on the transaction.
 */
export interface TransactionLink {
  readonly lost: boolean;
}

/**
 * Runs `work` in a new transaction on `sql` (see the module doc). When the connection is lost,
 * the returned promise rejects with postgres.js' close error and `work`'s own settlement is
 * dropped (it never reaches postgres.js).
 */
export function begin<T>(
  // deno-lint-ignore no-explicit-any
  sql: postgres.Sql<any>,
  // deno-lint-ignore no-explicit-any
  work: (tx: postgres.TransactionSql<any>, link: TransactionLink) => Promise<T>,
  options?: string,
): Promise<T> {
  const link = { lost: false };
  let settle!: () => void;
  const ended = new Promise<void>((resolve) => (settle = resolve));
  // deno-lint-ignore no-explicit-any
  const body = async (tx: postgres.TransactionSql<any>): Promise<T> => {
    let value: T;
    try {
      value = await work(tx, link);
    } catch (error) {
      // Let the close (if any) finish reporting itself before postgres.js writes ROLLBACK.
      await turn();
      if (!link.lost && isConnectionLoss(error)) {
        await Promise.race([ended, new Promise((r) => setTimeout(r, CLOSE_GRACE_MS))]);
      }
      if (link.lost) return never();
      throw error;
    }
    if (link.lost) return never();
    return value;
  };
  const running = (options === undefined ? sql.begin(body) : sql.begin(options, body)) as Promise<
    T
  >;
  running.then(settle, (error) => {
    if (isConnectionLoss(error)) link.lost = true;
    settle();
  });
  return running;
}

/** A promise that never settles (nothing keeps it, so it is collected with its callback). */
function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}
