/**
 * The transaction handed to handlers, guarded: once the batch is over (committed, rolled back,
 * timed out), any further statement through it throws instead of running on whatever connection
 * postgres.js has since given to someone else.
 *
 * @module
 */

/** Wraps `tx` so every call and method checks `isOpen()` first. */
export function guardTransaction<T extends object>(tx: T, isOpen: () => boolean, owner: string): T {
  const closed = () =>
    new Error(
      `the batch transaction of ${owner} is over (committed, rolled back or timed out); ` +
        `a handler kept using it after its batch ended`,
    );
  const methods = new Map<PropertyKey, unknown>();
  return new Proxy(tx, {
    apply(target, self, args) {
      if (!isOpen()) throw closed();
      return Reflect.apply(target as (...a: unknown[]) => unknown, self, args);
    },
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      let wrapped = methods.get(property);
      if (wrapped === undefined) {
        wrapped = (...args: unknown[]) => {
          if (!isOpen()) throw closed();
          return Reflect.apply(value, target, args);
        };
        methods.set(property, wrapped);
      }
      return wrapped;
    },
  });
}
