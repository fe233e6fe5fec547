/**
 * Encryption benchmarks: `deno run -A bench/encryption.ts` (or `bun bench/encryption.ts`).
 *
 * Every benchmark is reported as ops/s next to a raw baseline measured in the same run on the same
 * bytes, and as their ratio:
 *
 * - encrypt / decrypt of 100-byte and 10 KiB values through the envelope with the DEK cache, each
 *   against two raw baselines in the same alternating rounds: `@noble/ciphers` AES-256-GCM (`gcm`
 *   with a fresh random nonce, key setup per call, as it is used) and WebCrypto AES-GCM under an
 *   already imported key (`crypto.subtle`); the same sizes without the cache (in-memory key store,
 *   so the numbers show the library's CPU cost, not a database round trip) against raw noble;
 * - raw WebCrypto against raw noble from 256 B to 4 KiB: where the library's switch from noble to
 *   WebCrypto (at 1 KiB) pays;
 * - blind-index HMAC against raw `@noble/hashes` HMAC-SHA-256 on the same bytes;
 * - rewrap keys/s on PostgreSQL (needs `DATABASE_URL`) against a hand-written postgres.js batch loop
 *   doing the same reads, unwrap, wrap and writes.
 *
 * Method: a warm-up, then several timed rounds, the library's and each baseline's alternating; the
 * median round counts. Prints a table, then one JSON line per comparison.
 *
 * @module
 */
import process from "node:process";
import { gcm } from "@noble/ciphers/aes.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import postgres from "postgres";
import {
  BlindIndex,
  createEncryption,
  keyringFromMap,
  migrate,
  PostgresKeyStore,
} from "../encryption/mod.ts";
import { decryptWithKey, encryptWithKey } from "../encryption/aes_gcm.ts";
import { toHex } from "../encryption/encoding.ts";
import { InMemoryKeyStore } from "../testing/in_memory_key_store.ts";

interface Result {
  name: string;
  ops_per_s: number;
  baseline_ops_per_s: number;
  ratio: number;
}

const ROUNDS = 7;
const ROUND_MS = 250;
const WARMUP_MS = 300;

const randomBytes = (length: number): Uint8Array => crypto.getRandomValues(new Uint8Array(length));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Ops/s of one timed round of `op` (awaited only when it returns a promise). */
async function round(op: () => unknown, ms: number): Promise<number> {
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 64; i++) {
      const out = op();
      if (out instanceof Promise) await out;
    }
    n += 64;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

/**
 * Measures the library and each baseline in alternating rounds, so load changes on a shared
 * machine hit all alike; the median round of each counts. One result per baseline.
 */
async function compare(
  name: string,
  library: () => unknown,
  baselines: Record<string, () => unknown>,
): Promise<Result[]> {
  const entries = Object.entries(baselines);
  await round(library, WARMUP_MS);
  for (const [, baseline] of entries) await round(baseline, WARMUP_MS);
  const ours: number[] = [];
  const theirs: number[][] = entries.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    ours.push(await round(library, ROUND_MS));
    for (let b = 0; b < entries.length; b++) theirs[b].push(await round(entries[b][1], ROUND_MS));
  }
  return entries.map(([label], b) =>
    result(`${name} vs ${label}`, median(ours), median(theirs[b]))
  );
}

function result(name: string, ops: number, baseline: number): Result {
  return {
    name,
    ops_per_s: Math.round(ops),
    baseline_ops_per_s: Math.round(baseline),
    ratio: Math.round((ops / baseline) * 1000) / 1000,
  };
}

/** What the WebCrypto typings accept. */
type Bytes = Uint8Array<ArrayBuffer>;

async function envelopeBenchmarks(): Promise<Result[]> {
  const results: Result[] = [];
  for (const [size, label] of [[100, "100 B"], [10_240, "10 KiB"]] as const) {
    const value = "x".repeat(size); // `size` bytes of UTF-8
    const bytes = new TextEncoder().encode(value);
    const key = randomBytes(32);
    const webKey = await crypto.subtle.importKey("raw", key as Bytes, "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    const nonce = randomBytes(12);
    const sealed = gcm(key, nonce).encrypt(bytes);
    const raw: Record<"encrypt" | "decrypt", Record<string, () => unknown>> = {
      encrypt: {
        "raw noble": () => gcm(key, randomBytes(12)).encrypt(bytes),
        "raw WebCrypto": () =>
          crypto.subtle.encrypt(
            { name: "AES-GCM", iv: randomBytes(12) as Bytes },
            webKey,
            bytes as Bytes,
          ),
      },
      decrypt: {
        "raw noble": () => gcm(key, nonce).decrypt(sealed),
        "raw WebCrypto": () =>
          crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce as Bytes }, webKey, sealed as Bytes),
      },
    };
    for (const cached of [true, false]) {
      const encryption = createEncryption({
        keyring: keyringFromMap({ k1: randomBytes(32) }, "k1"),
        store: new InMemoryKeyStore(),
        cache: cached ? { maxEntries: 1000, ttlMs: 3_600_000 } : false,
      });
      await encryption.keyManager.createKey(null, "user-pii", "u-1");
      const { envelope } = encryption;
      const ciphertext = await envelope.encrypt(null, "user-pii", "u-1", value);
      const how = cached ? "with DEK cache" : "without DEK cache";
      // Without the cache each call also reads the (in-memory) store and unwraps the key; raw
      // noble alone is the baseline there.
      const pick = (baselines: Record<string, () => unknown>) =>
        cached ? baselines : { "raw noble": baselines["raw noble"] };
      results.push(
        ...await compare(
          `encrypt ${label} ${how}`,
          () => envelope.encrypt(null, "user-pii", "u-1", value),
          pick(raw.encrypt),
        ),
      );
      results.push(
        ...await compare(
          `decrypt ${label} ${how}`,
          () => envelope.decrypt(null, "user-pii", "u-1", ciphertext),
          pick(raw.decrypt),
        ),
      );
    }
  }
  return results;
}

/**
 * Where WebCrypto overtakes noble: raw WebCrypto (imported key) against raw noble (`gcm` per call)
 * on values around the library's threshold (`WEB_CRYPTO_MIN_BYTES`, 1 KiB). A ratio above 1 means
 * WebCrypto is faster at that size.
 */
async function crossoverBenchmarks(): Promise<Result[]> {
  const results: Result[] = [];
  const key = randomBytes(32);
  const webKey = await crypto.subtle.importKey("raw", key as Bytes, "AES-GCM", false, ["encrypt"]);
  for (const size of [256, 512, 1024, 2048, 4096]) {
    const bytes = randomBytes(size);
    results.push(
      ...await compare(
        `raw WebCrypto encrypt ${size} B`,
        () =>
          crypto.subtle.encrypt(
            { name: "AES-GCM", iv: randomBytes(12) as Bytes },
            webKey,
            bytes as Bytes,
          ),
        { "raw noble": () => gcm(key, randomBytes(12)).encrypt(bytes) },
      ),
    );
  }
  return results;
}

async function hmacBenchmarks(): Promise<Result[]> {
  const key = randomBytes(32);
  const value = "alice@example.com";
  const bytes = new TextEncoder().encode(value);
  const index = new BlindIndex({ keys: { bi1: key }, activeKeyId: "bi1" });
  return await compare("blind index HMAC-SHA-256 (17 B)", () => index.hash("email", value), {
    "raw noble HMAC": () => hmac(sha256, key, bytes),
  });
}

async function rewrapBenchmark(url: string): Promise<Result> {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  const schema = `eventsalsa_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(url, { max: 4, onnotice: () => {}, connection: { search_path: schema } });
  try {
    await migrate(sql);
    const KEYS = 10_000;
    const BATCH = 500;
    const keks: Record<string, Uint8Array> = { a: randomBytes(32), b: randomBytes(32) };
    const ids: string[] = [];
    const wrapped: string[] = [];
    for (let i = 0; i < KEYS; i++) {
      ids.push(`user-${String(i).padStart(6, "0")}`);
      wrapped.push(toHex(encryptWithKey(keks.a, randomBytes(32))));
    }
    await sql.unsafe(
      `INSERT INTO encryption_keys (scope, scope_id, key_version, encrypted_key, system_key_id)
       SELECT 'bench', s, 1, decode(k, 'hex'), 'a' FROM unnest($1::text[], $2::text[]) AS u(s, k)`,
      [ids, wrapped] as never,
    );
    const { keyManager } = createEncryption({
      keyring: keyringFromMap(keks, "b"),
      store: new PostgresKeyStore(),
    });

    // The baseline: the same work written by hand with postgres.js and noble.
    const handWritten = async (from: string, to: string) => {
      let after: [string, string, number] | null = null;
      for (;;) {
        const rows: postgres.Row[] = await sql.begin(async (tx) => {
          const batch = after === null
            ? await tx`SELECT scope, scope_id, key_version, encrypted_key FROM encryption_keys
                WHERE system_key_id = ${from} ORDER BY scope, scope_id, key_version
                LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`
            : await tx`SELECT scope, scope_id, key_version, encrypted_key FROM encryption_keys
                WHERE system_key_id = ${from}
                  AND (scope, scope_id, key_version) > (${after[0]}, ${after[1]}, ${after[2]})
                ORDER BY scope, scope_id, key_version LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`;
          if (batch.length === 0) return batch;
          const keys = batch.map((row) => {
            const dek = decryptWithKey(keks[from], new Uint8Array(row.encrypted_key));
            const hex = toHex(encryptWithKey(keks[to], dek));
            dek.fill(0);
            return hex;
          });
          await tx.unsafe(
            `UPDATE encryption_keys AS k SET encrypted_key = decode(u.k, 'hex'), system_key_id = $2
             FROM unnest($3::text[], $4::text[], $5::int4[], $6::text[]) AS u(scope, scope_id, v, k)
             WHERE k.scope = u.scope AND k.scope_id = u.scope_id AND k.key_version = u.v
               AND k.system_key_id = $1`,
            [
              from,
              to,
              batch.map((r) => r.scope),
              batch.map((r) => r.scope_id),
              batch.map((r) => r.key_version),
              keys,
            ] as never,
          );
          return batch;
        });
        if (rows.length === 0) break;
        const last = rows[rows.length - 1];
        after = [last.scope, last.scope_id, last.key_version];
        if (rows.length < BATCH) break;
      }
    };

    // Rounds alternate direction (a→b, b→a), so the same rows serve every round.
    let from = "a";
    let to = "b";
    const swap = () => ([from, to] = [to, from]);
    const library: number[] = [];
    const baseline: number[] = [];
    for (let round = 0; round < 4; round++) {
      let start = performance.now();
      const res = await keyManager.rewrapSystemKeys(sql, { from, to, batchSize: BATCH });
      if (res.rewrappedRows !== KEYS) throw new Error(`rewrapped ${res.rewrappedRows} of ${KEYS}`);
      if (round > 0) library.push((KEYS * 1000) / (performance.now() - start));
      swap();
      start = performance.now();
      await handWritten(from, to);
      if (round > 0) baseline.push((KEYS * 1000) / (performance.now() - start));
      swap();
    }
    return result(
      `rewrap ${KEYS} keys, batch ${BATCH} (keys/s)`,
      median(library),
      median(baseline),
    );
  } finally {
    await sql.end();
    await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
}

const results: Result[] = [];
results.push(...await envelopeBenchmarks());
results.push(...await crossoverBenchmarks());
results.push(...await hmacBenchmarks());
const url = process.env.DATABASE_URL ?? process.env.EVENTSALSA_TEST_DATABASE_URL;
let skipped: string | null = null;
if (url) results.push(await rewrapBenchmark(url));
else skipped = "rewrap benchmark skipped: set DATABASE_URL to a PostgreSQL server to run it";

const pad = (text: string, width: number) => text.padEnd(width);
const num = (n: number) => n.toLocaleString("en-US").padStart(12);
console.log(`${pad("benchmark", 60)}${"ops/s".padStart(12)}${"baseline".padStart(12)}  ratio`);
for (const r of results) {
  console.log(
    `${pad(r.name, 60)}${num(r.ops_per_s)}${num(r.baseline_ops_per_s)}  ${r.ratio.toFixed(3)}`,
  );
}
if (skipped) console.log(skipped);
for (const r of results) console.log(JSON.stringify(r));
