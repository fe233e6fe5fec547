// Chaos on real PostgreSQL with real processes: 3–4 worker processes run the same five consumers
// while a writer appends (with rolled-back appends leaving holes) and a seeded schedule keeps
// hitting the fleet: SIGTERM (graceful stop), SIGKILL, SIGSTOP/SIGCONT (sometimes past the
// heartbeat timeout) and pg_terminate_backend of a worker's backend. Stopped and killed workers
// are replaced. Afterwards every consumer must hold exactly one effect per committed event (the
// effects are written through `tx`, so they commit with the checkpoint), in order, and no process
// may have died of an uncaught error. The test runs this same file as the child process.
//
// EVENTSALSA_CHAOS_SECONDS (default 60) sets the fault window; EVENTSALSA_CHAOS_SEED replays a
// fault schedule (the timings of real processes still vary from run to run);
// EVENTSALSA_CHAOS_VERBOSE=1 prints every worker's output and the fault timeline even on success.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeSync } from "node:fs";
import process from "node:process";
import postgres from "postgres";
import { type RunningChild, spawnScript } from "../../internal/child_process.ts";
import { readEnv } from "../../internal/env.ts";
import { any } from "../../store/expected_version.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import type { Event, PersistedEvent } from "../../store/types.ts";
import { SeededRandom } from "../../testing/seeded_random.ts";
import { errorText } from "../errors.ts";
import type { WorkerOptions } from "../options.ts";
import type { Consumer, WorkerTransaction } from "../types.ts";
import { Worker } from "../worker.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { status } from "./status.ts";

const CHILD_ENV = "EVENTSALSA_WORKER_CHAOS_CHILD";
const CONSUMERS = ["c0", "c1", "c2", "c3", "c4"];
/** c4 handles only this event type, about one event in seven: its windows are read in SQL. */
const RARE_TYPE = "Noted";
const AGGREGATES = 20;
/** Worker processes kept alive (running or paused); a replacement joins when fewer are. */
const FLEET = 3;
/** A child that saw an uncaught exception or unhandled rejection. */
const FATAL_EXIT = 70;
/** A child whose `worker.start()` rejected. */
const START_REJECTED_EXIT = 71;
const OPTIONS = {
  batchSize: 20,
  batchPause: 50,
  gapCheckInterval: 50,
  pollInterval: 100,
  maxPollInterval: 300,
  dispatcherInterval: 100,
  heartbeatInterval: 200,
  heartbeatTimeout: 1_500,
  rebalanceInterval: 300,
  assignmentPollInterval: 300,
  batchTimeout: 1_500,
} satisfies WorkerOptions;
/**
 * A paused worker whose heartbeat is older than 2 × heartbeatTimeout may have its registration
 * removed by a worker starting meanwhile; it then stops with WorkerRegistrationLostError, as
 * documented (docs/worker.md, Registration). Pauses from this long on make that exit expected.
 */
const REGISTRATION_LOSS_PAUSE = 2 * OPTIONS.heartbeatTimeout - OPTIONS.heartbeatInterval - 300;
// Every wait is bounded; together they stay below the test's timeout (window + 110 s).
const SETUP_MS = 20_000;
const DRAIN_MS = 40_000;
const READY_MS = 10_000;
const TERM_GRACE_MS = 15_000;

interface ChildPlan {
  url: string;
  schema: string;
  workerId: string;
  seed: number;
}

// ---------------------------------------------------------------------------------------------
// The child: one worker process.

/** Writes a line to stdout synchronously (so it is not lost when the process exits at once). */
function out(line: string): void {
  writeSync(1, line.replaceAll("\n", " | ") + "\n");
}

/** An error's text with every `code` on its cause chain (e.g. 23505, 57P01). */
function describeError(error: unknown): string {
  const codes: string[] = [];
  let e: unknown = error;
  for (let depth = 0; e !== null && typeof e === "object" && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (code !== undefined) codes.push(String(code));
    e = (e as { cause?: unknown }).cause;
  }
  const text = errorText(error);
  return codes.length > 0 ? `${text} [code ${codes.join(",")}]` : text;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Set (synchronously, before the abort) when SIGTERM arrives. */
let stopRequested = false;

/**
 * Marks an effect that must never commit: written by a batch whose handler overran batchTimeout
 * (that batch is rolled back), after its batch's signal fired (timeout or stop: the batch is over
 * and its `tx` refuses further statements), or after SIGTERM (a running batch is cancelled and
 * rolled back).
 */
function flagOf(signal: AbortSignal, overrun = false): string | null {
  return overrun ? "overrun" : signal.aborted ? "after-abort" : stopRequested ? "after-stop" : null;
}

/**
 * When c2's handler first saw each batch (its transaction, new per batch): after the batch began,
 * so after its batchTimeout timer started.
 */
const batchSeen = new WeakMap<object, number>();

function insertEffect(
  tx: WorkerTransaction,
  consumer: string,
  event: PersistedEvent,
  worker: string,
  signal: AbortSignal,
  overrun = false,
) {
  // A plain INSERT: an effect committed twice is a primary-key violation, never absorbed.
  return tx`INSERT INTO effects (consumer, aggregate_id, aggregate_version, position, worker, flag)
    VALUES (${consumer}, ${event.aggregateId}, ${event.aggregateVersion}, ${event.globalPosition},
      ${worker}, ${flagOf(signal, overrun)})`;
}

/**
 * c0 plain; c1 handleBatch; c2 sleeps a few ms (half the time ignoring its signal; rarely, ignoring
 * it, past batchTimeout); c3 fails now and then after its write (2 % of events, on the first two
 * attempts of a batch only: transient, so it always gets through before maxConsecutiveFailures);
 * c4 filters by event type (the filtered window, the holes still waited for).
 */
function chaosConsumers(random: SeededRandom): Consumer[] {
  return [
    {
      name: "c0",
      async handle(tx, event, context) {
        await insertEffect(tx, "c0", event, context.workerId, context.signal);
      },
    },
    {
      name: "c1",
      async handleBatch(tx, events, context) {
        const rows = events.map((e) => ({
          consumer: "c1",
          aggregate_id: e.aggregateId,
          aggregate_version: e.aggregateVersion,
          position: e.globalPosition,
          worker: context.workerId,
          flag: flagOf(context.signal),
        }));
        await tx`INSERT INTO effects ${
          tx(rows, "consumer", "aggregate_id", "aggregate_version", "position", "worker", "flag")
        }`;
      },
    },
    {
      name: "c2",
      async handle(tx, event, context) {
        if (!batchSeen.has(tx)) batchSeen.set(tx, Date.now());
        // Writes before or after its sleep. Rarely it overruns: it sleeps, ignoring its signal,
        // until just past batchTimeout (3–20 ms after it, by then surely fired), so its next statement is sent while the
        // timed-out batch is being cancelled and rolled back.
        const writeFirst = random.chance(0.5);
        const overrun = random.chance(0.002);
        const ms = overrun
          ? batchSeen.get(tx)! + OPTIONS.batchTimeout + random.int(3, 20) - Date.now()
          : random.int(0, 5);
        if (overrun) {
          out(
            `OVERRUN c2 @${event.globalPosition} sleeping ${ms} ms ${
              writeFirst ? "after" : "before"
            } its write`,
          );
        }
        const honoursSignal = !overrun && random.chance(0.5);
        const write = () =>
          insertEffect(tx, "c2", event, context.workerId, context.signal, overrun);
        if (writeFirst) await write();
        await sleep(Math.max(0, ms), honoursSignal ? context.signal : undefined);
        if (!writeFirst) await write();
      },
    },
    {
      name: "c3",
      async handle(tx, event, context) {
        await insertEffect(tx, "c3", event, context.workerId, context.signal);
        if (context.attempt <= 2 && random.chance(0.02)) {
          throw new Error(`transient failure at ${event.globalPosition}`);
        }
      },
    },
    {
      name: "c4",
      eventTypes: [RARE_TYPE],
      async handle(tx, event, context) {
        await insertEffect(tx, "c4", event, context.workerId, context.signal);
      },
    },
  ];
}

async function child(plan: ChildPlan): Promise<void> {
  const fatal = (kind: string) => (error: unknown) => {
    const text = error instanceof Error ? `${error.stack ?? errorText(error)}` : String(error);
    out(`FATAL ${kind} ${text}`);
    writeSync(2, `FATAL ${kind} ${text}\n`);
    process.exit(FATAL_EXIT);
  };
  process.on("uncaughtException", fatal("uncaughtException"));
  process.on("unhandledRejection", fatal("unhandledRejection"));
  const controller = new AbortController();
  process.on("SIGTERM", () => {
    stopRequested = true;
    out("SIGTERM received");
    controller.abort(new Error("SIGTERM"));
  });
  const sql = postgres(plan.url, {
    max: CONSUMERS.length + 2,
    // postgres.js 3.4.9 fetches array types on every (re)connect in a promise nobody handles: a
    // backend terminated during that fetch is an unhandled rejection. Nothing here needs the
    // fetched types (docs/worker.md, "Guarantees under faults").
    fetch_types: false,
    onnotice: () => {},
    connection: { search_path: plan.schema, application_name: `chaos-${plan.workerId}` },
  });
  const worker = new Worker(sql, new PostgresStore(), chaosConsumers(new SeededRandom(plan.seed)), {
    ...OPTIONS,
    workerId: plan.workerId,
    observer: {
      batchFailed: (f) =>
        out(
          `FAILED ${f.consumer} n=${f.consecutiveFailures} retry=${f.retryInMs} ${
            describeError(f.error)
          }${
            // A TypeError is a bug, not a fault: its stack says where.
            f.error instanceof TypeError
              ? ` | ${String(f.error.stack).split("\n").slice(1, 8).join(" < ")}`
              : ""}`,
        ),
      consumerStopped: (info) => {
        if (info.reason === "failed") out(`CONSUMER_FAILED ${info.consumer}`);
      },
    },
  });
  out(`READY ${plan.workerId} pid ${process.pid}`);
  let code = 0;
  try {
    await worker.start(controller.signal);
    out(`STOPPED ${plan.workerId}`);
  } catch (error) {
    out(`START_REJECTED ${describeError(error)}`);
    code = START_REJECTED_EXIT;
  }
  await sql.end({ timeout: 1 }).catch(() => {});
  process.exit(code);
}

// ---------------------------------------------------------------------------------------------
// The parent: the test.

type FaultKind = "sigterm" | "sigkill" | "sigstop" | "terminate";

interface Child {
  readonly id: string;
  readonly run: RunningChild;
  /** up: running; paused: SIGSTOPped; stopping: SIGTERM or SIGKILL sent; exited. */
  state: "up" | "paused" | "stopping" | "exited";
  sentTerm: boolean;
  sentKill: boolean;
  longestPauseMs: number;
  exit: { code: number | null; signal: string | null } | null;
  readonly exited: Promise<void>;
  timer: ReturnType<typeof setTimeout> | null;
}

/**
 * Sends a signal by pid. Not `ChildProcess.kill`: under Deno it sends only the first signal of a
 * child's life (a SIGCONT or SIGKILL after a SIGSTOP would be dropped).
 */
function sendSignal(c: Child, name: "SIGTERM" | "SIGKILL" | "SIGSTOP" | "SIGCONT"): void {
  const pid = c.run.proc.pid;
  if (pid === undefined || c.state === "exited") return;
  try {
    process.kill(pid, name);
  } catch {
    // Gone already (ESRCH): its exit event is on the way.
  }
}

function isReady(c: Child): boolean {
  return c.run.lines.some((l) => l.startsWith("READY"));
}

function tail(c: Child, n = 12): string {
  return c.run.lines.slice(-n).map((l) => `    ${c.id}| ${l.trimEnd()}`).join("\n");
}

const childPlan = process.env[CHILD_ENV];
if (childPlan !== undefined) {
  await child(JSON.parse(childPlan));
} else {
  const seconds = Number(readEnv("EVENTSALSA_CHAOS_SECONDS") ?? "60");
  const seedText = readEnv("EVENTSALSA_CHAOS_SEED");
  /** EVENTSALSA_CHAOS_VERBOSE=1: every worker's output and the timeline, pass or fail. */
  const verbose = readEnv("EVENTSALSA_CHAOS_VERBOSE") === "1";
  const seed = seedText === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(seedText);
  describe("worker chaos on PostgreSQL", () => {
    it(
      `${CONSUMERS.length} consumers on ${FLEET}–4 processes under SIGTERM, SIGKILL, SIGSTOP and ` +
        "pg_terminate_backend: every committed event's effect exactly once, in order",
      { timeout: seconds * 1_000 + 110_000 },
      async (t) => {
        assert.ok(Number.isFinite(seconds) && seconds > 0, "EVENTSALSA_CHAOS_SECONDS");
        assert.ok(Number.isSafeInteger(seed), "EVENTSALSA_CHAOS_SEED");
        const started = Date.now();
        const h = await pgHarness();
        const children: Child[] = [];
        const timers = new Set<ReturnType<typeof setTimeout>>();
        const later = (ms: number, fn: () => void) => {
          const timer = setTimeout(() => {
            timers.delete(timer);
            fn();
          }, ms);
          timers.add(timer);
          return timer;
        };
        const wait = (ms: number) => new Promise<void>((resolve) => later(ms, resolve));
        /** Not tracked: the writer's short pauses always end, so the writers can be awaited. */
        const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
        const writing = { stop: false };
        let writers: Promise<void>[] = [];
        let phase: "setup" | "window" | "drain" | "stopping" = "setup";
        /** Unexpected process behaviour: exits, hangs, writer errors. */
        const problems: string[] = [];
        const timeline: string[] = [];
        const note = (line: string) =>
          timeline.push(`${((Date.now() - started) / 1000).toFixed(1)}s ${line}`);
        const counts = { sigterm: 0, sigkill: 0, sigstop: 0, terminate: 0, spawned: 0 };
        let registrationLost = 0;
        const stats = { appends: 0, events: 0, rolledBack: 0 };
        const tag = crypto.randomUUID().slice(0, 8);
        // Last resort if this process ends before the finally below: a stopped child would
        // otherwise stay stopped forever.
        const killAll = () => {
          for (const c of children) {
            if (c.state === "exited") continue;
            sendSignal(c, "SIGCONT");
            c.sentKill = true;
            sendSignal(c, "SIGKILL");
          }
        };
        process.on("exit", killAll);
        try {
          if (skipWithoutConcurrency(t, h.db)) return;
          console.log(
            `chaos: seed ${seed} (EVENTSALSA_CHAOS_SEED=${seed} replays the schedule), ` +
              `${seconds} s of faults, schema ${h.db.schema}`,
          );
          await h.sql`CREATE TABLE effects (consumer TEXT NOT NULL, aggregate_id TEXT NOT NULL,
            aggregate_version INT NOT NULL, position BIGINT NOT NULL, worker TEXT NOT NULL,
            seq BIGSERIAL NOT NULL, flag TEXT, PRIMARY KEY (consumer, position))`;

          const faults = new SeededRandom(seed);
          const spawn = (): Child => {
            counts.spawned++;
            const id = `${tag}-w${counts.spawned}`;
            const run = spawnScript(import.meta.url, {
              [CHILD_ENV]: JSON.stringify(
                {
                  url: h.db.url,
                  schema: h.db.schema,
                  workerId: id,
                  seed: (seed * 31 + counts.spawned) >>> 0,
                } satisfies ChildPlan,
              ),
            }, { collectStderr: true });
            let settle!: () => void;
            const c: Child = {
              id,
              run,
              state: "up",
              sentTerm: false,
              sentKill: false,
              longestPauseMs: 0,
              exit: null,
              exited: new Promise<void>((resolve) => (settle = resolve)),
              timer: null,
            };
            // "close", not "exit": its output is complete by then (the last line says why).
            run.proc.on("close", (code, signal) => {
              onExit(c, code, signal);
              settle();
            });
            run.proc.on("error", (error) => {
              problems.push(`${id} could not start: ${error}`);
              c.state = "exited";
              settle();
            });
            children.push(c);
            note(`spawn ${id}`);
            return c;
          };
          const live = () => children.filter((c) => c.state === "up" || c.state === "paused");
          const ensureFleet = () => {
            if (phase !== "window" && phase !== "drain") return;
            while (live().length < FLEET) spawn();
          };
          const onExit = (c: Child, code: number | null, signal: string | null) => {
            if (c.timer !== null) clearTimeout(c.timer);
            timers.delete(c.timer!);
            c.timer = null;
            const before = c.state;
            c.state = "exited";
            c.exit = { code, signal };
            note(`exit ${c.id} code=${code} signal=${signal}`);
            if (signal === "SIGKILL" && c.sentKill) return;
            if (code === 0 && c.sentTerm) return;
            const rejected = c.run.lines.find((l) => l.startsWith("START_REJECTED"));
            if (
              code === START_REJECTED_EXIT && rejected?.includes("WorkerRegistrationLostError") &&
              c.longestPauseMs >= REGISTRATION_LOSS_PAUSE
            ) {
              registrationLost++;
            } else {
              const why = c.run.lines.find((l) => l.includes("FATAL")) ?? rejected ?? "";
              problems.push(
                `${c.id} exited with code ${code}, signal ${signal} (state ${before}, ` +
                  `SIGTERM sent: ${c.sentTerm}, longest pause ${c.longestPauseMs} ms): ${why}\n` +
                  tail(c),
              );
            }
            if (before !== "stopping") later(300, ensureFleet);
          };
          const terminate = (c: Child) => {
            c.state = "stopping";
            c.sentTerm = true;
            sendSignal(c, "SIGTERM");
            c.timer = later(TERM_GRACE_MS, () => {
              c.timer = null;
              if (c.state === "exited") return;
              problems.push(
                `${c.id} did not exit within ${TERM_GRACE_MS} ms of SIGTERM\n${tail(c)}`,
              );
              c.sentKill = true;
              sendSignal(c, "SIGKILL");
            });
          };

          // The fleet, balanced before anything else happens.
          phase = "window";
          for (let i = 0; i < FLEET; i++) spawn();
          const assignedDeadline = Date.now() + SETUP_MS;
          for (;;) {
            const [row] = await h.sql`SELECT count(*)::int AS n FROM consumer_assignments a
              JOIN worker_nodes w ON w.worker_id = a.worker_id`;
            if (row.n === CONSUMERS.length) break;
            if (Date.now() > assignedDeadline) {
              throw new Error(
                `the fleet did not assign the consumers within ${SETUP_MS} ms\n${
                  children.map((c) => tail(c)).join("\n")
                }`,
              );
            }
            await wait(100);
          }
          note("fleet assigned");

          // The writer: two concurrent loops (commits land out of position order), 1–3 events per
          // append on 20 aggregates, a tenth of the appends rolled back (permanent holes).
          const ROLLBACK = new Error("rolled back on purpose");
          const writer = async (random: SeededRandom) => {
            while (!writing.stop) {
              const aggregateId = `agg-${random.int(0, AGGREGATES - 1)}`;
              const size = random.int(1, 3);
              const rollback = random.chance(0.1);
              const hold = random.int(0, 20);
              const events: Event[] = Array.from({ length: size }, () => ({
                aggregateType: "Chaos",
                aggregateId,
                eventType: random.chance(0.15) ? RARE_TYPE : "Happened",
                payload: new TextEncoder().encode("{}"),
              }));
              try {
                await h.sql.begin(async (tx) => {
                  await h.store.append(tx, any(), events);
                  if (hold > 0) await pause(hold);
                  if (rollback) throw ROLLBACK;
                });
                stats.appends++;
                stats.events += size;
              } catch (error) {
                if (error === ROLLBACK) stats.rolledBack++;
                else problems.push(`writer: ${errorText(error)}`);
              }
              await pause(random.int(30, 80));
            }
          };
          writers = [writer(new SeededRandom(seed + 1)), writer(new SeededRandom(seed + 2))];

          // The faults.
          const windowEnd = Date.now() + seconds * 1_000;
          while (Date.now() < windowEnd) {
            await wait(faults.int(500, 1_500));
            const up = children.filter((c) => c.state === "up");
            const candidates = up.filter(isReady);
            let kind: FaultKind = faults.weighted({
              sigterm: 2,
              sigkill: 2,
              sigstop: 2,
              terminate: 3,
            });
            // Keep at least two workers running.
            if (kind !== "terminate" && (up.length < 3 || candidates.length === 0)) {
              kind = "terminate";
            }
            if (kind === "terminate") {
              const backends = await h.sql`SELECT pid, application_name,
                  xact_start IS NOT NULL AS in_transaction
                FROM pg_stat_activity
                WHERE datname = current_database() AND application_name LIKE ${`chaos-${tag}-%`}
                  AND pid <> pg_backend_pid()
                ORDER BY pid`;
              const busy = backends.filter((b) => b.in_transaction);
              const pool = busy.length > 0 && faults.chance(0.5) ? busy : backends;
              if (pool.length === 0) continue;
              const victim = faults.pick(pool);
              const [{ ok }] = await h.sql`SELECT pg_terminate_backend(${victim.pid}) AS ok`;
              if (ok) {
                counts.terminate++;
                note(
                  `pg_terminate_backend ${victim.pid} of ${victim.application_name}` +
                    (victim.in_transaction ? " (in a transaction)" : ""),
                );
              }
              continue;
            }
            const victim = faults.pick(candidates);
            if (kind === "sigterm") {
              counts.sigterm++;
              note(`SIGTERM ${victim.id}`);
              terminate(victim);
              later(faults.int(300, 1_500), ensureFleet);
            } else if (kind === "sigkill") {
              counts.sigkill++;
              note(`SIGKILL ${victim.id}`);
              victim.state = "stopping";
              victim.sentKill = true;
              sendSignal(victim, "SIGKILL");
              later(faults.int(300, 1_500), ensureFleet);
            } else {
              const ms = faults.int(500, 4_000);
              counts.sigstop++;
              note(`SIGSTOP ${victim.id} for ${ms} ms`);
              victim.state = "paused";
              victim.longestPauseMs = Math.max(victim.longestPauseMs, ms);
              sendSignal(victim, "SIGSTOP");
              victim.timer = later(ms, () => {
                victim.timer = null;
                if (victim.state !== "paused") return;
                victim.state = "up";
                sendSignal(victim, "SIGCONT");
                note(`SIGCONT ${victim.id}`);
              });
            }
          }

          // Drain: no more faults or appends; resume the paused; everyone catches up.
          phase = "drain";
          note("window over");
          writing.stop = true;
          await Promise.all(writers);
          for (const c of children) {
            if (c.state !== "paused") continue;
            if (c.timer !== null) clearTimeout(c.timer);
            timers.delete(c.timer!);
            c.timer = null;
            c.state = "up";
            sendSignal(c, "SIGCONT");
            note(`SIGCONT ${c.id} (drain)`);
          }
          ensureFleet();
          const [{ latest }] = await h
            .sql`SELECT coalesce(max(global_position), 0)::bigint AS latest
            FROM events`;
          const target = Number(latest);
          const drainDeadline = Date.now() + DRAIN_MS;
          let caughtUp = false;
          while (Date.now() < drainDeadline) {
            const [row] = await h.sql`SELECT count(*)::int AS n FROM consumer_checkpoints
              WHERE consumer_name = ANY(${CONSUMERS}) AND last_position >= ${target}`;
            if (row.n === CONSUMERS.length) {
              caughtUp = true;
              break;
            }
            await wait(250);
          }
          const drainedIn = Date.now();
          note(caughtUp ? `every consumer at ${target}` : `drain timed out below ${target}`);
          if (!caughtUp) {
            problems.push(
              `not every consumer reached ${target} within ${DRAIN_MS} ms; status: ${
                JSON.stringify(await status(h.sql), null, 1)
              }\n${children.filter((c) => c.state !== "exited").map((c) => tail(c)).join("\n")}`,
            );
          }

          // Stop: SIGTERM everyone still there (once it has its SIGTERM handler); bounded wait;
          // SIGKILL what remains.
          phase = "stopping";
          const readyDeadline = Date.now() + READY_MS;
          while (
            children.some((c) => c.state === "up" && !isReady(c)) && Date.now() < readyDeadline
          ) {
            await wait(100);
          }
          for (const c of children) {
            if (c.state === "paused") sendSignal(c, "SIGCONT");
            if (c.state === "up" || c.state === "paused") terminate(c);
          }
          const allExited = Promise.all(children.map((c) => c.exited)).then(() => true);
          let boundTimer: ReturnType<typeof setTimeout> | undefined;
          const exitedInTime = await Promise.race([
            allExited,
            new Promise<false>((resolve) => {
              boundTimer = setTimeout(() => resolve(false), TERM_GRACE_MS + 5_000);
            }),
          ]);
          clearTimeout(boundTimer);
          if (!exitedInTime) {
            problems.push(
              `workers still running ${TERM_GRACE_MS + 5_000} ms after the final SIGTERM: ${
                children.filter((c) => c.state !== "exited").map((c) => c.id).join(", ")
              }`,
            );
          }
          note("every worker exited");

          // The verdict.
          const committed = await h.sql`SELECT global_position::bigint AS position, aggregate_id,
              aggregate_version, event_type FROM events ORDER BY global_position`;
          /** The committed events a consumer must have handled: all of them, c4 its type's. */
          const truthOf = (consumer: string) =>
            new Map(
              committed.filter((r) => consumer !== "c4" || r.event_type === RARE_TYPE).map((r) => [
                Number(r.position),
                { aggregate: r.aggregate_id as string, version: Number(r.aggregate_version) },
              ]),
            );
          const failures: string[] = [];
          const list = (xs: number[]) =>
            xs.length <= 30 ? xs.join(",") : `${xs.slice(0, 30).join(",")},… (${xs.length})`;
          for (const consumer of CONSUMERS) {
            const truth = truthOf(consumer);
            const rows = await h.sql`SELECT position::bigint AS position, aggregate_id,
                aggregate_version, worker, seq FROM effects WHERE consumer = ${consumer}
              ORDER BY position`;
            const seen = new Set(rows.map((r) => Number(r.position)));
            const missing = [...truth.keys()].filter((p) => !seen.has(p));
            const extra = [...seen].filter((p) => !truth.has(p));
            const wrong = rows.filter((r) => {
              const event = truth.get(Number(r.position));
              return event !== undefined &&
                (event.aggregate !== r.aggregate_id ||
                  event.version !== Number(r.aggregate_version));
            }).map((r) => Number(r.position));
            console.log(
              `chaos: ${consumer}: ${rows.length} effects for ${truth.size} committed events, ` +
                `missing [${list(missing)}], extra [${list(extra)}]`,
            );
            if (missing.length > 0 || extra.length > 0 || wrong.length > 0) {
              // Who handled the neighbours of the first missing position (whose batch skipped it).
              const first = missing[0];
              const before = rows.filter((r) => Number(r.position) < first).at(-1);
              const after = rows.find((r) => Number(r.position) > first);
              const around = first === undefined
                ? ""
                : `; around ${first}: ${
                  before ? `${before.position} by ${before.worker}` : "nothing before"
                }, ${after ? `${after.position} by ${after.worker}` : "nothing after"}`;
              failures.push(
                `${consumer}: effects are not the committed events: missing [${list(missing)}], ` +
                  `extra [${list(extra)}], wrong aggregate/version at [${list(wrong)}]${around}`,
              );
            }
            // Per aggregate, by position: versions strictly increasing (from 1, but for c4's type).
            const versions = new Map<string, number[]>();
            for (const r of rows) {
              const a = r.aggregate_id as string;
              versions.set(a, [...(versions.get(a) ?? []), Number(r.aggregate_version)]);
            }
            for (const [aggregate, vs] of versions) {
              const ok = (consumer === "c4" || vs[0] === 1) &&
                vs.every((v, i) => i === 0 || v > vs[i - 1]);
              if (!ok) {
                failures.push(
                  `${consumer}/${aggregate}: versions by position are ${list(vs)}, not 1,2,3,…`,
                );
              }
            }
            // Handling order: the effects were inserted in position order (seq is drawn at insert;
            // the batches of one consumer are serialised by its checkpoint row).
            const bySeq = [...rows].sort((a, b) => Number(a.seq) - Number(b.seq))
              .map((r) => Number(r.position));
            const outOfOrder = bySeq.findIndex((p, i) => i > 0 && p <= bySeq[i - 1]);
            if (outOfOrder >= 0) {
              failures.push(
                `${consumer}: effects inserted out of position order: ` +
                  `${bySeq[outOfOrder - 1]} then ${bySeq[outOfOrder]}`,
              );
            }
          }
          const flagged = await h.sql`SELECT consumer, position, worker, flag FROM effects
            WHERE flag IS NOT NULL ORDER BY consumer, position`;
          if (flagged.length > 0) {
            failures.push(
              `${flagged.length} effects committed that must have been rolled back ` +
                `(overrun: by a batch whose handler overran batchTimeout; after-abort: sent after ` +
                `the batch's signal fired; after-stop: sent after SIGTERM): ${
                  flagged.slice(0, 20).map((r) =>
                    `${r.consumer}@${r.position} ${r.flag} by ${r.worker}`
                  )
                    .join(", ")
                }`,
            );
          }
          const allLines = children.flatMap((c) => c.run.lines.map((l) => ({ c, l })));
          const uniqueViolations = allLines.filter(({ l }) =>
            l.startsWith("FAILED") && (l.includes("23505") || l.includes("duplicate key"))
          );
          if (uniqueViolations.length > 0) {
            failures.push(
              `${uniqueViolations.length} batch failures on a unique violation (an effect ` +
                `committed twice was attempted):\n${
                  uniqueViolations.slice(0, 10).map(({ c, l }) => `    ${c.id}| ${l}`).join("\n")
                }`,
            );
          }
          const fatal = allLines.filter(({ l }) => l.includes("FATAL") || l.includes("TypeError"));
          if (fatal.length > 0) {
            failures.push(
              `uncaught errors or TypeErrors in the workers' output:\n${
                fatal.slice(0, 10).map(({ c, l }) => `    ${c.id}| ${l.trimEnd()}`).join("\n")
              }`,
            );
          }
          failures.push(...problems);

          const failed = allLines.filter(({ l }) => l.startsWith("FAILED")).map(({ l }) => l);
          const kinds: Record<string, number> = {};
          for (const l of failed) {
            const kind = l.includes("transient failure")
              ? "transient"
              : l.includes("BatchTimeoutError")
              ? "timeout"
              : l.includes("BatchClosedError")
              ? "batch closed"
              : /57P01|terminat|CONNECTION_|ECONNRESET|closed/i.test(l)
              ? "connection"
              : l.includes("23505")
              ? "unique violation"
              : "other";
            kinds[kind] = (kinds[kind] ?? 0) + 1;
          }
          const overruns = allLines.filter(({ l }) => l.startsWith("OVERRUN")).length;
          console.log(
            `chaos: ${counts.sigterm} SIGTERM, ${counts.sigkill} SIGKILL, ${counts.sigstop} ` +
              `SIGSTOP/SIGCONT, ${counts.terminate} pg_terminate_backend, ${stats.events} events, ` +
              `${stats.rolledBack} appends rolled back`,
          );
          console.log(
            `chaos: seed ${seed}, ${counts.spawned} worker processes, ${stats.appends} appends ` +
              `committed, ${registrationLost} registration lost after a long pause (documented ` +
              `exit), ${overruns} handler overruns of batchTimeout, batch failures ${
                JSON.stringify(kinds)
              }, drained in ${((drainedIn - windowEnd) / 1000).toFixed(1)} s, ` +
              `total ${((Date.now() - started) / 1000).toFixed(1)} s`,
          );
          if (verbose) {
            for (const c of children) {
              console.log(`chaos: output of ${c.id}:\n${tail(c, Number.MAX_SAFE_INTEGER)}`);
            }
          }
          if (failures.length > 0 || verbose) {
            console.log(`chaos: timeline (seed ${seed}):\n  ${timeline.join("\n  ")}`);
            const other = failed.filter((l) => !l.includes("transient failure")).slice(0, 20);
            if (other.length > 0) {
              console.log(
                `chaos: batch failures (first 20 besides transient):\n  ${other.join("\n  ")}`,
              );
            }
          }
          assert.equal(
            failures.length,
            0,
            `chaos (seed ${seed}) found ${failures.length} problem(s):\n${failures.join("\n")}`,
          );
        } finally {
          phase = "stopping";
          writing.stop = true;
          for (const timer of timers) clearTimeout(timer);
          timers.clear();
          killAll();
          const bounded = (all: Promise<unknown>) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, 10_000);
              all.then(() => {
                clearTimeout(timer);
                resolve();
              });
            });
          await bounded(Promise.all(writers));
          await bounded(Promise.all(children.map((c) => c.exited)));
          process.off("exit", killAll);
          await h.close();
        }
      },
    );
  });
}
