/**
 * The dashboard without a browser: flags and the host refusal, the token and CSRF checks on each
 * route, the server-sent event stream, and that no response or output line carries the database
 * password, key material or a subject id. The browser test (dashboard_browser_test.ts) drives the
 * page itself.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "../../cli.ts";
import { captureIo } from "../capture_io.ts";
import { CliUsageError } from "../io.ts";
import { testDatabase } from "../../testing/test_database.ts";
import { dashboardSettings } from "./command.ts";
import type { DashboardSnapshot, LagSample } from "./monitor.ts";
import {
  allowedHostNames,
  generateToken,
  hostName,
  isLoopback,
  parseOrigin,
  type SecurityPolicy,
  tokensMatch,
} from "./security.ts";
import { createHandler, type PageConfig, serve, type SnapshotSource } from "./server.ts";
import {
  appendEvents,
  AUDIT,
  consumerModule,
  migrateAll,
  readEvents,
  seedKeys,
  startDashboardCli,
  startFleet,
  until,
} from "./dashboard_support_test.ts";

const T = { timeout: 60_000 };
const TOKEN = "a".repeat(64);

/** A snapshot source the test feeds by hand. */
function fakeSource(): SnapshotSource & { polls: number; push(latestPosition: number): void } {
  const listeners = new Set<(s: DashboardSnapshot, sample: LagSample | null) => void>();
  const source = {
    snapshot: null as DashboardSnapshot | null,
    samples: [] as LagSample[],
    polls: 0,
    subscribe(listener: (s: DashboardSnapshot, sample: LagSample | null) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    pollSoon() {
      source.polls++;
    },
    push(latestPosition: number) {
      const snapshot: DashboardSnapshot = {
        at: new Date().toISOString(),
        error: null,
        schema: null,
        latestPosition,
        appendRate: null,
        leader: null,
        workers: [],
        consumers: [],
        deadLetters: { open: 0, shown: [] },
        encryption: null,
      };
      const sample = { t: Date.now(), latestPosition, lags: {}, checkpoints: {} };
      source.snapshot = snapshot;
      source.samples.push(sample);
      for (const listener of listeners) listener(snapshot, sample);
    },
  };
  return source;
}

const CONFIG: PageConfig = {
  version: "test",
  intervalMs: 50,
  historyMs: 60_000,
  tokenRequired: false,
  actions: { enabled: false, redrive: [] },
};

const LOOPBACK = allowedHostNames("127.0.0.1", []);

function request(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Request {
  return new Request(`http://127.0.0.1:8080${path}`, {
    method: init.method ?? "GET",
    headers: { host: "127.0.0.1:8080", ...init.headers },
    body: init.body,
  });
}

async function errorOf(response: Response): Promise<string> {
  return ((await response.json()) as { error: string }).error;
}

describe("dashboard: flags and security checks", () => {
  it("loopback addresses, host names and origins", () => {
    for (
      const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"]
    ) {
      assert.equal(isLoopback(host), true, host);
    }
    for (const host of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.10", "example.com", "128.0.0.1"]) {
      assert.equal(isLoopback(host), false, host);
    }
    assert.equal(hostName("[::1]:8080"), "::1");
    assert.equal(hostName("LocalHost:80"), "localhost");
    assert.equal(hostName("::1"), "::1");
    assert.equal(parseOrigin("https://ops.example.com/"), "https://ops.example.com");
    assert.equal(parseOrigin("https://ops.example.com:8443"), "https://ops.example.com:8443");
    for (
      const bad of ["ops.example.com", "https://ops.example.com/path", "ftp://x", "https://u:p@x"]
    ) {
      assert.equal(parseOrigin(bad), null, bad);
    }
    assert.equal(allowedHostNames("0.0.0.0", []), null);
    assert.deepEqual(
      [...allowedHostNames("127.0.0.1", ["https://ops.example.com"])!].sort(),
      ["127.0.0.1", "::1", "localhost", "ops.example.com"],
    );
  });

  it("tokens: 32 random bytes in hex, compared in constant time whatever the length", () => {
    const a = generateToken();
    const b = generateToken();
    assert.match(a, /^[0-9a-f]{64}$/);
    assert.notEqual(a, b);
    assert.equal(tokensMatch(a, a), true);
    assert.equal(tokensMatch(b, a), false);
    assert.equal(tokensMatch(a.slice(0, 10), a), false);
    assert.equal(tokensMatch("", a), false);
    assert.equal(tokensMatch(null, a), false);
  });

  it("refuses a non-loopback host without a token, before connecting (exit 2)", T, async () => {
    for (const host of ["0.0.0.0", "192.168.1.10", "::"]) {
      const io = captureIo(); // no DATABASE_URL: refused before it would be needed
      assert.equal(await runCli(["dashboard", "--host", host], io), 2);
      assert.match(io.errors.join("\n"), /refusing to serve on .* not a loopback address/);
    }
    const io = captureIo();
    const settings = dashboardSettings(["--host", "0.0.0.0", "--allow-actions"], io);
    assert.match(settings.token!, /^[0-9a-f]{64}$/);
    assert.equal(settings.tokenFromEnvironment, false);
    const own = dashboardSettings(
      ["--host", "0.0.0.0"],
      captureIo({ EVENTSALSA_DASHBOARD_TOKEN: TOKEN }),
    );
    assert.equal(own.token, TOKEN);
    assert.equal(own.tokenFromEnvironment, true);
    assert.equal(own.allowActions, false);
    // Loopback, no token: read-only and open to this machine.
    const plain = dashboardSettings([], io);
    assert.equal(plain.token, null);
    assert.equal(plain.port, 8080);
    assert.equal(plain.host, "127.0.0.1");
    assert.equal(plain.intervalMs, 2000);
    assert.equal(plain.historyMs, 600_000);

    const refused = (args: string[], env: Record<string, string> = {}) =>
      assert.throws(() => dashboardSettings(args, captureIo(env)), CliUsageError, args.join(" "));
    refused([], { EVENTSALSA_DASHBOARD_TOKEN: "short" });
    refused(["--module", "./consumers.ts"]);
    refused(["--port", "70000"]);
    refused(["--port", "-1"]);
    refused(["--interval", "0"]);
    refused(["--origin", "ops.example.com"]);
    refused(["--host", "bad host"]);
    refused(["--bogus"]);
  });

  it("read-only: the page for anyone on this machine, no actions, Host checked", T, async () => {
    const source = fakeSource();
    source.push(7);
    const policy: SecurityPolicy = {
      token: null,
      allowActions: false,
      allowedHosts: LOOPBACK,
      origins: [],
    };
    const { handle, close } = createHandler({
      monitor: source,
      policy,
      config: CONFIG,
      redact: (t) => t,
    });
    try {
      const page = await handle(request("/"));
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type")!, /^text\/html/);
      assert.match(page.headers.get("content-security-policy")!, /script-src 'self'/);
      assert.equal(page.headers.get("x-frame-options"), "DENY");
      assert.match(await page.text(), /<script type="module" src="dashboard.js">/);
      assert.equal((await handle(request("/dashboard.js"))).status, 200);
      assert.equal((await handle(request("/dashboard.css"))).status, 200);
      const snapshot = await handle(request("/api/snapshot"));
      assert.equal(snapshot.status, 200);
      assert.equal((await snapshot.json()).snapshot.latestPosition, 7);

      // DNS rebinding: another site's name pointing here.
      const rebound = await handle(
        request("/api/snapshot", { headers: { host: "evil.example:8080" } }),
      );
      assert.equal(rebound.status, 403);
      assert.match(await errorOf(rebound), /unexpected Host header/);
      assert.equal((await handle(request("/", { headers: { host: "evil.example" } }))).status, 403);
      assert.equal(
        (await handle(request("/api/snapshot", { headers: { host: "localhost:8080" } }))).status,
        200,
      );

      const action = await handle(request("/api/actions/redrive", {
        method: "POST",
        headers: { "content-type": "application/json", "x-eventsalsa-token": TOKEN },
        body: JSON.stringify({ consumer: "c", position: 1 }),
      }));
      assert.equal(action.status, 403);
      assert.match(await errorOf(action), /read-only dashboard/);
      assert.equal((await handle(request("/nowhere"))).status, 404);
      assert.equal((await handle(request("/api/snapshot", { method: "POST" }))).status, 405);
      assert.equal((await handle(request("/api/actions/redrive"))).status, 405);
    } finally {
      close();
    }
  });

  it(
    "with a token: reads need it, actions need it, a same-origin request and JSON",
    T,
    async () => {
      const source = fakeSource();
      source.push(1);
      const redriven: Array<[string, number]> = [];
      const log: string[] = [];
      const policy: SecurityPolicy = {
        token: TOKEN,
        allowActions: true,
        allowedHosts: allowedHostNames("127.0.0.1", ["https://ops.example.com"]),
        origins: ["https://ops.example.com"],
      };
      const { handle, close } = createHandler({
        monitor: source,
        policy,
        config: { ...CONFIG, tokenRequired: true, actions: { enabled: true, redrive: [AUDIT] } },
        redact: (t) => t,
        log: (line) => log.push(line),
        redrive: (consumer, position) => {
          redriven.push([consumer, position]);
          return Promise.resolve(`redriven: ${consumer} at ${position}`);
        },
      });
      const good = {
        "content-type": "application/json",
        "x-eventsalsa-token": TOKEN,
        origin: "http://127.0.0.1:8080",
        "sec-fetch-site": "same-origin",
      };
      const post = (
        headers: Record<string, string>,
        body: unknown = { consumer: AUDIT, position: 2 },
      ) =>
        handle(
          request("/api/actions/redrive", { method: "POST", headers, body: JSON.stringify(body) }),
        );
      try {
        // The page shell carries no data: served without the token.
        assert.equal((await handle(request("/"))).status, 200);
        assert.equal((await handle(request("/api/snapshot"))).status, 401);
        assert.equal((await handle(request("/api/events"))).status, 401);
        assert.equal(
          (await handle(
            request("/api/snapshot", { headers: { "x-eventsalsa-token": "b".repeat(64) } }),
          ))
            .status,
          401,
        );
        assert.equal(
          (await handle(request("/api/snapshot", { headers: { "x-eventsalsa-token": TOKEN } })))
            .status,
          200,
        );

        const { "x-eventsalsa-token": _, ...noToken } = good;
        const missing = await post(noToken);
        assert.equal(missing.status, 403);
        assert.match(await errorOf(missing), /need the token/);
        assert.equal((await post({ ...good, "x-eventsalsa-token": "x" })).status, 403);
        const crossOrigin = await post({
          ...good,
          origin: "http://evil.example",
          "sec-fetch-site": "same-origin",
        });
        assert.equal(crossOrigin.status, 403);
        assert.match(await errorOf(crossOrigin), /cross-origin request refused/);
        const crossSite = await post({ ...good, "sec-fetch-site": "cross-site" });
        assert.equal(crossSite.status, 403);
        assert.match(await errorOf(crossSite), /cross-site request refused/);
        assert.equal((await post({ ...good, origin: "null" })).status, 403);
        assert.equal((await post({ ...good, "content-type": "text/plain" })).status, 415);
        assert.deepEqual(redriven, [], "no refused request ran the action");
        assert.ok(log.some((l) => l.includes("action refused (403)")), log.join("\n"));

        assert.equal((await post(good, { consumer: AUDIT, position: 0 })).status, 400);
        assert.equal((await post(good, { consumer: "", position: 2 })).status, 400);
        assert.equal((await post(good, { consumer: "other", position: 2 })).status, 404);
        const ok = await post(good);
        assert.equal(ok.status, 200, await ok.clone().text());
        assert.deepEqual(await ok.json(), { ok: true, message: `redriven: ${AUDIT} at 2` });
        // Behind a reverse proxy: the public origin, with the proxy's Host or the public one.
        assert.equal((await post({ ...good, origin: "https://ops.example.com" })).status, 200);
        assert.equal(
          (await post({ ...good, origin: "https://ops.example.com", host: "ops.example.com" }))
            .status,
          200,
        );
        // A client that is not a browser sends no Origin: the token alone.
        const { origin: _o, "sec-fetch-site": _s, ...curl } = good;
        assert.equal((await post(curl)).status, 200);
        assert.equal(redriven.length, 4);
        assert.equal(source.polls, 4, "each action asks for a poll");
      } finally {
        close();
      }
    },
  );

  it("the event stream sends hello, then a snapshot after each poll (over HTTP)", T, async () => {
    const source = fakeSource();
    source.push(1);
    const policy: SecurityPolicy = {
      token: null,
      allowActions: false,
      allowedHosts: LOOPBACK,
      origins: [],
    };
    const handler = createHandler({ monitor: source, policy, config: CONFIG, redact: (t) => t });
    const server = await serve(handler.handle, "127.0.0.1", 0);
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/api/events`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type")!, /^text\/event-stream/);
      const events = readEvents(response);
      const hello = (await events.next()).value!;
      assert.equal(hello.event, "hello");
      assert.equal((hello.data as { snapshot: DashboardSnapshot }).snapshot.latestPosition, 1);
      for (const position of [2, 3]) {
        source.push(position);
        const next = (await events.next()).value!;
        assert.equal(next.event, "snapshot");
        assert.equal(
          (next.data as { snapshot: DashboardSnapshot }).snapshot.latestPosition,
          position,
        );
      }
      await events.return(undefined);
    } finally {
      handler.close();
      await server.close();
    }
  });
});

describe("dashboard against PostgreSQL", () => {
  it(
    "the fleet, dead letters and key counts; each poll streamed; redrive with the token",
    T,
    async (t) => {
      const db = await testDatabase();
      try {
        if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
        await migrateAll(db);
        await seedKeys(db);
        const fleet = await startFleet(db.connect({ max: 10 }));
        try {
          await appendEvents(db.sql, 2);
          await appendEvents(db.sql, 1, "Order", "Poison");
          const dashboard = await startDashboardCli(
            ["--interval", "100", "--allow-actions", "--module", consumerModule()],
            { DATABASE_URL: db.schemaUrl },
          );
          try {
            assert.match(dashboard.io.lines[0], /\(actions allowed; polling every 100 ms\)$/);
            assert.ok(dashboard.token, dashboard.io.lines.join("\n"));
            assert.equal(dashboard.io.lines[2], `open ${dashboard.url}#token=${dashboard.token}`);
            const headers = { "x-eventsalsa-token": dashboard.token! };
            const response = await fetch(`${dashboard.url}api/events`, { headers });
            assert.equal(response.status, 200);
            let snapshot: DashboardSnapshot | null = null;
            for await (const { event, data } of readEvents(response)) {
              snapshot = (data as { snapshot: DashboardSnapshot }).snapshot;
              if (event === "hello") continue;
              const audit = snapshot.consumers.find((c) => c.name === AUDIT);
              if (snapshot.latestPosition === 3 && audit?.checkpoint === 3) break;
            }
            assert.ok(snapshot);
            assert.equal(snapshot.error, null);
            assert.match(snapshot.schema!.summary, /^schema: up to date/);
            assert.deepEqual(snapshot.workers.map((w) => [w.workerId, w.live]), [[
              fleet.workerId,
              true,
            ]]);
            assert.equal(snapshot.leader?.workerId, fleet.workerId);
            assert.equal(snapshot.leader?.strategy, "advisory");
            assert.deepEqual(
              snapshot.consumers.map((c) => [c.name, c.workerId]),
              [[AUDIT, fleet.workerId], ["slow_projection", fleet.workerId]],
            );
            assert.equal(snapshot.deadLetters.open, 1);
            const [letter] = snapshot.deadLetters.shown;
            assert.equal(letter.consumer, AUDIT);
            assert.equal(letter.globalPosition, 3);
            assert.equal(letter.state, "skipped");
            assert.match(letter.error, /cannot digest this one/);
            assert.deepEqual(snapshot.encryption, {
              installed: true,
              table: "encryption_keys",
              checkedAt: snapshot.encryption!.checkedAt,
              subjects: 2,
              keys: 2,
              activeKeys: 2,
              destroyedSubjects: 1,
              bySystemKey: [{ systemKeyId: "kek-2026", keys: 2, subjects: 2 }],
            });

            // The action without the token is refused; with it, the dead letter is redriven.
            const url = `${dashboard.url}api/actions/redrive`;
            const body = JSON.stringify({ consumer: AUDIT, position: 3 });
            const json = { "content-type": "application/json" };
            const refused = await fetch(url, { method: "POST", headers: json, body });
            assert.equal(refused.status, 403);
            await refused.body?.cancel();
            const done = await fetch(url, {
              method: "POST",
              headers: { ...json, ...headers },
              body,
            });
            assert.equal(done.status, 200);
            assert.match(
              (await done.json()).message,
              /redriven: audit_log handled Poison at position 3/,
            );
            const redriven = await db.sql`SELECT position::int FROM redriven`.values();
            assert.deepEqual(redriven.map((row) => [...row]), [[3]]);
            const again = await fetch(url, {
              method: "POST",
              headers: { ...json, ...headers },
              body,
            });
            assert.equal(again.status, 404, "nothing left to redrive");
            await again.body?.cancel();
            await until(async () => {
              const r = await fetch(`${dashboard.url}api/snapshot`, { headers });
              return (await r.json()).snapshot.deadLetters.open === 0;
            }, "the redriven dead letter to leave the page");
            assert.ok(
              dashboard.io.lines.some((l) => /redrive audit_log at 3: redriven/.test(l)),
              dashboard.io.lines.join("\n"),
            );
          } finally {
            assert.equal(await dashboard.stop(), 0);
          }
          assert.equal(dashboard.io.lines.at(-1), "eventsalsa dashboard: stopped");
        } finally {
          await fleet.stop();
        }
      } finally {
        await db.close();
      }
    },
  );

  it("no password, key material or subject id in any response or output line", T, async (t) => {
    const db = await testDatabase();
    try {
      if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
      await migrateAll(db);
      const keys = await seedKeys(db);
      // The test server trusts local connections, so a password in the URL is sent and ignored.
      const password = "pw-Sup3r-s3cret-Dashboard";
      const url = new URL(db.schemaUrl);
      url.password = password;
      const dashboard = await startDashboardCli(
        ["--interval", "100", "--allow-actions"],
        { DATABASE_URL: url.href, PGPASSWORD: password },
      );
      const bodies: string[] = [];
      try {
        const headers = { "x-eventsalsa-token": dashboard.token! };
        const get = async (path: string, extra: Record<string, string> = {}) => {
          const response = await fetch(dashboard.url + path, { headers: { ...headers, ...extra } });
          bodies.push(`${path} ${response.status} ${[...response.headers].join(" ")}`);
          bodies.push(await response.text());
        };
        for (const path of ["", "dashboard.js", "dashboard.css", "api/snapshot", "nowhere"]) {
          await get(path);
        }
        await get("api/snapshot", { "x-eventsalsa-token": "wrong" });
        const stream = await fetch(`${dashboard.url}api/events`, { headers });
        const events = readEvents(stream);
        for (let i = 0; i < 3; i++) bodies.push(JSON.stringify((await events.next()).value));
        await events.return(undefined);
        // Errors of a poll reach the page: drop a table under the dashboard.
        await db.sql`DROP TABLE consumer_dead_letters`;
        await until(async () => {
          const response = await fetch(`${dashboard.url}api/snapshot`, { headers });
          const text = await response.text();
          bodies.push(text);
          return JSON.parse(text).snapshot.error !== null;
        }, "a failed poll on the page");
        const redrive = await fetch(`${dashboard.url}api/actions/redrive`, {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body: JSON.stringify({ consumer: AUDIT, position: 1 }),
        });
        bodies.push(await redrive.text());
      } finally {
        assert.equal(await dashboard.stop(), 0);
      }
      const everything = [...bodies, ...dashboard.io.lines, ...dashboard.io.errors].join("\n");
      assert.match(everything, /relation .*consumer_dead_letters.* does not exist/);
      assert.match(everything, /"subjects":2/);
      for (const secret of [password, ...keys.subjectIds, ...keys.keyMaterial]) {
        assert.ok(!everything.includes(secret), `leaked: ${secret}`);
      }
      assert.ok(!everything.includes("encrypted_key"));
    } finally {
      await db.close();
    }
  });
});
