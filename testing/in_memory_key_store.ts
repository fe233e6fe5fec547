/**
 * An in-memory key store for tests and demos, with the PostgreSQL store's semantics: versions,
 * revocation, tombstones, duplicate rejection and rewrap. Every call takes effect at once. The
 * `tx` argument may be anything (e.g. `null`); when it is an open `InMemoryTransaction` of the
 * in-memory event store, a rollback of that transaction undoes the key changes made through it, so
 * "append `UserDeleted` + destroy the key" is all-or-nothing in memory too (without isolation:
 * other callers see the changes before the commit).
 *
 * @module
 */
import type {
  CreateKeyResult,
  KeyLookup,
  KeyStore,
  KeyTombstone,
  NewKey,
  RewrapBatch,
  RotateKeyResult,
  StoredKey,
} from "../encryption/mod.ts";
import { systemClock } from "../internal/clock.ts";

interface Row {
  scope: string;
  scopeId: string;
  keyVersion: number;
  encryptedDek: Uint8Array;
  systemKeyId: string;
  createdAt: number;
  revokedAt: number | null;
}

interface Subject {
  rows: Map<number, Row>;
  tombstone: { maxKeyVersion: number; destroyedAt: number } | null;
}

/**
 * Options of {@link InMemoryKeyStore}.
 *
 * @example
 * ```ts
 * import { InMemoryKeyStore, type InMemoryKeyStoreOptions } from "@eventsalsa/eventsalsa/testing";
 * let now = Date.parse("2025-01-01T00:00:00Z");
 * const options: InMemoryKeyStoreOptions = { clock: { now: () => now } };
 * const store = new InMemoryKeyStore(options);
 * ```
 */
export interface InMemoryKeyStoreOptions {
  /** Source of `createdAt`, `revokedAt` and `destroyedAt` (only `now()` is used). */
  clock?: { now(): number };
}

/**
 * A raw key row, as {@link InMemoryKeyStore.seed} accepts and {@link InMemoryKeyStore.rows}
 * returns it.
 *
 * @example
 * ```ts
 * import type { KeyRow } from "@eventsalsa/eventsalsa/testing";
 * const row: KeyRow = {
 *   scope: "tenant", scopeId: "abc", keyVersion: 1,
 *   encryptedDek: new Uint8Array(60), systemKeyId: "sys-key-1",
 * };
 * ```
 */
export interface KeyRow {
  /** The scope. */
  scope: string;
  /** The scope id. */
  scopeId: string;
  /** The version. */
  keyVersion: number;
  /** The wrapped data key. */
  encryptedDek: Uint8Array;
  /** The system key id. */
  systemKeyId: string;
  /** Creation time; the clock's now when omitted. */
  createdAt?: Date;
  /** Revocation time, or null/omitted when active. */
  revokedAt?: Date | null;
}

/** What the store needs of a transaction to undo its changes on rollback. */
interface RollbackAware {
  readonly isOpen: boolean;
  onRollback(hook: () => void): void;
}

function rollbackAware(tx: unknown): RollbackAware | null {
  const candidate = tx as Partial<RollbackAware> | null;
  return candidate !== null && typeof candidate === "object" &&
      typeof candidate.onRollback === "function" && candidate.isOpen === true
    ? candidate as RollbackAware
    : null;
}

function cloneSubject(subject: Subject): Subject {
  return {
    rows: new Map(
      [...subject.rows].map(([v, row]) => [v, { ...row, encryptedDek: row.encryptedDek.slice() }]),
    ),
    tombstone: subject.tombstone === null ? null : { ...subject.tombstone },
  };
}

function subjectKey(scope: string, scopeId: string): string {
  return `${scope}\u0000${scopeId}`;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The in-memory {@link KeyStore}. Lookups return copies, so callers cannot change stored rows.
 *
 * @example
 * ```ts
 * import { createEncryption, keyringFromMap } from "@eventsalsa/eventsalsa/encryption";
 * import { InMemoryKeyStore } from "@eventsalsa/eventsalsa/testing";
 * const encryption = createEncryption({
 *   keyring: keyringFromMap({ k1: crypto.getRandomValues(new Uint8Array(32)) }, "k1"),
 *   store: new InMemoryKeyStore(),
 * });
 * await encryption.keyManager.createKey(null, "user-pii", "u-1");
 * const value = await encryption.pii("user-pii").encrypt(null, "u-1", "alice@example.com");
 * ```
 */
export class InMemoryKeyStore implements KeyStore<unknown> {
  readonly #subjects = new Map<string, Subject>();
  readonly #clock: { now(): number };
  /** Subjects already snapshotted per open transaction (one snapshot each: the oldest wins). */
  readonly #undone = new WeakMap<object, Set<string>>();

  /** Creates an empty store. */
  constructor(options: InMemoryKeyStoreOptions = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  #toKey(row: Row): StoredKey {
    return {
      scope: row.scope,
      scopeId: row.scopeId,
      keyVersion: row.keyVersion,
      encryptedDek: row.encryptedDek.slice(),
      systemKeyId: row.systemKeyId,
      createdAt: new Date(row.createdAt),
      revokedAt: row.revokedAt === null ? null : new Date(row.revokedAt),
    };
  }

  #tombstone(scope: string, scopeId: string, subject: Subject | undefined): KeyTombstone | null {
    if (subject?.tombstone == null) return null;
    return {
      scope,
      scopeId,
      maxKeyVersion: subject.tombstone.maxKeyVersion,
      destroyedAt: new Date(subject.tombstone.destroyedAt),
    };
  }

  #active(subject: Subject | undefined): Row | null {
    let best: Row | null = null;
    for (const row of subject?.rows.values() ?? []) {
      if (row.revokedAt === null && (best === null || row.keyVersion > best.keyVersion)) best = row;
    }
    return best;
  }

  #nextVersion(subject: Subject | undefined): number {
    let max = subject?.tombstone?.maxKeyVersion ?? 0;
    for (const version of subject?.rows.keys() ?? []) max = Math.max(max, version);
    return max + 1;
  }

  /** Before changing a subject through `tx`: remember its state, to restore it on rollback. */
  #track(tx: unknown, scope: string, scopeId: string): void {
    const transaction = rollbackAware(tx);
    if (transaction === null) return;
    const key = subjectKey(scope, scopeId);
    let seen = this.#undone.get(transaction);
    if (seen === undefined) {
      seen = new Set();
      this.#undone.set(transaction, seen);
    }
    if (seen.has(key)) return;
    seen.add(key);
    const before = this.#subjects.get(key);
    const snapshot = before === undefined ? undefined : cloneSubject(before);
    transaction.onRollback(() => {
      if (snapshot === undefined) this.#subjects.delete(key);
      else this.#subjects.set(key, snapshot);
    });
  }

  #subjectFor(scope: string, scopeId: string): Subject {
    const key = subjectKey(scope, scopeId);
    let subject = this.#subjects.get(key);
    if (subject === undefined) {
      subject = { rows: new Map(), tombstone: null };
      this.#subjects.set(key, subject);
    }
    return subject;
  }

  #insert(subject: Subject, key: NewKey, keyVersion: number): Row {
    const row: Row = {
      scope: key.scope,
      scopeId: key.scopeId,
      keyVersion,
      encryptedDek: key.encryptedDek.slice(),
      systemKeyId: key.systemKeyId,
      createdAt: this.#clock.now(),
      revokedAt: null,
    };
    subject.rows.set(keyVersion, row);
    return row;
  }

  /** See {@link KeyStore.getActiveKey}. */
  getActiveKey(_tx: unknown, scope: string, scopeId: string): Promise<KeyLookup> {
    const subject = this.#subjects.get(subjectKey(scope, scopeId));
    const row = this.#active(subject);
    if (row !== null) return Promise.resolve({ status: "found", key: this.#toKey(row) });
    const tombstone = this.#tombstone(scope, scopeId, subject);
    return Promise.resolve(
      tombstone === null ? { status: "missing" } : { status: "destroyed", tombstone },
    );
  }

  /** See {@link KeyStore.getKey}. */
  getKey(_tx: unknown, scope: string, scopeId: string, keyVersion: number): Promise<KeyLookup> {
    const subject = this.#subjects.get(subjectKey(scope, scopeId));
    const row = subject?.rows.get(keyVersion);
    if (row !== undefined) return Promise.resolve({ status: "found", key: this.#toKey(row) });
    const tombstone = this.#tombstone(scope, scopeId, subject);
    if (tombstone !== null && keyVersion <= tombstone.maxKeyVersion) {
      return Promise.resolve({ status: "destroyed", tombstone });
    }
    return Promise.resolve({ status: "missing" });
  }

  /** See {@link KeyStore.createKey}. */
  createKey(tx: unknown, key: NewKey): Promise<CreateKeyResult> {
    this.#track(tx, key.scope, key.scopeId);
    const subject = this.#subjectFor(key.scope, key.scopeId);
    const active = this.#active(subject);
    if (active !== null) {
      return Promise.resolve({ status: "exists", keyVersion: active.keyVersion });
    }
    const row = this.#insert(subject, key, this.#nextVersion(subject));
    return Promise.resolve({ status: "created", key: this.#toKey(row) });
  }

  /** See {@link KeyStore.rotateKey}. */
  rotateKey(tx: unknown, key: NewKey): Promise<RotateKeyResult> {
    this.#track(tx, key.scope, key.scopeId);
    const subject = this.#subjects.get(subjectKey(key.scope, key.scopeId));
    if (subject === undefined || this.#active(subject) === null) {
      const tombstone = this.#tombstone(key.scope, key.scopeId, subject);
      return Promise.resolve(
        tombstone === null ? { status: "missing" } : { status: "destroyed", tombstone },
      );
    }
    const now = this.#clock.now();
    for (const row of subject.rows.values()) if (row.revokedAt === null) row.revokedAt = now;
    const row = this.#insert(subject, key, this.#nextVersion(subject));
    return Promise.resolve({ status: "rotated", key: this.#toKey(row) });
  }

  /** See {@link KeyStore.revokeKeys}. */
  revokeKeys(tx: unknown, scope: string, scopeId: string): Promise<number> {
    this.#track(tx, scope, scopeId);
    const subject = this.#subjects.get(subjectKey(scope, scopeId));
    if (subject === undefined || subject.rows.size === 0) return Promise.resolve(0);
    const max = Math.max(...subject.rows.keys());
    const now = this.#clock.now();
    let count = 0;
    for (const row of subject.rows.values()) {
      if (row.revokedAt === null && row.keyVersion < max) {
        row.revokedAt = now;
        count++;
      }
    }
    return Promise.resolve(count);
  }

  /** See {@link KeyStore.destroyKeys}. */
  destroyKeys(tx: unknown, scope: string, scopeId: string): Promise<number> {
    this.#track(tx, scope, scopeId);
    const subject = this.#subjects.get(subjectKey(scope, scopeId));
    if (subject === undefined || subject.rows.size === 0) return Promise.resolve(0);
    const count = subject.rows.size;
    const max = Math.max(...subject.rows.keys());
    subject.rows.clear();
    subject.tombstone = {
      maxKeyVersion: Math.max(max, subject.tombstone?.maxKeyVersion ?? 0),
      destroyedAt: this.#clock.now(),
    };
    return Promise.resolve(count);
  }

  /** Rows wrapped under `systemKeyId`, in (scope, scopeId, keyVersion) order. */
  #wrappedUnder(systemKeyId: string): Row[] {
    const rows: Row[] = [];
    for (const subject of this.#subjects.values()) {
      for (const row of subject.rows.values()) if (row.systemKeyId === systemKeyId) rows.push(row);
    }
    return rows.sort((a, b) =>
      compareText(a.scope, b.scope) || compareText(a.scopeId, b.scopeId) ||
      a.keyVersion - b.keyVersion
    );
  }

  /** See {@link KeyStore.rewrapBatch}. The batch takes effect at once. */
  rewrapBatch(
    tx: unknown,
    batch: RewrapBatch,
    rewrap: (keys: StoredKey[]) => StoredKey[],
  ): Promise<{ read: number; written: number }> {
    const after = batch.after;
    const rows = this.#wrappedUnder(batch.fromSystemKeyId).filter((row) =>
      after === null ||
      (compareText(row.scope, after.scope) || compareText(row.scopeId, after.scopeId) ||
          row.keyVersion - after.keyVersion) > 0
    ).slice(0, batch.limit);
    const updates = rewrap(rows.map((row) => this.#toKey(row)));
    let written = 0;
    if (!batch.dryRun) {
      for (const update of updates) {
        const row = this.#subjects.get(subjectKey(update.scope, update.scopeId))?.rows.get(
          update.keyVersion,
        );
        if (row !== undefined && row.systemKeyId === batch.fromSystemKeyId) {
          this.#track(tx, row.scope, row.scopeId);
          row.encryptedDek = update.encryptedDek.slice();
          row.systemKeyId = update.systemKeyId;
          written++;
        }
      }
    }
    return Promise.resolve({ read: rows.length, written });
  }

  /** See {@link KeyStore.countKeys}. */
  countKeys(_tx: unknown, systemKeyId: string): Promise<number> {
    return Promise.resolve(this.#wrappedUnder(systemKeyId).length);
  }

  /** False inside an open `InMemoryTransaction` (its changes may still roll back), else true. */
  readsCommitted(tx: unknown): boolean {
    return rollbackAware(tx) === null;
  }

  /**
   * Inserts a raw row as-is (e.g. one written by the Go library, or a deliberately corrupt one).
   * Replaces an existing row of the same version.
   */
  seed(row: KeyRow): void {
    const subject = this.#subjectFor(row.scope, row.scopeId);
    subject.rows.set(row.keyVersion, {
      scope: row.scope,
      scopeId: row.scopeId,
      keyVersion: row.keyVersion,
      encryptedDek: row.encryptedDek.slice(),
      systemKeyId: row.systemKeyId,
      createdAt: row.createdAt?.getTime() ?? this.#clock.now(),
      revokedAt: row.revokedAt?.getTime() ?? null,
    });
  }

  /** Copies of every stored row, ordered by scope, scope id and version. */
  rows(): StoredKey[] {
    const rows: StoredKey[] = [];
    for (const subject of this.#subjects.values()) {
      for (const row of subject.rows.values()) rows.push(this.#toKey(row));
    }
    return rows.sort((a, b) =>
      compareText(a.scope, b.scope) || compareText(a.scopeId, b.scopeId) ||
      a.keyVersion - b.keyVersion
    );
  }

  /** Copies of every tombstone. */
  tombstones(): KeyTombstone[] {
    const out: KeyTombstone[] = [];
    for (const [key, subject] of this.#subjects) {
      const [scope, scopeId] = key.split("\u0000");
      const tombstone = this.#tombstone(scope, scopeId, subject);
      if (tombstone !== null) out.push(tombstone);
    }
    return out;
  }
}
