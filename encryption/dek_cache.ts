/**
 * An optional in-process cache of unwrapped data keys (DEKs), bounded in entries and time. It saves
 * the key-store round trip and the system-key unwrap on hot subjects, at a price: for up to `ttlMs`
 * a process may keep using a key that another process rotated or destroyed. `destroyKeys`,
 * `revokeKeys` and `rotateKey` in this process invalidate it immediately. See docs/encryption.md.
 *
 * @module
 */
import { systemClock } from "../internal/clock.ts";
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

interface Timed<T> {
  value: T;
  expiresAt: number;
}

/**
 * One cached data key. `dek` is the cache's own array: use it synchronously, never keep or modify
 * it. `derived` is state built from the key by its user (the envelope keeps a
 * `PreparedAesGcmKey` there), which the cache destroys when the key leaves it.
 *
 * @example
 * ```ts
 * import { DekCache, type CachedDek } from "@eventsalsa/eventsalsa/encryption";
 * const cache = new DekCache();
 * cache.setDek("user-pii", "u-1", 1, new Uint8Array(32));
 * const cached: CachedDek | undefined = cache.getCached("user-pii", "u-1", 1);
 * console.log(cached?.keyVersion, cached?.derived); // 1 null
 * ```
 */
export interface CachedDek {
  /** The key version. */
  readonly keyVersion: number;
  /** The unwrapped data key (zeroed when it leaves the cache). */
  readonly dek: Uint8Array;
  /** State derived from the key; destroyed with it. `null` until a user sets it. */
  derived: { destroy(): void } | null;
}

interface Entry extends CachedDek {
  expiresAt: number;
}

interface Subject {
  active: Timed<number> | null;
  deks: Map<number, Entry>;
}

/** Zeroes the key and destroys what was derived from it. */
function release(entry: Entry): void {
  entry.dek.fill(0);
  entry.derived?.destroy();
  entry.derived = null;
}

/**
 * A bounded, expiring cache of unwrapped data keys, keyed by (scope, scopeId, version), plus each
 * subject's active version. Keys are zeroed, and state derived from them destroyed, when they leave
 * the cache (expiry, eviction, invalidation, {@link DekCache.clear}).
 *
 * After {@link DekCache.invalidate} a subject is not cached again for one TTL: a destruction not yet
 * committed by the caller's transaction must not be undone by a concurrent read that still sees the
 * old key.
 *
 * Share one cache only between envelopes and key managers that use the same key store.
 *
 * @example
 * ```ts
 * import { DekCache } from "@eventsalsa/eventsalsa/encryption";
 * let now = 0;
 * const cache = new DekCache({ maxEntries: 2, ttlMs: 1000, clock: { now: () => now } });
 * cache.setDek("user-pii", "u-1", 1, new Uint8Array(32).fill(7));
 * console.log(cache.getDek("user-pii", "u-1", 1)?.length); // 32
 * now = 1000;
 * console.log(cache.getDek("user-pii", "u-1", 1)); // undefined (expired)
 * ```
 */
export class DekCache {
  /** Most data keys held at once. */
  readonly maxEntries: number;
  /** Lifetime of an entry, in milliseconds. */
  readonly ttlMs: number;
  readonly #clock: { now(): number };
  readonly #subjects = new Map<string, Subject>();
  readonly #blocked = new Map<string, number>();
  #size = 0;

  /** Creates an empty cache; see {@link DekCacheOptions}. */
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

  /** Number of data keys held. */
  get size(): number {
    return this.#size;
  }

  #subject(key: string, now: number): Subject | undefined {
    const subject = this.#subjects.get(key);
    if (subject === undefined) return undefined;
    // Refresh recency.
    this.#subjects.delete(key);
    this.#subjects.set(key, subject);
    if (subject.active !== null && subject.active.expiresAt <= now) subject.active = null;
    return subject;
  }

  #isBlocked(key: string, now: number): boolean {
    const until = this.#blocked.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#blocked.delete(key);
    return false;
  }

  /**
   * The cached key of one version, or `undefined`. The array is the cache's own: use it
   * synchronously, do not keep or modify it.
   */
  getDek(scope: string, scopeId: string, keyVersion: number): Uint8Array | undefined {
    return this.getCached(scope, scopeId, keyVersion)?.dek;
  }

  /**
   * The cached entry of one version (key bytes and derived state), or `undefined`.
   *
   * @example
   * ```ts
   * import { DekCache } from "@eventsalsa/eventsalsa/encryption";
   * const cache = new DekCache();
   * cache.setDek("user-pii", "u-1", 2, new Uint8Array(32));
   * console.log(cache.getCached("user-pii", "u-1", 2)?.dek.length); // 32
   * ```
   */
  getCached(scope: string, scopeId: string, keyVersion: number): CachedDek | undefined {
    const now = this.#clock.now();
    const key = subjectKey(scope, scopeId);
    const subject = this.#subject(key, now);
    const entry = subject?.deks.get(keyVersion);
    if (subject === undefined || entry === undefined) return undefined;
    if (entry.expiresAt <= now) {
      release(entry);
      subject.deks.delete(keyVersion);
      this.#size--;
      this.#dropIfEmpty(key, subject);
      return undefined;
    }
    return entry;
  }

  /**
   * Caches a key; the cache takes ownership of `dek` (and zeroes it when it leaves). Ignored while
   * the subject is blocked after an invalidation.
   */
  setDek(scope: string, scopeId: string, keyVersion: number, dek: Uint8Array): void {
    const now = this.#clock.now();
    const key = subjectKey(scope, scopeId);
    if (this.#isBlocked(key, now)) {
      dek.fill(0);
      return;
    }
    let subject = this.#subject(key, now);
    if (subject === undefined) {
      subject = { active: null, deks: new Map() };
      this.#subjects.set(key, subject);
    }
    const old = subject.deks.get(keyVersion);
    if (old !== undefined && old.dek === dek) {
      old.expiresAt = now + this.ttlMs;
      return;
    }
    if (old !== undefined) {
      release(old);
      this.#size--;
    }
    subject.deks.set(keyVersion, { keyVersion, dek, derived: null, expiresAt: now + this.ttlMs });
    this.#size++;
    this.#evict(key);
  }

  /**
   * The subject's cached active version and its key, in one lookup, or `undefined`. The key is the
   * cache's own: use it synchronously, do not keep or modify it.
   */
  getActive(scope: string, scopeId: string): CachedDek | undefined {
    const now = this.#clock.now();
    const subject = this.#subject(subjectKey(scope, scopeId), now);
    const active = subject?.active;
    if (active == null) return undefined;
    const entry = subject!.deks.get(active.value);
    if (entry === undefined || entry.expiresAt <= now) return undefined;
    return entry;
  }

  /** The subject's cached active version, or `undefined`. */
  getActiveVersion(scope: string, scopeId: string): number | undefined {
    const subject = this.#subject(subjectKey(scope, scopeId), this.#clock.now());
    return subject?.active?.value;
  }

  /** Caches the subject's active version (only alongside its key, see {@link DekCache.setDek}). */
  setActiveVersion(scope: string, scopeId: string, keyVersion: number): void {
    const now = this.#clock.now();
    const key = subjectKey(scope, scopeId);
    if (this.#isBlocked(key, now)) return;
    const subject = this.#subject(key, now);
    if (subject === undefined) return;
    subject.active = { value: keyVersion, expiresAt: now + this.ttlMs };
  }

  /**
   * Forgets (and zeroes) everything about one subject and refuses to cache it again for one TTL.
   * Called by the key manager on `rotateKey`, `revokeKeys` and `destroyKeys`.
   */
  invalidate(scope: string, scopeId: string): void {
    const now = this.#clock.now();
    const key = subjectKey(scope, scopeId);
    const subject = this.#subjects.get(key);
    if (subject !== undefined) this.#drop(key, subject);
    this.#blocked.set(key, now + this.ttlMs);
    if (this.#blocked.size > this.maxEntries) {
      for (const [k, until] of this.#blocked) if (until <= now) this.#blocked.delete(k);
    }
  }

  /** Forgets (and zeroes) every key. */
  clear(): void {
    for (const [key, subject] of this.#subjects) this.#drop(key, subject);
    this.#blocked.clear();
  }

  #drop(key: string, subject: Subject): void {
    for (const entry of subject.deks.values()) release(entry);
    this.#size -= subject.deks.size;
    subject.deks.clear();
    this.#subjects.delete(key);
  }

  #dropIfEmpty(key: string, subject: Subject): void {
    if (subject.deks.size === 0) this.#subjects.delete(key);
  }

  #evict(keep: string): void {
    if (this.#size <= this.maxEntries) return;
    for (const [key, subject] of this.#subjects) {
      if (this.#size <= this.maxEntries) return;
      if (key === keep) continue;
      this.#drop(key, subject);
    }
    // Still too many: the kept subject alone holds more versions than the limit.
    const subject = this.#subjects.get(keep);
    if (subject === undefined) return;
    for (const [version, entry] of subject.deks) {
      if (this.#size <= this.maxEntries) return;
      release(entry);
      subject.deks.delete(version);
      this.#size--;
    }
  }
}

function subjectKey(scope: string, scopeId: string): string {
  // Scopes and scope ids never contain NUL (checked at the API boundary).
  return `${scope}\u0000${scopeId}`;
}
