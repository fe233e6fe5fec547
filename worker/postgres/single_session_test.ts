// On a server of one session (the embedded PGlite) the worker opens no connection of its own,
// whatever its options ask for: it recognises the server at start and polls, elects by lease and
// cancels nothing. A refused extra connection is retried by postgres.js at once, without back-off,
// which burned a core for the whole run and could keep the process alive after it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import postgres from "postgres";
import { any } from "../../store/expected_version.ts";
import { migrate as migrateStore } from "../../store/migration.ts";
import { PostgresStore } from "../../store/postgres_store.ts";
import { startEmbeddedDatabase } from "../../testing/embedded_database.ts";
import { draft, until } from "../support_test.ts";
import { Worker } from "../worker.ts";
import { PostgresCoordinator } from "./coordinator.ts";
import { pgHarness } from "./harness_test.ts";
import { migrate } from "./migration.ts";
import { workerTables } from "./tables.ts";

const T = { timeout: 60_000 };

/** A TCP relay in front of `target` (host:port) that counts the connections it accepts. */
async function countingRelay(target: string) {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.split(":").pop())];
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(port, host);
    for (const [from, to] of [[client, upstream], [upstream, client]]) {
      sockets.add(from);
      from.on("data", (chunk) => to.write(chunk));
      from.on("error", () => to.destroy());
      from.on("close", () => {
        sockets.delete(from);
        to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("a single-session server", () => {
  it("prepare() tells the embedded PGlite from PostgreSQL", T, async () => {
    const h = await pgHarness();
    try {
      const coordinator = new PostgresCoordinator(h.sql, h.store, {
        tables: workerTables(),
        notifyChannel: null,
      });
      assert.equal(coordinator.singleSession, false, "unknown before prepare()");
      await coordinator.prepare();
      assert.equal(coordinator.singleSession, h.db.kind === "pglite", h.db.kind);
      await coordinator.close();
    } finally {
      await h.close();
    }
  });

  it(
    "on the embedded PGlite a worker that asks for LISTEN and the advisory session opens no connection",
    T,
    async () => {
      const embedded = await startEmbeddedDatabase();
      const relay = await countingRelay(new URL(embedded.url).host);
      const url = new URL(embedded.url);
      url.host = `127.0.0.1:${relay.port}`;
      const sql = postgres(url.href, { max: 1, onnotice: () => {} });
      try {
        await migrateStore(sql);
        await migrate(sql);
        const store = new PostgresStore({ notifyChannel: "eventsalsa_events" });
        for (let i = 0; i < 5; i++) await store.append(sql, any(), [draft("Order")]);
        const handled: number[] = [];
        const infos: string[] = [];
        const worker = new Worker(sql, store, [{
          name: "single_session_projection",
          handle(_tx, event) {
            handled.push(event.globalPosition);
          },
        }], {
          // Each of these needs a connection of its own on a server that has more than one.
          dispatcher: "notify",
          leaderStrategy: "advisory",
          coordinationChannel: "eventsalsa_worker",
          pollInterval: 50,
          logger: { info: (message) => infos.push(message) },
        });
        const running = worker.start();
        await until(() => handled.length === 5, { timeoutMs: 30_000, what: "five events" });
        assert.ok(worker.isLeader);
        const stopping = Date.now();
        await worker.stop();
        await running;
        assert.ok(Date.now() - stopping < 30_000, `stop took ${Date.now() - stopping} ms`);
        assert.deepEqual(handled, [1, 2, 3, 4, 5]);
        assert.ok(infos.some((m) => m.includes("single-session")), infos.join("; "));
        assert.equal(relay.accepted, 1, "only the pool's own connection");
      } finally {
        await sql.end();
        await relay.close();
        await embedded.close();
      }
    },
  );
});
