/**
 * The transaction handed to handlers, guarded: once the batch is over (its signal fired, it
 * committed or rolled back, or its connection was lost), every further statement through it is
 * refused instead of running on whatever the connection has become (outside any transaction, or
 * another caller's).
 *
 * A postgres.js query is lazy: it is built when the handler calls `tx\`…\``, and sent a microtask
 * after it is first awaited. Both moments are checked, so a query built while the batch was open
 * but sent after it ended is refused too. Savepoints get a guarded transaction of their own.
 *
 * @module
 */
import { BatchClosedError } from "../errors.ts";

/** The part of a postgres.js `Query` the guard uses to check at send time. */
interface LazyQuery {
  handler?: ((query: unknown) => unknown) & { debug?: unknown };
  reject?: (error: unknown) => void;
}

/** Makes a query refuse to be sent once the batch is over (a no-op for anything else). */
function guardSend(value: unknown, isOpen: () => boolean, closed: () => Error): unknown {
  if (value === null || typeof value !== "object") return value;
  const query = value as LazyQuery;
  const send = query.handler;
  const reject = query.reject;
  if (typeof send !== "function" || typeof reject !== "function") return value;
  const checked = (q: unknown) => isOpen() ? send(q) : reject(closed());
  query.handler = Object.assign(checked, { debug: send.debug });
  return value;
}

/**
 * Wraps `tx` so every call, method and send checks `isOpen()` first; refusals are
 * `BatchClosedError`s naming `consumer`.
 */
export function guardTransaction<T extends object>(
  tx: T,
  isOpen: () => boolean,
  consumer: string,
): T {
  const closed = () => new BatchClosedError(consumer);
  const methods = new Map<PropertyKey, unknown>();
  const call = (target: unknown, self: unknown, args: unknown[]) => {
    if (!isOpen()) throw closed();
    return guardSend(
      Reflect.apply(target as (...a: unknown[]) => unknown, self, args),
      isOpen,
      closed,
    );
  };
  return new Proxy(tx, {
    apply(target, self, args) {
      return call(target, self, args);
    },
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      let wrapped = methods.get(property);
      if (wrapped === undefined) {
        wrapped = property === "savepoint"
          ? (...args: unknown[]) => {
            // The savepoint's callback gets a transaction object of its own: guard it too.
            const at = args.findIndex((a) => typeof a === "function");
            if (at >= 0) {
              const body = args[at] as (inner: object) => unknown;
              args[at] = (inner: object) => body(guardTransaction(inner, isOpen, consumer));
            }
            return call(value, target, args);
          }
          : (...args: unknown[]) => call(value, target, args);
        methods.set(property, wrapped);
      }
      return wrapped;
    },
  });
}
