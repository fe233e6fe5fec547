/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core, against a running
 * `eventsalsa dashboard` and a real worker fleet on PostgreSQL. The page shows the fleet; the lag
 * of a slow consumer rises while events are appended faster than it handles them and falls after;
 * a held transaction shows up as a gap wait naming its backend; an action without the token is
 * refused, and one from the page (which took the token from the printed URL) is carried out.
 *
 * With EVENTSALSA_WRITE_SCREENSHOT=1 it writes docs/dashboard.png (the picture in docs/cli.md).
 * Skips, saying why, without /usr/bin/chromium or without DATABASE_URL.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium, type Page } from "playwright-core";
import { readEnv } from "../../internal/env.ts";
import { testDatabase } from "../../testing/test_database.ts";
import {
  appendEvents,
  AUDIT,
  consumerModule,
  type HeldAppend,
  holdAppend,
  migrateAll,
  seedKeys,
  SLOW,
  startDashboardCli,
  startFleet,
} from "./dashboard_support_test.ts";

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = fileURLToPath(new URL("../../docs/dashboard.png", import.meta.url));

function skipReason(): string | null {
  if (!existsSync(CHROMIUM)) {
    return `needs Chromium at ${CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)`;
  }
  if (!readEnv("DATABASE_URL") && !readEnv("EVENTSALSA_TEST_DATABASE_URL")) {
    return "needs a PostgreSQL server: set DATABASE_URL (a worker fleet, a held transaction and " +
      "the dashboard use several connections)";
  }
  return null;
}

/** A number shown in the page (`-` and thousands separators allowed), or null when absent. */
async function shown(page: Page, selector: string): Promise<number | null> {
  const value = await page.evaluate(
    (s) => (globalThis as unknown as InPage).document.querySelector(s)?.textContent ?? null,
    selector,
  );
  if (value === null || value.trim() === "-" || value.trim() === "") return null;
  return Number(value.replace(/,/g, ""));
}

const lagSelector = (consumer: string) =>
  `[data-testid=consumer-row][data-consumer="${consumer}"] [data-testid=consumer-lag]`;
const rateSelector = (consumer: string) =>
  `[data-testid=consumer-row][data-consumer="${consumer}"] [data-testid=consumer-rate]`;

/** The page's `document`, for functions that run in the browser (Deno's types have no DOM). */
interface InPage {
  document: { querySelector(selector: string): { textContent: string | null } | null };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("eventsalsa dashboard in a real browser", () => {
  it(
    "shows the fleet, lag rising then falling, a gap wait with its blocker; refuses actions without the token",
    { timeout: 120_000 },
    async (t) => {
      const reason = skipReason();
      if (reason !== null) {
        console.log(`skipped: ${reason}`);
        return t.skip(reason);
      }
      const db = await testDatabase();
      let held: HeldAppend | null = null;
      try {
        if (!db.supportsConcurrency) return t.skip(db.concurrencySkipReason!);
        await migrateAll(db);
        await seedKeys(db);
        // A slow projection (10 ms an event) and a fast audit log that dead-letters poison.
        const fleet = await startFleet(db.connect({ max: 10 }), { delayMs: 10 });
        try {
          await appendEvents(db.sql, 5);
          await appendEvents(db.sql, 1, "Order", "Poison");
          const dashboard = await startDashboardCli(
            [
              "--interval",
              "200",
              "--history",
              "1",
              "--allow-actions",
              "--module",
              consumerModule(),
            ],
            { DATABASE_URL: db.schemaUrl },
          );
          const browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: ["--no-sandbox", "--disable-dev-shm-usage"],
          });
          try {
            const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
            const problems: string[] = [];
            page.on("pageerror", (error) => problems.push(String(error)));
            page.on("console", (m) => {
              // The refused action below is logged by the browser as a failed load; not a bug.
              if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
                problems.push(m.text());
              }
            });
            // The URL the CLI printed: the page keeps the token and drops it from the address.
            await page.goto(`${dashboard.url}#token=${dashboard.token}`);
            assert.equal(new URL(page.url()).hash, "", "the token leaves the address bar");

            // The fleet: the worker, live, leading, owning both consumers.
            const worker = `[data-testid=worker-row][data-worker-id="${fleet.workerId}"]`;
            await page.waitForSelector(worker);
            assert.equal(await page.textContent(`${worker} [data-testid=worker-live]`), "live");
            assert.match(
              (await page.textContent(`${worker} [data-testid=worker-consumers]`))!,
              /audit_log, slow_projection/,
            );
            assert.equal(
              await page.textContent("[data-testid=leader]"),
              `${fleet.workerId} (advisory)`,
            );
            for (const consumer of [SLOW, AUDIT]) {
              assert.equal(
                await page.textContent(
                  `[data-testid=consumer-row][data-consumer="${consumer}"] [data-testid=consumer-worker]`,
                ),
                fleet.workerId,
              );
            }
            assert.equal(await page.textContent("[data-testid=connection]"), "live");
            assert.equal(await page.textContent("[data-testid=mode]"), "actions allowed");
            assert.equal(await page.textContent("[data-testid=encryption-subjects]"), "2");
            assert.equal(await page.textContent("[data-testid=encryption-destroyed]"), "1");
            await page.waitForFunction(
              (s) =>
                (globalThis as unknown as InPage).document.querySelector(s)?.textContent === "0",
              lagSelector(SLOW),
            );

            // Lag: appended faster (about 250 events/s) than the slow projection handles them.
            const lags: number[] = [];
            const rates: number[] = [];
            let appending = true;
            const watching = (async () => {
              while (appending || lags.at(-1) !== 0) {
                const lag = await shown(page, lagSelector(SLOW));
                const rate = await shown(page, rateSelector(SLOW));
                if (lag !== null) lags.push(lag);
                if (rate !== null) rates.push(rate);
                await sleep(100);
              }
            })();
            for (let i = 0; i < 15; i++) {
              await appendEvents(db.sql, 25);
              await sleep(100);
            }
            const appendedUntil = lags.length;
            appending = false;
            await Promise.race([
              watching,
              sleep(30_000).then(() => {
                throw new Error(`the lag did not fall back to 0: ${lags.join(" ")}`);
              }),
            ]);
            const peak = Math.max(...lags);
            const peakAt = lags.indexOf(peak);
            const trace = lags.join(" ");
            assert.ok(peak >= 50, `the lag rose above 50: ${trace}`);
            assert.ok(
              lags.slice(0, appendedUntil).some((lag, i) => i > 0 && lag > lags[i - 1]),
              trace,
            );
            assert.ok(peakAt >= 1 && lags[0] < peak, `it rose: ${trace}`);
            assert.equal(lags.at(-1), 0, `and fell to 0: ${trace}`);
            assert.ok(
              lags.slice(peakAt).some((lag) => lag > 0 && lag < peak),
              `gradually: ${trace}`,
            );
            assert.ok(Math.max(...rates) > 10, `events/s shown: ${rates.join(" ")}`);
            const points = await page.getAttribute(
              `[data-testid=lag-line][data-consumer="${SLOW}"]`,
              "data-points",
            );
            assert.ok(Number(points) >= 10, `the chart has the history: ${points} points`);

            // A transaction that took a position and stays open: both consumers wait at it.
            held = await holdAppend(db.connect({ max: 1 }));
            await appendEvents(db.sql, 3);
            const blocker =
              `[data-testid=gap-wait][data-consumer="${SLOW}"] [data-testid=gap-blocker][data-pid="${held.pid}"]`;
            await page.waitForSelector(blocker, { timeout: 15_000 });
            const wait = (await page.textContent(
              `[data-testid=gap-wait][data-consumer="${SLOW}"]`,
            ))!;
            assert.match(wait, new RegExp(`waits at position ${held.position} for`));
            assert.match((await page.textContent(blocker))!, /idle in transaction/);
            assert.match(
              (await page.textContent(blocker))!,
              new RegExp(`^pid ${held.pid}, xid \\d+`),
            );
            assert.equal(await shown(page, lagSelector(SLOW)), 4);
            if (readEnv("EVENTSALSA_WRITE_SCREENSHOT") === "1") {
              await page.screenshot({ path: SCREENSHOT, fullPage: true });
              console.log(`wrote ${SCREENSHOT}`);
            }
            await held.release();
            held = null;
            await page.waitForSelector("[data-testid=gap-wait]", { state: "detached" });
            await page.waitForFunction(
              (s) =>
                (globalThis as unknown as InPage).document.querySelector(s)?.textContent === "0",
              lagSelector(SLOW),
            );

            // Actions: refused without the token (even from the page itself), and from elsewhere.
            const letter = `[data-testid=dead-letter][data-consumer="${AUDIT}"]`;
            const position = Number(await page.getAttribute(letter, "data-position"));
            const body = JSON.stringify({ consumer: AUDIT, position });
            const status = await page.evaluate(
              (b) =>
                fetch("api/actions/redrive", {
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body: b,
                }).then((r) => r.status),
              body,
            );
            assert.equal(status, 403, "no token");
            const foreign = await fetch(`${dashboard.url}api/actions/redrive`, {
              method: "POST",
              headers: {
                "content-type": "application/json",
                "x-eventsalsa-token": dashboard.token!,
                origin: "http://evil.example",
              },
              body,
            });
            assert.equal(foreign.status, 403, "another origin, even with the token");
            await foreign.body?.cancel();
            assert.ok(await page.$(letter), "the dead letter is still there");
            // The page's own button sends the token it took from the URL.
            await page.click(`${letter} [data-testid=redrive]`);
            await page.waitForFunction(
              () =>
                /redriven: audit_log handled Poison/.test(
                  (globalThis as unknown as InPage).document.querySelector(
                    "[data-testid=action-result]",
                  )?.textContent ?? "",
                ),
            );
            await page.waitForSelector(letter, { state: "detached" });
            assert.deepEqual(problems, [], "no script errors in the page");
          } finally {
            await browser.close();
            assert.equal(await dashboard.stop(), 0);
          }
        } finally {
          await held?.release();
          await fleet.stop();
        }
      } finally {
        await db.close();
      }
    },
  );
});
