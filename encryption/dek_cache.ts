/**
 * An optional in-process cache of unwrapped data keys (DEKs), bounded in entries and time. It saves
 * the key-store round trip and the system-key unwrap on hot scope ids, at a price: for up to
 * `ttlMs` a process may keep using a key that another process rotated or destroyed. A rotation,
 * revocation or destruction through any key manager of this process clears the scope id from every
 * cache of the process at once. See docs/encryption.md.
 *
 * The public {@link DekCache} only configures, counts and clears: no method of it returns a key.
 * The envelope reaches the keys through {@link cachedKey} and friends, which the package does not
 * export.
 *
 * @module
 */
import { systemClock } from "../internal/clock.ts";
import type { DataKey } from "./aes_gcm.ts";
import { InvalidInputError } from "./errors.ts";

/**
 * Bounds of a {@link DekCache}.
 *
 * @example
 * ```ts
 * import { DekCache, type DekCacheOptions } from "@eventsalsa/eventsalsa/encryption";
 * const options: DekCacheOptions = { maxEntries: 10_000, ttlMs: 30_000 };
 * const cache = new DekCache(options);
 * ```
 */
export interface DekCacheOptions {
  /** Most data keys held at once (least recently used go first); 1,000 when omitted. */
  maxEntries?: number;
  /**
   * How long an entry lives, in milliseconds; 60,000 when omitted. This is also the longest a
   * rotation or destruction made by another process can go unnoticed here.
   */
  ttlMs?: number;
  /** Time source (only `now()` is used), e.g. the testing `FakeClock`; `Date.now` when omitted. */
  clock?: { now(): number };
}

/** A cached data key: one version of one scope id's key. */
interface Entry {
  /** Its key in the entry maps. */
  readonly id: string;
  readonly subject: string;
  readonly keyVersion: number;
  readonly key: DataKey;
  readonly expiresAt: number;
}

interface Subject {
  /** The cached versions. */
  readonly versions: Map<number, Entry>;
  /** The active version, when known (its entry is in `versions`). */
  active: number | null;
}

function subjectKey(scope: string, scopeId: string): string {
  // Scopes and scope ids never contain NUL (checked at the API boundary).
  return `${scope}\u0000${scopeId}`;
}

function entryKey(subject: string, keyVersion: number): string {
  return `${subject}\u0000${keyVersion}`;
}

/**
 * The cache itself. Entries leave it (and their keys are zeroed) when they expire, when they are
 * evicted as least recently used, on invalidation and on clear. Every operation first sweeps the
 * expired entries: the TTL is the same for all, so the oldest insertion expires first and a sweep
 * costs only what it removes.
 */
export class KeyCache {
  readonly maxEntries: number;
  readonly ttlMs: number;
  readonly #clock: { now(): number };
  /** Every entry, least recently used first. */
  readonly #recency = new Map<string, Entry>();
  /** Every entry, in insertion order, which is expiry order. */
  readonly #expiry = new Map<string, Entry>();
  readonly #subjects = new Map<string, Subject>();
  /** Scope ids refused until the given time, in insertion (and so expiry) order. */
  readonly #blocked = new Map<string, number>();
  /** No entry or block expires before this time, so a sweep before it finds nothing. */
  #quietUntil = Infinity;

  constructor(options: DekCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? 1000;
    const ttlMs = options.ttlMs ?? 60_000;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new InvalidInputError(
        `DEK cache maxEntries must be a positive integer, got ${maxEntries}`,
      );
    }
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new InvalidInputError(`DEK cache ttlMs must be a positive number, got ${ttlMs}`);
    }
    this.maxEntries = maxEntries;
    this.ttlMs = ttlMs;
    this.#clock = options.clock ?? systemClock;
  }

  /** Releases every expired entry and forgets expired blocks; returns the time used. */
  #sweep(): number {
    const now = this.#clock.now();
    if (now < this.#quietUntil) return now;
    let next = Infinity;
    for (const entry of this.#expiry.values()) {
      if (entry.expiresAt > now) {
        next = entry.expiresAt;
        break;
      }
      this.#release(entry);
    }
    for (const [subject, until] of this.#blocked) {
      if (until > now) {
        next = Math.min(next, until);
        break;
      }
      this.#blocked.delete(subject);
    }
    this.#quietUntil = next;
    return now;
  }

  #release(entry: Entry): void {
    entry.key.destroy();
    this.#recency.delete(entry.id);
    this.#expiry.delete(entry.id);
    const subject = this.#subjects.get(entry.subject);
    if (subject === undefined) return;
    subject.versions.delete(entry.keyVersion);
    if (subject.active === entry.keyVersion) subject.active = null;
    if (subject.versions.size === 0) this.#subjects.delete(entry.subject);
  }

  #touch(entry: Entry): DataKey {
    this.#recency.delete(entry.id);
    this.#recency.set(entry.id, entry);
    return entry.key;
  }

  /** Number of live data keys. */
  get size(): number {
    this.#sweep();
    return this.#recency.size;
  }

  /** The cached key of one version, or `undefined`. Use it synchronously; never keep it. */
  get(scope: string, scopeId: string, keyVersion: number): DataKey | undefined {
    this.#sweep();
    const entry = this.#subjects.get(subjectKey(scope, scopeId))?.versions.get(keyVersion);
    return entry === undefined ? undefined : this.#touch(entry);
  }

  /** The scope id's active version and its key, or `undefined`. Use the key synchronously. */
  getActive(scope: string, scopeId: string): { keyVersion: number; key: DataKey } | undefined {
    this.#sweep();
    const subject = this.#subjects.get(subjectKey(scope, scopeId));
    if (subject === undefined || subject.active === null) return undefined;
    const entry = subject.versions.get(subject.active);
    return entry === undefined
      ? undefined
      : { keyVersion: entry.keyVersion, key: this.#touch(entry) };
  }

  /**
   * Caches `key` (and, with `active`, records its version as the scope id's active one). Returns
   * whether the cache took ownership of `key`; it does not while the scope id is blocked after an
   * invalidation, and the caller must then destroy the key itself.
   */
  put(scope: string, scopeId: string, keyVersion: number, key: DataKey, active: boolean): boolean {
    const now = this.#sweep();
    const subjectId = subjectKey(scope, scopeId);
    if (this.#blocked.has(subjectId)) return false;
    const previous = this.#subjects.get(subjectId);
    const old = previous?.versions.get(keyVersion);
    if (old !== undefined && old.key === key) return true;
    const wasActive = old !== undefined && previous!.active === keyVersion;
    if (old !== undefined) this.#release(old);
    let subject = this.#subjects.get(subjectId);
    if (subject === undefined) {
      subject = { versions: new Map(), active: null };
      this.#subjects.set(subjectId, subject);
    }
    const id = entryKey(subjectId, keyVersion);
    const entry: Entry = { id, subject: subjectId, keyVersion, key, expiresAt: now + this.ttlMs };
    subject.versions.set(keyVersion, entry);
    if (active || wasActive) subject.active = keyVersion;
    this.#recency.set(id, entry);
    this.#expiry.set(id, entry);
    this.#quietUntil = Math.min(this.#quietUntil, entry.expiresAt);
    for (const lru of this.#recency.values()) {
      if (this.#recency.size <= this.maxEntries) break;
      this.#release(lru);
    }
    return true;
  }

  /** Forgets (and zeroes) every key of one scope id and refuses it for one TTL. */
  invalidate(scope: string, scopeId: string): void {
    const now = this.#sweep();
    const subjectId = subjectKey(scope, scopeId);
    const subject = this.#subjects.get(subjectId);
    if (subject !== undefined) {
      for (const entry of [...subject.versions.values()]) this.#release(entry);
    }
    // Re-inserted, so the map stays in expiry order.
    this.#blocked.delete(subjectId);
    this.#blocked.set(subjectId, now + this.ttlMs);
    this.#quietUntil = Math.min(this.#quietUntil, now + this.ttlMs);
  }

  /** Forgets (and zeroes) every key. */
  clear(): void {
    for (const entry of [...this.#recency.values()]) this.#release(entry);
    this.#blocked.clear();
  }
}

/** Every live cache of this process, for {@link invalidateEverywhere}. */
const liveCaches = new Set<WeakRef<KeyCache>>();
const collected = new FinalizationRegistry<WeakRef<KeyCache>>((ref) => liveCaches.delete(ref));
const caches = new WeakMap<DekCache, KeyCache>();

/**
 * An in-process cache of unwrapped data keys, for `createEncryption({ cache })` or an
 * `Envelope`. It holds up to `maxEntries` keys (least recently used evicted), each for `ttlMs`;
 * keys are zeroed when they leave it (expiry, eviction, invalidation, {@link DekCache.clear}), and
 * expired keys leave at the next use of the cache, not when first asked for.
 *
 * No method returns a key: code holding this object (or the encryption object) can count, clear
 * and invalidate, never read. `rotateKey`, `revokeKeys` and `destroyKeys` through any key manager
 * of this process invalidate the scope id in every cache of the process, which then refuses to
 * cache it again for one TTL (so a destruction that the caller's transaction has not committed yet
 * is not undone by a concurrent read of the old key). Other processes are not told: see
 * docs/encryption.md.
 *
 * Share one cache only between envelopes that use the same key store.
 *
 * @example
 * ```ts
 * import { createEncryption, DekCache, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const cache = new DekCache({ maxEntries: 10_000, ttlMs: 30_000 });
 * const encryption = createEncryption({
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 *   cache,
 * });
 * await encryption.keyManager.createKey(null, "user-pii", "u-1");
 * await encryption.pii("user-pii").encrypt(null, "u-1", "alice@example.com");
 * console.log(cache.size); // 1
 * cache.invalidate("user-pii", "u-1"); // e.g. on news of a deletion in another process
 * console.log(cache.size); // 0
 * ```
 */
export class DekCache {
  /** Most data keys held at once. */
  readonly maxEntries: number;
  /** Lifetime of an entry, in milliseconds. */
  readonly ttlMs: number;
  readonly #cache: KeyCache;

  /** Creates an empty cache; see {@link DekCacheOptions}. */
  constructor(options: DekCacheOptions = {}) {
    this.#cache = new KeyCache(options);
    this.maxEntries = this.#cache.maxEntries;
    this.ttlMs = this.#cache.ttlMs;
    caches.set(this, this.#cache);
    const ref = new WeakRef(this.#cache);
    liveCaches.add(ref);
    collected.register(this.#cache, ref);
  }

  /** Number of live (unexpired) data keys. */
  get size(): number {
    return this.#cache.size;
  }

  /**
   * Forgets (and zeroes) every key of one scope id here and refuses to cache it again for one
   * TTL: for news of a rotation or destruction made by another process.
   *
   * @example
   * ```ts
   * import { DekCache } from "@eventsalsa/eventsalsa/encryption";
   * const cache = new DekCache();
   * cache.invalidate("user-pii", "u-1");
   * ```
   */
  invalidate(scope: string, scopeId: string): void {
    this.#cache.invalidate(scope, scopeId);
  }

  /**
   * Forgets (and zeroes) every key.
   *
   * @example
   * ```ts
   * import { DekCache } from "@eventsalsa/eventsalsa/encryption";
   * const cache = new DekCache();
   * cache.clear();
   * console.log(cache.size); // 0
   * ```
   */
  clear(): void {
    this.#cache.clear();
  }
}

/** The keys behind a public cache; for the envelope only (not exported by the package). */
export function keyCacheOf(cache: DekCache): KeyCache {
  return caches.get(cache)!;
}

/** Invalidates a scope id in every cache of this process (the key manager's writes). */
export function invalidateEverywhere(scope: string, scopeId: string): void {
  for (const ref of liveCaches) ref.deref()?.invalidate(scope, scopeId);
}
