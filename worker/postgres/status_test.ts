// status(sql) and the dead-letter table on PostgreSQL: poison events skipped and redriven,
// blocking dead letters, lag and assignments.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { skipPoisonEvents } from "../core/poison.ts";
import { PoisonEventError } from "../errors.ts";
import { until } from "../support_test.ts";
import { retryDeadLetter } from "./dead_letters.ts";
import { pgHarness, skipWithoutConcurrency } from "./harness_test.ts";
import { status } from "./status.ts";

describe("status and dead letters on PostgreSQL", () => {
  it(
    "reports workers, assignments, checkpoints, lag and dead letters; a skipped event can be redriven",
    {
      timeout: 60_000,
    },
    async (t) => {
      const h = await pgHarness();
      try {
        if (skipWithoutConcurrency(t, h.db)) return;
        for (let i = 0; i < 4; i++) await h.append();
        let poisoned = true;
        const lenientProjection = h.projection("lenient");
        const lenient = {
          ...lenientProjection,
          onPoison: skipPoisonEvents(),
          async handle(...args: Parameters<NonNullable<typeof lenientProjection.handle>>) {
            if (args[1].globalPosition === 2 && poisoned) throw new PoisonEventError("bad payload");
            await lenientProjection.handle!(...args);
          },
        };
        const strict = h.projection("strict", {
          handle: () => Promise.reject(new PoisonEventError("never")),
        });
        const worker = h.worker([lenient, strict], { maxConsecutiveFailures: 1_000 });
        const running = worker.start();
        await until(async () => (await h.checkpoint("lenient")) === 4, {
          clock: h.clock,
          step: 200,
        });
        await until(
          async () =>
            (await status(h.sql)).consumers.find((c) => c.name === "strict")!.deadLetters
              .blocking === 1,
          {
            clock: h.clock,
            step: 200,
          },
        );
        assert.deepEqual(await h.rows("lenient"), [1, 3, 4]);

        const report = await status(h.sql);
        assert.equal(report.latestPosition, 4);
        assert.deepEqual(report.workers.map((w) => [w.workerId, w.live, [...w.consumers]]), [
          [worker.id, true, ["lenient", "strict"]],
        ]);
        const byName = Object.fromEntries(report.consumers.map((c) => [c.name, c]));
        assert.deepEqual(
          {
            worker: byName.lenient.workerId,
            checkpoint: byName.lenient.checkpoint,
            lag: byName.lenient.lag,
          },
          { worker: worker.id, checkpoint: 4, lag: 0 },
        );
        assert.deepEqual(byName.lenient.deadLetters, { skipped: 1, blocking: 0 });
        assert.deepEqual(
          {
            checkpoint: byName.strict.checkpoint,
            lag: byName.strict.lag,
            letters: byName.strict.deadLetters,
          },
          { checkpoint: 0, lag: 4, letters: { skipped: 0, blocking: 1 } },
        );
        const [letter] = await h.sql`SELECT global_position, skipped, error, attempts, event_type
        FROM consumer_dead_letters WHERE consumer_name = 'lenient'`;
        assert.deepEqual({ ...letter, global_position: Number(letter.global_position) }, {
          global_position: 2,
          skipped: true,
          error: "PoisonEventError: bad payload",
          attempts: 1,
          event_type: "OrderPlaced",
        });

        poisoned = false;
        const redriven = await retryDeadLetter(h.sql, h.store, lenient, 2);
        assert.equal(redriven.globalPosition, 2);
        assert.deepEqual(await h.rows("lenient"), [1, 2, 3, 4]);
        await assert.rejects(retryDeadLetter(h.sql, h.store, lenient, 2), {
          name: "DeadLetterNotFoundError",
        });
        await assert.rejects(retryDeadLetter(h.sql, h.store, lenient, 3), {
          name: "DeadLetterNotFoundError",
        });
        assert.deepEqual(
          (await status(h.sql)).consumers.find((c) => c.name === "lenient")!.deadLetters,
          {
            skipped: 0,
            blocking: 0,
          },
        );
        await worker.stop();
        await running;
        const stopped = await status(h.sql);
        assert.deepEqual(stopped.workers, []);
        assert.ok(stopped.consumers.every((c) => c.workerId === null));
      } finally {
        await h.close();
      }
    },
  );

  it(
    "a failing redrive writes nothing and leaves the dead letter",
    { timeout: 30_000 },
    async (t) => {
      const h = await pgHarness();
      try {
        if (skipWithoutConcurrency(t, h.db)) return;
        await h.append();
        const consumer = h.projection("stubborn", {
          onPoison: skipPoisonEvents(),
          handle: () => Promise.reject(new PoisonEventError("still bad")),
        });
        const worker = h.worker([consumer]);
        const running = worker.start();
        await until(async () => (await h.checkpoint("stubborn")) === 1, {
          clock: h.clock,
          step: 200,
        });
        await worker.stop();
        await running;
        await assert.rejects(retryDeadLetter(h.sql, h.store, consumer, 1), {
          name: "HandlerError",
          message: /still bad/,
        });
        const [letter] = await h.sql`SELECT redriven_at FROM consumer_dead_letters`;
        assert.equal(letter.redriven_at, null);
      } finally {
        await h.close();
      }
    },
  );
});
