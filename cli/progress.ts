/** Rebuild progress: a rate over a sliding window, and how a snapshot of it is shown. */
import { formatDuration } from "./table.ts";

/** One look at a rebuild's progress. */
export interface RebuildProgress {
  /** The consumer being rebuilt. */
  consumer: string;
  /** Its checkpoint now. */
  checkpoint: number;
  /** The latest position when the rebuild started: done once the checkpoint reaches it. */
  target: number;
  /** Where the reset put the checkpoint (0 for a rebuild). */
  from: number;
  /** Positions done since the reset (checkpoint − from, within 0 … total). */
  done: number;
  /** Positions to go through in all (target − from). */
  total: number;
  /** Positions per second over the last few seconds, or null until two looks apart. */
  eventsPerSecond: number | null;
  /** Seconds until caught up at that rate, or null when unknown (no rate yet, or standing still). */
  etaSeconds: number | null;
  /** Milliseconds since the reset. */
  elapsedMs: number;
}

/** Positions per second over the last `windowMs` of samples. */
export class RateMeter {
  readonly #windowMs: number;
  readonly #samples: { at: number; position: number }[] = [];

  /** A meter over the last `windowMs` milliseconds (5 s by default). */
  constructor(windowMs = 5_000) {
    this.#windowMs = windowMs;
  }

  /** Records the checkpoint at time `at` (ms) and returns the rate, or null with one sample. */
  sample(at: number, position: number): number | null {
    this.#samples.push({ at, position });
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    while (this.#samples.length > 2 && this.#samples[1].at <= at - this.#windowMs) {
      this.#samples.shift();
    }
    const first = this.#samples[0];
    if (this.#samples.length < 2 || at <= first.at) return null;
    return Math.max(0, (position - first.position) * 1000 / (at - first.at));
  }
}

/** The progress snapshot for a checkpoint read at `now`. */
export function rebuildProgress(
  base: { consumer: string; from: number; target: number; startedAt: number },
  checkpoint: number,
  now: number,
  rate: number | null,
): RebuildProgress {
  const total = Math.max(0, base.target - base.from);
  const done = Math.min(total, Math.max(0, checkpoint - base.from));
  const remaining = total - done;
  return {
    consumer: base.consumer,
    checkpoint,
    target: base.target,
    from: base.from,
    done,
    total,
    eventsPerSecond: rate === null ? null : Math.round(rate * 10) / 10,
    etaSeconds: remaining === 0
      ? 0
      : rate === null || rate <= 0
      ? null
      : Math.round(remaining / rate * 10) / 10,
    elapsedMs: Math.max(0, now - base.startedAt),
  };
}

function percent(p: RebuildProgress): string {
  return `${p.total === 0 ? 100 : Math.floor(p.done * 100 / p.total)}%`;
}

function rateAndEta(p: RebuildProgress): string {
  const rate = p.eventsPerSecond === null ? "-" : String(Math.round(p.eventsPerSecond));
  const eta = p.etaSeconds === null ? "?" : formatDuration(p.etaSeconds * 1000);
  return `${rate} events/s, ETA ${eta}`;
}

/**
 * A progress bar for a terminal:
 * `orders_view [██████░░░░░░░░░░░░░░] 31%  3100/10000 events  1204 events/s, ETA 5.7s`.
 */
export function progressBar(p: RebuildProgress, width = 24): string {
  const filled = p.total === 0 ? width : Math.floor(p.done * width / p.total);
  return `${p.consumer} [${"█".repeat(filled)}${"░".repeat(width - filled)}] ` +
    `${percent(p).padStart(4)}  ${p.done}/${p.total} events  ${rateAndEta(p)}`;
}

/** A plain progress line for a pipe or a log file. */
export function progressLine(p: RebuildProgress): string {
  return `${p.consumer}: ${p.done}/${p.total} events (${percent(p)}), checkpoint ${p.checkpoint} ` +
    `of ${p.target}, ${rateAndEta(p)}, ${formatDuration(p.elapsedMs)} elapsed`;
}
