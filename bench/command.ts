/**
 * Command-side benchmarks: `deno run -A bench/command.ts [--events 10000] [--commands 25]` (or
 * `bun bench/command.ts`). Needs DATABASE_URL (a real PostgreSQL); without it, says so and exits 0.
 * Runs in its own schema.
 *
 * - Loading an aggregate of `events` events with a snapshot policy of every 100 events, against a
 *   full replay of the same aggregate by the same handler without snapshots. The snapshot is 99
 *   events behind the head, the most `everyNEvents(100)` leaves, so the delta is its worst case.
 * - 8 writers on one aggregate, `commands` commands each, through the command handler (jittered
 *   back-off) against the loop people write by hand (`sql.begin`: readStream, fold, decide,
 *   `append(exact(version))`; on `ConcurrencyError` go again at once). Same decider, same events,
 *   no snapshots on either side, a fresh aggregate per round. Reported as commands/s, with the
 *   attempts each side needed per command.
 */
import postgres from "postgres";
import { CommandHandler, type Decider } from "../command/mod.ts";
import { migrate as migrateSnapshots } from "../command/migration.ts";
import { PostgresSnapshotStore } from "../command/snapshot_store_postgres.ts";
import { ConcurrencyError } from "../store/errors.ts";
import { defineEvents, type DomainEvent, eventType } from "../store/event_registry.ts";
import { any, exact } from "../store/expected_version.ts";
import { migrate as migrateStore } from "../store/migration.ts";
import { PostgresStore } from "../store/postgres_store.ts";
import { type BenchResult, compare, databaseUrl, numberArgument, printTable } from "./runner.ts";

const definitions = { Added: eventType<{ amount: number; note: string }>() };
const Events = defineEvents(definitions);
type Ledger = { total: number; count: number; recent: number[] };
type Command = { amount: number };
const ledger: Decider<Ledger, Command, DomainEvent<typeof definitions>> = {
  initialState: () => ({ total: 0, count: 0, recent: [] }),
  evolve: (state, event) => ({
    total: state.total + event.data.amount,
    count: state.count + 1,
    recent: [...state.recent.slice(-19), event.data.amount],
  }),
  decide: (command) => [{ type: "Added", data: { amount: command.amount, note: "bench" } }],
};

/** Runs both command benchmarks on `url`; returns the results. */
export async function commandBenchmarks(
  url: string,
  events: number,
  commandsPerWriter: number,
): Promise<BenchResult[]> {
  const schema = `eventsalsa_bench_command_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(url, { max: 8, onnotice: () => {}, connection: { search_path: schema } });
  const reader = postgres(url, { max: 1, onnotice: () => {}, connection: { search_path: schema } });
  const results: BenchResult[] = [];
  try {
    await migrateStore(sql);
    await migrateSnapshots(sql);
    const store = new PostgresStore();
    const base = { store, events: Events, aggregateType: "Ledger", decider: ledger };
    const replaying = new CommandHandler(base);
    const snapshotting = new CommandHandler({
      ...base,
      snapshots: { store: new PostgresSnapshotStore(), policy: 100 },
    });

    // 1. Load: snapshot every 100 events against a full replay.
    const id = "big";
    const snapshotAt = events - 99;
    const appendRange = async (from: number, to: number) => {
      for (let at = from; at < to; at += 500) {
        const size = Math.min(500, to - at);
        await store.append(
          sql,
          any(),
          Events.toEvents(
            { aggregateType: "Ledger", aggregateId: id },
            Array.from({ length: size }, (_, i) => ({
              type: "Added" as const,
              data: { amount: at + i, note: "bench" },
            })),
          ),
        );
      }
    };
    await appendRange(0, snapshotAt);
    await snapshotting.writeSnapshot(sql, id);
    await appendRange(snapshotAt, events);
    const check = await snapshotting.load(reader, id);
    const full = await replaying.load(reader, id);
    if (
      check.version !== events || check.snapshotVersion !== snapshotAt ||
      check.state.total !== full.state.total
    ) {
      throw new Error("bench setup: the snapshot load does not match the replay");
    }
    const loads = 10;
    results.push(
      await compare({
        name: `load ${events}-event aggregate: snapshot every 100 (delta 99) vs full replay`,
        ops: loads,
        run: async () => {
          for (let i = 0; i < loads; i++) await snapshotting.load(reader, id);
        },
        baseline: async () => {
          for (let i = 0; i < loads; i++) await replaying.load(reader, id);
        },
        rounds: 7,
        note: "ratio = speed-up of the snapshot load",
      }),
    );

    // 2. Contention: 8 writers on one aggregate.
    const writers = 8;
    const total = writers * commandsPerWriter;
    let round = 0;
    const attempts = { handler: 0, handWritten: 0, handlerCommands: 0, handWrittenCommands: 0 };
    const handWritten = async (aggregateId: string, command: Command) => {
      for (;;) {
        attempts.handWritten++;
        try {
          await sql.begin(async (t) => {
            const stream = await store.readStream(t, "Ledger", aggregateId);
            let state = ledger.initialState();
            for (const event of stream.events) {
              state = ledger.evolve(state, Events.fromEvent(event));
            }
            const decided = await ledger.decide(command, state);
            await store.append(
              t,
              exact(stream.version),
              Events.toEvents(
                { aggregateType: "Ledger", aggregateId },
                decided as DomainEvent<typeof definitions>[],
              ),
            );
          });
          return;
        } catch (error) {
          if (!(error instanceof ConcurrencyError)) throw error;
        }
      }
    };
    const race = async (handle: (aggregateId: string) => Promise<void>) => {
      const aggregateId = `hot-${++round}`;
      await Promise.all(Array.from({ length: writers }, async () => {
        for (let i = 0; i < commandsPerWriter; i++) await handle(aggregateId);
      }));
      const head = await store.headVersion(reader, "Ledger", aggregateId);
      if (head !== total) throw new Error(`lost commands: head ${head}, expected ${total}`);
    };
    const viaHandler = () =>
      race(async (aggregateId) => {
        const result = await replaying.handle(sql, aggregateId, { amount: 1 });
        attempts.handler += result.attempts;
        attempts.handlerCommands++;
      });
    const viaLoop = () =>
      race(async (aggregateId) => {
        await handWritten(aggregateId, { amount: 1 });
        attempts.handWrittenCommands++;
      });
    const contention = await compare({
      name: `${writers} writers, one aggregate, ${total} commands: handler vs hand-written loop`,
      ops: total,
      run: viaHandler,
      baseline: viaLoop,
      rounds: 7,
    });
    contention.note = `attempts/command: handler ${
      (attempts.handler / attempts.handlerCommands).toFixed(2)
    }, hand-written ${(attempts.handWritten / attempts.handWrittenCommands).toFixed(2)}`;
    console.log(JSON.stringify({ name: contention.name, note: contention.note }));
    results.push(contention);
  } finally {
    await sql.end();
    await reader.end();
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return results;
}

if (import.meta.main) {
  const url = databaseUrl("command.ts");
  if (url) {
    const events = numberArgument("events", 10_000);
    const commands = numberArgument("commands", 25);
    console.log(
      `Command benchmarks on DATABASE_URL, ${events}-event aggregate, 8 writers x ${commands} ` +
        `commands, ${new Date().toISOString()}`,
    );
    printTable(await commandBenchmarks(url, events, commands));
  }
}
