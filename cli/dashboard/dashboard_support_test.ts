// Helpers for the dashboard's tests: a real worker fleet on a test schema, encryption keys to
// count, a consumer module for redrive, and a reader of server-sent events. Named `*_test.ts` so
// it is never published; it defines no tests itself.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type postgres from "postgres";
import { runCli } from "../../cli.ts";
import { type CapturedIo, captureIo } from "../capture_io.ts";
import { any, PostgresStore } from "../../store/mod.ts";
import type { TestDatabase } from "../../testing/test_database.ts";
import {
  type Consumer,
  PoisonEventError,
  skipPoisonEvents,
  status,
  Worker,
} from "../../worker/mod.ts";

/** Migrates store, worker and encryption through the CLI, into the test's schema. */
export async function migrateAll(db: TestDatabase): Promise<void> {
  const io = captureIo({ DATABASE_URL: db.schemaUrl });
  const code = await runCli(["migrate", "--apply"], io);
  if (code !== 0) throw new Error(`migrate failed: ${io.errors.join("\n")}`);
  await db.sql`CREATE TABLE IF NOT EXISTS redriven (position bigint PRIMARY KEY)`;
}

const draft = (aggregateType: string, aggregateId: string, eventType: string) => ({
  aggregateType,
  aggregateId,
  eventType,
  payload: new TextEncoder().encode(JSON.stringify({ at: Date.now() })),
});

/** Appends `count` events of one aggregate type in one transaction. */
export async function appendEvents(
  sql: postgres.Sql,
  count: number,
  aggregateType = "Order",
  eventType = "OrderPlaced",
): Promise<void> {
  const store = new PostgresStore();
  await sql.begin(async (tx) => {
    for (let i = 0; i < count; i++) {
      await store.append(tx, any(), [draft(aggregateType, crypto.randomUUID(), eventType)]);
    }
  });
}

/** A transaction that appended an event and neither commits nor rolls back until told. */
export interface HeldAppend {
  position: number;
  pid: number;
  release(): Promise<void>;
}

/** Begins a transaction on `sql` that takes a position and holds it open. */
export async function holdAppend(sql: postgres.Sql): Promise<HeldAppend> {
  const store = new PostgresStore();
  let finish!: () => void;
  const decided = new Promise<void>((resolve) => finish = resolve);
  let ready!: (value: { position: number; pid: number }) => void;
  const started = new Promise<{ position: number; pid: number }>((resolve) => ready = resolve);
  const done = sql.begin(async (tx) => {
    const [{ pid }] = await tx`SELECT pg_backend_pid() AS pid`;
    const result = await store.append(tx, any(), [draft("Order", "held", "OrderPlaced")]);
    ready({ position: result.globalPositions[0], pid: Number(pid) });
    await decided;
  });
  const { position, pid } = await started;
  return {
    position,
    pid,
    release: async () => {
      finish();
      await done;
    },
  };
}

/** The fleet the tests watch: one worker, a slow projection and an audit log that skips poison. */
export interface Fleet {
  workerId: string;
  stop(): Promise<void>;
}

/** Names of the fleet's consumers. */
export const SLOW = "slow_projection";
export const AUDIT = "audit_log";

/**
 * Starts a real `Worker` on `sql` with two consumers: `slow_projection` (Order events, `delayMs`
 * per event) and `audit_log` (every event; a `Poison` event is a dead letter, skipped).
 */
export async function startFleet(
  sql: postgres.Sql,
  options: { delayMs?: number; workerId?: string } = {},
): Promise<Fleet> {
  const delayMs = options.delayMs ?? 0;
  const consumers: Consumer[] = [
    {
      name: SLOW,
      aggregateTypes: ["Order"],
      async handle() {
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      },
    },
    {
      name: AUDIT,
      handle(_tx, event) {
        if (event.eventType === "Poison") {
          throw new PoisonEventError("cannot digest this one: no total in the payload");
        }
        return Promise.resolve();
      },
    },
  ];
  const workerId = options.workerId ?? "dashboard-test-worker";
  const worker = new Worker(sql, new PostgresStore(), consumers, {
    workerId,
    batchSize: 10,
    pollInterval: 50,
    maxPollInterval: 200,
    dispatcherInterval: 50,
    batchPause: 0,
    gapCheckInterval: 0,
    gapReportInterval: 200,
    heartbeatInterval: 500,
    rebalanceInterval: 500,
    onPoison: skipPoisonEvents(),
  });
  const controller = new AbortController();
  const running = worker.start(controller.signal);
  // Registered and assigned both consumers.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const report = await status(sql);
    const mine = report.workers.find((w) => w.workerId === workerId);
    if (mine && mine.consumers.length === 2) break;
    if (Date.now() > deadline) throw new Error("the worker did not take its consumers in 15 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    workerId,
    async stop() {
      controller.abort();
      await running;
    },
  };
}

/** Waits until `check` holds (polling), or fails naming `what`. */
export async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Subject ids that must never reach the page, and the key table's raw bytes for the same check. */
export interface SeededKeys {
  subjectIds: string[];
  /** Every `encrypted_key` as hex and as base64. */
  keyMaterial: string[];
}

/**
 * Three subjects' data keys under system key `kek-2026`, one of them destroyed (crypto-shredded):
 * rows as the key store writes them (random bytes stand in for wrapped keys; the dashboard only
 * counts).
 */
export async function seedKeys(db: TestDatabase): Promise<SeededKeys> {
  const subjectIds = ["subject-ada-lovelace", "subject-grace-hopper", "subject-alan-turing"];
  const keyMaterial: string[] = [];
  for (const id of subjectIds.slice(0, 2)) {
    const bytes = crypto.getRandomValues(new Uint8Array(60));
    keyMaterial.push(
      Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""),
      btoa(String.fromCharCode(...bytes)),
    );
    await db
      .sql`INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
      VALUES ('user-pii', ${id}, 1, ${bytes}, 'kek-2026')`;
  }
  await db.sql`INSERT INTO encryption_keys_tombstones (scope, scope_id, max_key_version)
    VALUES ('user-pii', ${subjectIds[2]}, 1)`;
  return { subjectIds, keyMaterial };
}

/** A consumer module for `--module`: redriving `audit_log` records the position in `redriven`. */
export function consumerModule(): string {
  const dir = mkdtempSync(join(tmpdir(), "eventsalsa-dashboard-"));
  const module = join(dir, "consumers.ts");
  writeFileSync(
    module,
    `export const consumers = [{ name: "${AUDIT}", async handle(tx, event) {
      await tx\`INSERT INTO redriven (position) VALUES (\${event.globalPosition})\`;
    } }];\n`,
  );
  return module;
}

/** A running `eventsalsa dashboard` in this process. */
export interface RunningDashboard {
  url: string;
  token: string | null;
  io: CapturedIo;
  stop(): Promise<number>;
}

/** Runs `eventsalsa dashboard args` in-process with `env`, until its first line says where. */
export async function startDashboardCli(
  args: string[],
  env: Record<string, string>,
): Promise<RunningDashboard> {
  const controller = new AbortController();
  const io = { ...captureIo(env), signal: controller.signal };
  const exited = runCli(["dashboard", "--port", "0", ...args], io);
  let code: number | undefined;
  exited.then((c) => code = c);
  await until(
    () => code !== undefined || io.lines.some((l) => l.startsWith("eventsalsa dashboard on ")),
    "the dashboard to listen",
  );
  if (code !== undefined) throw new Error(`dashboard exited ${code}: ${io.errors.join("\n")}`);
  const url = /on (http:\/\/\S+) /.exec(io.lines[0])![1];
  const token = io.lines.find((l) => l.startsWith("token: "))?.slice(7) ?? null;
  return {
    url,
    token: token !== null && /^[0-9a-f]{64}$/.test(token) ? token : null,
    io,
    stop: async () => {
      controller.abort();
      return await exited;
    },
  };
}

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: unknown;
}

/** Reads server-sent events from a response body, frame by frame. */
export async function* readEvents(response: Response): AsyncGenerator<SseEvent> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data: string[] = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length > 0) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
