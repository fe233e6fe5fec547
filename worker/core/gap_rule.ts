/**
 * The gap rule (docs/design.md), independent of any database. A hole at position p is waited out,
 * never timed out: when a read shows p missing while a later position is visible, the adapter
 * hands out a *snapshot token* taken at or after that read; once the token is *resolved* (every
 * transaction that was running when it was taken has ended) a fresh read shows p or p is gone for
 * good. On PostgreSQL the token bounds every transaction id assigned when it is taken and lists
 * the transactions of the worker's own database then running; it resolves when all of those have
 * ended, or when the server's oldest running transaction is past the bound (worker/postgres/
 * gap_horizon.ts). The in-memory adapter uses the positions its open transactions hold.
 *
 * @module
 */
import { computeFrontier, type Frontier } from "./frontier.ts";
import type { Window, WindowSpec } from "./window.ts";

/**
 * An adapter's opaque snapshot token (see the module doc). Only the adapter that handed it out
 * reads it.
 */
export type GapToken = unknown;

/** A window read (see ./window.ts) with the pending token to check first, if any. */
export interface WindowQuery extends WindowSpec {
  readonly pendingToken: GapToken | null;
}

/** One read of the log window (see ./window.ts), with what the gap rule needs besides. */
export interface WindowRead extends Window {
  /**
   * Whether the pending token passed to the read was resolved *before* the events were read (so
   * the events show the final state of every position the token covers).
   */
  readonly pendingResolved: boolean;
  /** A token taken at or after this read (never before it). */
  token(): Promise<GapToken>;
}

/** A hole being waited out. */
interface PendingGap {
  readonly token: GapToken;
  /** The first missing position when the token was taken. */
  readonly position: number;
  /** Every missing position up to here was already drawn when the token was taken. */
  readonly coversUpTo: number;
  /** When it was first seen (worker clock). */
  readonly firstSeenAt: number;
}

/** What one iteration may do: the frontier plus what the gap rule decided. */
export interface GapPlan extends Frontier {
  /** Holes passed only because they outlived `maxGapWait` (to audit), or null. */
  readonly skip: {
    readonly gapPosition: number;
    readonly skippedPositions: readonly number[];
    readonly firstSeenAt: number;
  } | null;
  /** When the current hole was first seen, if the consumer is waiting at one. */
  readonly waitingSince: number | null;
}

function expand(ranges: ReadonlyArray<readonly [number, number]>, above: number): number[] {
  const out: number[] = [];
  for (const [from, to] of ranges) {
    for (let p = Math.max(from, above + 1); p <= to; p++) out.push(p);
  }
  return out;
}

/**
 * Per-consumer gap state, kept in memory by the consumer loop. Everything it learns is a fact
 * about the log (a hole known permanent stays permanent), so it stays valid when a batch rolls
 * back.
 */
export class GapTracker {
  readonly #maxGapWait: number | null;
  /** Missing positions at or below this are permanent holes. */
  #settledUpTo = 0;
  /** Missing positions at or below this are skipped by `maxGapWait` (audited). */
  #forcedUpTo = 0;
  #forcedSince = 0;
  #pending: PendingGap | null = null;

  /** `maxGapWait` in ms, or null for "wait as long as it takes". */
  constructor(maxGapWait: number | null) {
    this.#maxGapWait = maxGapWait;
  }

  /** The token to pass to the next read, so it reports whether the hole is now final. */
  get pendingToken(): GapToken | null {
    return this.#pending?.token ?? null;
  }

  /** Whether the pending hole has outlived `maxGapWait` (the next batch must re-read in its transaction). */
  skipDue(now: number): boolean {
    return this.#pending !== null && this.#maxGapWait !== null &&
      now - this.#pending.firstSeenAt >= this.#maxGapWait;
  }

  /**
   * Applies one read: settles the pending hole if the read says it resolved, applies
   * `maxGapWait`, computes the frontier and, when a new hole blocks it, takes a token from the
   * read.
   */
  async plan(checkpoint: number, read: WindowRead, now: number): Promise<GapPlan> {
    if (this.#pending !== null && read.pendingResolved) {
      this.#settledUpTo = Math.max(this.#settledUpTo, this.#pending.coversUpTo);
      this.#pending = null;
    }
    if (this.#pending !== null && this.skipDue(now)) {
      if (this.#pending.coversUpTo > this.#forcedUpTo) {
        this.#forcedUpTo = this.#pending.coversUpTo;
        this.#forcedSince = this.#pending.firstSeenAt;
      }
      this.#pending = null;
    }
    const known = Math.max(this.#settledUpTo, this.#forcedUpTo);
    const frontier = computeFrontier(checkpoint, read, known);
    let skip: GapPlan["skip"] = null;
    if (this.#forcedUpTo > this.#settledUpTo && frontier.passedHoles.length > 0) {
      const skipped = expand(frontier.passedHoles, this.#settledUpTo);
      if (skipped.length > 0) {
        skip = {
          gapPosition: skipped[0],
          skippedPositions: skipped,
          firstSeenAt: this.#forcedSince,
        };
      }
    }
    if (frontier.hole === null) {
      // Nothing blocks: a pending token would only cost resolution checks. A hole seen later gets
      // a fresh token (later is always safe, merely slower).
      this.#pending = null;
    } else if (this.#pending === null || frontier.hole > this.#pending.coversUpTo) {
      // Every position below the highest visible one was drawn before this read, so a token
      // taken now covers all of them.
      this.#pending = {
        token: await read.token(),
        position: frontier.hole,
        coversUpTo: frontier.highestVisible,
        firstSeenAt: now,
      };
    }
    return {
      ...frontier,
      skip,
      waitingSince: frontier.hole === null ? null : this.#pending!.firstSeenAt,
    };
  }
}
