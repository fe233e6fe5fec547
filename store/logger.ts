/**
 * A structured logger. Every method is optional; a store or worker without a logger makes no log
 * calls at all.
 *
 * @example
 * ```ts
 * import type { Logger } from "@eventsalsa/eventsalsa/store";
 * const logger: Logger = {
 *   info: (message, fields) => console.log(message, fields),
 *   error: (message, fields) => console.error(message, fields),
 * };
 * ```
 */
export interface Logger {
  /** Fine-grained tracing. */
  debug?(message: string, fields: Record<string, unknown>): void;
  /** Notable, expected events. */
  info?(message: string, fields: Record<string, unknown>): void;
  /** Something went wrong. */
  error?(message: string, fields: Record<string, unknown>): void;
}
