/**
 * The leader loop: every worker runs one. Each cycle it acquires (or confirms, or renews)
 * leadership through the adapter's {@link LeaderElection}; while it leads, it rebalances with
 * {@link planAssignments} inside the election's fenced transaction. Cycles run every
 * `rebalanceInterval`, and at once when a membership change is announced (a worker joined or
 * left), so joins and graceful leaves are acted on promptly.
 *
 * Demotion: when `acquire` says no; when a rebalance cannot confirm leadership; for `advisory`,
 * when `acquire` fails (the session may be gone); for `lease`, when the lease has run out by the
 * local clock — measured from the moment the last successful renewal was *sent*, so the local
 * expiry never comes after the database's.
 *
 * @module
 */
import { errorText } from "../errors.ts";
import type { ResolvedRuntimeOptions } from "../options.ts";
import { planAssignments } from "./assignment.ts";
import type { AssignmentChange } from "./assignment.ts";
import type { LeaderElection } from "./coordination.ts";
import { safely } from "./consumer_loop.ts";
import { rejectOnAbort, type Wakeup } from "./wakeup.ts";

/** Inputs of a {@link LeaderLoop}. */
export interface LeaderLoopContext {
  readonly election: LeaderElection;
  readonly options: ResolvedRuntimeOptions;
  /** Signalled on membership changes: run a cycle now. */
  readonly wakeup: Wakeup;
  /** Shutdown: the loop releases leadership and ends. */
  readonly signal: AbortSignal;
  /** Called after a rebalance that changed rows (the local assignment sync can run at once). */
  readonly onRebalanced?: (changes: readonly AssignmentChange[]) => void;
}

/**
 * Runs leader cycles until the signal aborts (see the module doc).
 */
export class LeaderLoop {
  readonly #c: LeaderLoopContext;
  #leader = false;
  /** Local clock time at which the last successful acquire or renewal was sent. */
  #renewedAt: number | null = null;

  /** Creates the loop; nothing runs until {@link LeaderLoop.run}. */
  constructor(context: LeaderLoopContext) {
    this.#c = context;
  }

  /** Whether this worker currently believes it leads. */
  get isLeader(): boolean {
    return this.#leader;
  }

  /** Cycles until shutdown, then releases leadership if held. */
  async run(): Promise<void> {
    const { options: o, wakeup, signal } = this.#c;
    try {
      while (!signal.aborted) {
        const seen = wakeup.generation;
        await this.cycle();
        if ((await wakeup.wait(seen, o.rebalanceInterval, o.clock, signal)) === "aborted") break;
      }
    } finally {
      if (this.#leader) {
        await this.#c.election.release().catch((error) =>
          safely(() =>
            o.logger.error?.("could not release leadership", {
              workerId: o.workerId,
              error: errorText(error),
            })
          )
        );
        this.#demote("worker stopped", "info");
      } else {
        // A failed acquire may have left a connection reserved: give it back.
        await this.#c.election.release().catch(() => {});
      }
    }
  }

  /** One cycle: local lease expiry, acquire or renew, rebalance while leading. */
  async cycle(): Promise<void> {
    const { election, options: o, signal } = this.#c;
    const lease = o.leaderStrategy === "lease";
    if (
      this.#leader && lease && this.#renewedAt !== null &&
      o.clock.now() - this.#renewedAt >= o.heartbeatTimeout
    ) {
      this.#demote("the lease ran out before it could be renewed", "error");
    }
    const sent = o.clock.now();
    let held: boolean;
    try {
      // Acquiring may wait for a connection; shutdown must not.
      held = await Promise.race([election.acquire(), rejectOnAbort(signal)]);
    } catch (error) {
      if (signal.aborted) return;
      safely(() =>
        o.logger.error?.("leader election failed", {
          workerId: o.workerId,
          error: errorText(error),
        })
      );
      // A lease stays ours until it runs out; a session lock may be gone with its session.
      if (this.#leader && !lease) this.#demote("the leader session failed", "error");
      return;
    }
    if (signal.aborted) return;
    if (!held) {
      if (this.#leader) this.#demote("leadership taken by another worker or lost", "error");
      return;
    }
    this.#renewedAt = sent;
    if (!this.#leader) {
      this.#leader = true;
      safely(() => o.logger.info?.("worker became leader", { workerId: o.workerId }));
      safely(() =>
        o.observer.leadershipChanged?.({
          workerId: o.workerId,
          leader: true,
          reason: `acquired (${o.leaderStrategy})`,
        })
      );
    }
    let changes: readonly AssignmentChange[] | null;
    try {
      changes = await election.rebalance(planAssignments, signal);
    } catch (error) {
      if (signal.aborted) return;
      safely(() =>
        o.logger.error?.("rebalance failed; retrying next cycle", {
          workerId: o.workerId,
          error: errorText(error),
        })
      );
      return;
    }
    if (changes === null) {
      this.#demote("leadership could not be confirmed in the rebalance transaction", "error");
      return;
    }
    if (changes.length === 0) {
      safely(() => o.logger.debug?.("rebalance: assignments already balanced", {}));
      return;
    }
    const applied = changes;
    safely(() =>
      o.logger.info?.("consumer assignments updated", {
        workerId: o.workerId,
        changes: applied.map((c) => `${c.consumer}: ${c.from ?? "-"} -> ${c.to ?? "-"}`),
      })
    );
    safely(() => o.observer.rebalanced?.({ workerId: o.workerId, changes: applied }));
    this.#c.onRebalanced?.(applied);
  }

  #demote(reason: string, level: "info" | "error"): void {
    if (!this.#leader) return;
    const o = this.#c.options;
    this.#leader = false;
    this.#renewedAt = null;
    safely(() => o.logger[level]?.("worker is no longer leader", { workerId: o.workerId, reason }));
    safely(() => o.observer.leadershipChanged?.({ workerId: o.workerId, leader: false, reason }));
  }
}
