/**
 * Window reads shared by the consumer loops of one worker. Fifty consumers catching up in one
 * process read the same windows of the log; each window is read once and handed to every loop
 * that asks for it (the same position, limit, reach and filter), while each keeps its own fence,
 * checkpoint and gap rule.
 *
 * Why a shared read is as good as one of its own: a loop only uses a read it did not start itself
 * when it has no pending gap token. The gap rule then asks nothing of the read's timing except
 * that any token comes from after it (`WindowRead.token` takes one when called, later still);
 * a position the read shows missing is waited for, and the read that settles it carries the token,
 * so it is the loop's own, fresh. Concurrent asks share the read in flight; a full window (a
 * catch-up's) is also kept for loops that arrive later: the most recently used ones, at most
 * `capacity` windows holding at most `maxEvents` events between them (a window larger than that
 * is shared while in flight only).
 *
 * @module
 */
import type { WindowQuery, WindowRead } from "./gap_rule.ts";

/** The windows of one worker's loops (see the module doc). */
export class SharedWindows {
  readonly #capacity: number;
  readonly #maxEvents: number;
  readonly #inFlight = new Map<string, Promise<WindowRead>>();
  /** Full windows, least recently used first. */
  readonly #kept = new Map<string, WindowRead>();
  /** Events held by `#kept`. */
  #events = 0;

  /** Keeps up to `capacity` full windows, `maxEvents` events in all. */
  constructor(capacity: number, maxEvents: number) {
    this.#capacity = capacity;
    this.#maxEvents = maxEvents;
  }

  /**
   * The window `query` asks for: a kept or in-flight one when it has no pending token, else
   * `load()`'s (which must not be cut short by any one loop: others may wait on it).
   */
  read(query: WindowQuery, load: () => Promise<WindowRead>): Promise<WindowRead> {
    if (query.pendingToken !== null) return load();
    const key = keyOf(query);
    const kept = this.#kept.get(key);
    if (kept !== undefined) {
      this.#kept.delete(key);
      this.#kept.set(key, kept);
      return Promise.resolve(kept);
    }
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const read = load().then((window) => {
      if (window.full) this.#keep(key, window);
      return window;
    }).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, read);
    return read;
  }

  #keep(key: string, window: WindowRead): void {
    if (window.events.length > this.#maxEvents || this.#kept.has(key)) return;
    this.#kept.set(key, window);
    this.#events += window.events.length;
    for (const [oldest, kept] of this.#kept) {
      if (this.#kept.size <= this.#capacity && this.#events <= this.#maxEvents) break;
      this.#kept.delete(oldest);
      this.#events -= kept.events.length;
    }
  }
}

function keyOf(query: WindowQuery): string {
  const filter = query.filter === null
    ? ""
    : JSON.stringify([query.filter.aggregateTypes, query.filter.eventTypes]);
  return `${query.after}:${query.limit}:${query.scan}:${filter}`;
}
