import type { EventFilter, IterateEventsOptions, PersistedEvent } from "./types.ts";
import { checkIterateOptions } from "./validation.ts";

/** Reads one page of the global log; what each store implementation supplies. */
export type ReadPage = (
  afterPosition: number,
  limit: number,
  filter: EventFilter,
) => Promise<PersistedEvent[]>;

/**
 * Keyset pagination over the global log: one page in memory at a time, each page one query, so it
 * works on a pool, in a transaction and behind PgBouncer alike.
 */
export async function* iteratePages(
  readPage: ReadPage,
  options: IterateEventsOptions | undefined,
): AsyncGenerator<PersistedEvent> {
  const { afterPosition, toPosition, pageSize, filter } = checkIterateOptions(options);
  let after = afterPosition;
  while (after < toPosition) {
    const page = await readPage(after, pageSize, filter);
    for (const event of page) {
      if (event.globalPosition > toPosition) return;
      yield event;
    }
    if (page.length < pageSize) return;
    after = page[page.length - 1].globalPosition;
  }
}
