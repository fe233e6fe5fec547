/**
 * The CLI as a real child process against malformed URLs and servers that are not PostgreSQL: one
 * masked line, the right exit status, never a hang, never the password.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { runCli } from "../cli.ts";
import { type Finished, runCliChild } from "./cli_child_support_test.ts";
import { captureIo } from "./capture_io.ts";
import { checkDatabaseUrl } from "./database.ts";
import { redactor, redactUrl } from "./redact.ts";

/** The password under test, and one that needs percent-encoding in a URL. */
const SECRET = "Zq7-hunter2-Sekr1t-Pa55";
const SPECIAL = "Sé/cr?et#Pa55:w@rd%";
const SPECIAL_ENCODED = encodeURIComponent(SPECIAL);
/** Every spelling of the passwords that must never be printed. */
const FORBIDDEN = [SECRET, SPECIAL, SPECIAL_ENCODED, "Sekr1t", "cr?et#Pa55", "Pa55%3Aw"];

const KEY = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));

/** Argument lists of every command that connects. */
const CONNECTING: string[][] = [
  ["status"],
  ["migrate", "--apply"],
  ["dead-letters", "list"],
  [
    "keys",
    "rewrap",
    "--from",
    "a",
    "--to",
    "b",
    "--key-env",
    "a=CLI_TEST_KEY",
    "--key-env",
    "b=CLI_TEST_KEY",
  ],
];

/** Runs `eventsalsa args` with only `env` (and the test key) for the database settings. */
function runCliProcess(args: string[], env: Record<string, string>): Promise<Finished> {
  return runCliChild(args, { CLI_TEST_KEY: KEY, ...env });
}

/** Exit status, exactly one stderr line matching `pattern`, no stdout, no stack, no password. */
function assertOneLine(run: Finished, status: number, pattern: RegExp, what: string): void {
  const context = `${what}: exit ${run.code} after ${run.ms} ms\nstdout: ${run.stdout}\nstderr: ` +
    run.stderr;
  for (const secret of FORBIDDEN) {
    assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), `leaked: ${context}`);
  }
  assert.equal(run.code, status, context);
  assert.equal(run.stdout, "", context);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, context);
  assert.match(lines[0], pattern, context);
  assert.doesNotMatch(run.stderr, /\n\s+at |Uncaught|error: /, context);
}

interface FakeServer {
  readonly port: number;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that does `behave` with each connection. */
async function fakeServer(behave: (socket: Socket) => void): Promise<FakeServer> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    behave(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("eventsalsa CLI: malformed DATABASE_URL", () => {
  it("one masked line and exit 2, whatever is wrong with it", async () => {
    const cases: Array<[string, RegExp]> = [
      [
        `postgres://app:${SECRET}@db.example.com:notaport/app`,
        /^eventsalsa status: DATABASE_URL has the port "notaport", not a number from 1 to 65535$/,
      ],
      [
        `postgres://app:${SPECIAL_ENCODED}@db.example.com:notaport/app`,
        /DATABASE_URL has the port "notaport"/,
      ],
      [
        `postgres://app:${SECRET}%ZZ@127.0.0.1:5432/app`,
        /DATABASE_URL has a bad percent-encoding in the password \(write % as %25\)$/,
      ],
      [`postgres://app:${SPECIAL}@127.0.0.1:5432/app`, /DATABASE_URL has an @ after the host/],
      [`postgres://app:ab/${SECRET}@127.0.0.1/app`, /DATABASE_URL has an @ after the host/],
      [
        `mysql://app:${SECRET}@127.0.0.1:3306/app`,
        /DATABASE_URL has the scheme mysql:\/\/; expected postgres:\/\/ or postgresql:\/\//,
      ],
      [`${SECRET} is no URL`, /DATABASE_URL is not a URL; expected postgres:\/\/user:password@/],
      [`app:${SECRET}@127.0.0.1:5432/app`, /DATABASE_URL is not a URL/],
      [
        `postgres://app:${SECRET}@bad host/app`,
        /DATABASE_URL is not a valid URL \(postgres:\/\/app:\*\*\*@bad host\/app\)/,
      ],
    ];
    const runs = await Promise.all(
      cases.map(([url]) => runCliProcess(["status"], { DATABASE_URL: url })),
    );
    runs.forEach((run, i) => assertOneLine(run, 2, cases[i][1], cases[i][0]));

    // Every connecting command checks the URL the same way.
    const url = `postgres://app:${SECRET}@db.example.com:notaport/app`;
    const commands = await Promise.all(
      CONNECTING.slice(1).map((args) => runCliProcess(args, { DATABASE_URL: url })),
    );
    commands.forEach((run, i) =>
      assertOneLine(run, 2, /DATABASE_URL has the port "notaport"/, CONNECTING[i + 1].join(" "))
    );
  });

  it("accepts what postgres.js accepts", () => {
    for (
      const url of [
        "postgres://localhost/db",
        "postgresql://user@localhost:5432/db",
        "postgres:///db",
        `postgres://user:${SPECIAL_ENCODED}@host:5432/db?sslmode=require`,
        "postgres://user:p@ss@host/db",
        "postgres://user:pw@host1:5432,host2:5433/db",
      ]
    ) {
      assert.doesNotThrow(() => checkDatabaseUrl(url), url);
    }
  });

  it("an invalid EVENTSALSA_CONNECT_TIMEOUT is a usage error", async () => {
    for (const value of ["soon", "0", "-1", "1e9"]) {
      const io = captureIo({
        DATABASE_URL: "postgres://app@127.0.0.1:1/app",
        EVENTSALSA_CONNECT_TIMEOUT: value,
      });
      assert.equal(await runCli(["status"], io), 2, value);
      assert.deepEqual(io.errors, [
        `eventsalsa status: EVENTSALSA_CONNECT_TIMEOUT must be a number of seconds above 0 and ` +
        `at most 86400, got ${JSON.stringify(value)}`,
      ]);
    }
  });
});

describe("eventsalsa CLI: servers that are not PostgreSQL", () => {
  it("a server that accepts and never answers: every command gives up after the timeout", async () => {
    const server = await fakeServer(() => {});
    try {
      const env = {
        DATABASE_URL: `postgres://app:${SECRET}@127.0.0.1:${server.port}/app`,
        EVENTSALSA_CONNECT_TIMEOUT: "1",
      };
      const runs = await Promise.all(CONNECTING.map((args) => runCliProcess(args, env)));
      runs.forEach((run, i) => {
        const name = CONNECTING[i][0];
        assertOneLine(
          run,
          1,
          new RegExp(
            `^eventsalsa ${name}: could not connect to 127\\.0\\.0\\.1:${server.port} within 1 s: ` +
              "the server accepted the connection but did not answer as PostgreSQL$",
          ),
          CONNECTING[i].join(" "),
        );
        // 1 s of waiting plus the runtime's start-up: nowhere near a hang.
        assert.ok(run.ms < 30_000, `${CONNECTING[i].join(" ")} took ${run.ms} ms`);
      });
    } finally {
      await server.close();
    }
  });

  it("servers that hang up or send garbage: a clear line, exit 1, no hang", async () => {
    const behaviours: Array<[string, (socket: Socket) => void, RegExp]> = [
      ["resets at once", (s) => s.destroy(), /closed it without answering as PostgreSQL$/],
      ["closes at once", (s) => s.end(), /closed it without answering as PostgreSQL$/],
      [
        "writes garbage then closes",
        (s) => s.end("garbage garbage garbage\n"),
        /(closed it without answering as|answered with something other than) PostgreSQL$/,
      ],
      [
        "answers HTTP",
        (s) => s.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        /answered with something other than PostgreSQL$/,
      ],
      [
        // ReadyForQuery before any startup: postgres.js's own connect_timeout stops here.
        "claims ready, then nothing",
        (s) => s.write(new Uint8Array([0x5a, 0, 0, 0, 5, 0x49])),
        /answered with something other than PostgreSQL$/,
      ],
      [
        "sends an error without SQLSTATE",
        (s) => s.write(new TextEncoder().encode("E\0\0\0\x08garb")),
        /answered with something other than PostgreSQL$/,
      ],
      [
        "sends an unknown message type",
        (s) => s.write(new Uint8Array([1, 0, 0, 0, 5, 0x78])),
        /answered with something other than PostgreSQL$/,
      ],
    ];
    const servers = await Promise.all(behaviours.map(([, behave]) => fakeServer(behave)));
    // A port nobody listens on.
    const gone = await fakeServer(() => {});
    await gone.close();
    try {
      const env = (port: number) => ({
        DATABASE_URL: `postgres://app:${SECRET}@127.0.0.1:${port}/app`,
        EVENTSALSA_CONNECT_TIMEOUT: "1",
      });
      const runs = await Promise.all([
        ...servers.map((server) => runCliProcess(["status"], env(server.port))),
        runCliProcess(["status"], env(gone.port)),
      ]);
      const expected = [
        ...behaviours.map(([what, , pattern], i) => ({ what, pattern, port: servers[i].port })),
        {
          what: "refuses",
          pattern: /: connection refused \(is PostgreSQL running/,
          port: gone.port,
        },
      ];
      runs.forEach((run, i) => {
        const { what, pattern, port } = expected[i];
        assertOneLine(run, 1, pattern, what);
        assert.match(
          run.stderr,
          new RegExp(`^eventsalsa status: could not connect to 127\\.0\\.0\\.1:${port}[: ]`),
        );
        assert.ok(run.ms < 30_000, `${what} took ${run.ms} ms`);
      });
    } finally {
      await Promise.all(servers.map((server) => server.close()));
    }
  });
});

describe("eventsalsa CLI: password redaction", () => {
  it("masks the password in every spelling, and the credentials of any URL", () => {
    const url = `postgres://app:${SPECIAL_ENCODED}@db:5432/app?sslpassword=${SECRET}`;
    const redact = redactor({ url, password: "pg-env-password" });
    const text = [
      url,
      SPECIAL,
      SPECIAL_ENCODED,
      JSON.stringify(SPECIAL),
      new URL(`postgres://app:${SPECIAL_ENCODED}@db/app`).href,
      SECRET,
      "PGPASSWORD was pg-env-password",
      "other://someone:whatever@elsewhere/x",
    ].join(" | ");
    const masked = redact(text);
    for (const secret of [...FORBIDDEN, "pg-env-password", "whatever"]) {
      assert.ok(!masked.includes(secret), `${secret} in ${masked}`);
    }
    assert.match(masked, /other:\/\/someone:\*\*\*@elsewhere\/x/);
    assert.equal(
      redactUrl(`postgres://app:${SECRET}@db:5432/app?password=${SECRET}&x=1`),
      "postgres://app:***@db:5432/app?password=***&x=1",
    );
    assert.equal(redactUrl("postgres://app@db/app"), "postgres://app@db/app");
    // The placeholder of usage examples is no secret.
    assert.equal(
      redactor({})("postgres://user:password@host:5432/database"),
      "postgres://user:password@host:5432/database",
    );
  });

  it("error lines of any command go through the mask", async () => {
    const io = captureIo({ DATABASE_URL: `postgres://app:${SECRET}@127.0.0.1:1/app` });
    const code = await runCli([
      "dead-letters",
      "retry",
      "--consumer",
      "x",
      "--position",
      "1",
      "--module",
      `/nonexistent/${SECRET}/consumers.ts`,
    ], io);
    assert.equal(code, 2);
    assert.equal(io.errors.length, 1);
    assert.ok(!io.errors[0].includes(SECRET), io.errors[0]);
    assert.match(io.errors[0], /cannot load --module \/nonexistent\/\*\*\*\/consumers\.ts/);
  });
});
