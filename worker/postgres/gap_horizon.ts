/**
 * The PostgreSQL side of the gap rule (docs/design.md, ../core/gap_rule.ts): the snapshot token, the
 * resolution check and the blocker report, as three prebuilt statements with one text parameter
 * (the token). Internal to the coordinator.
 *
 * **The token** is text: `N` alone, or `N;x1,x2,…`.
 *
 * - `N` (an `xid8`) bounds every transaction id assigned when the token was taken: the snapshot's
 *   xmax raised above every transaction id holding its lock in `pg_locks`. The snapshot's xmax
 *   alone is *not* such a bound: it is `latestCompletedXid + 1`, so a transaction that got its id
 *   after the last one to end is running at or above it and is missing from the snapshot's xip
 *   list. That happens on an ordinary log: Q gets its id, T gets its id and draws p, Q draws q > p
 *   and commits; a snapshot then reads `xmin = xmax = T` with T still open. Every transaction holds
 *   the lock on its own id from right after the id is assigned (before it can draw a position)
 *   until after it has left the proc array, and `pg_locks` reads all lock partitions at once.
 * - `x1,x2,…` (32-bit `xid`s) are the transactions of *this* database that were running when the
 *   token was taken: `pg_stat_activity.backend_xid` of this database's backends and
 *   `pg_prepared_xacts.transaction` of this database. Present only when the activity view can be
 *   trusted (below); without it the token is `N` alone.
 *
 * **Resolution** (the hole is final) is either of:
 *
 * 1. cluster-wide: `pg_snapshot_xmin(pg_current_snapshot()) >= N` — every transaction that was
 *    running anywhere on the server has ended;
 * 2. this database only: none of `x1,x2,…` is still a backend's `backend_xid` nor a prepared
 *    transaction. A transaction T that drew a hole at p below a visible q had its id before it drew
 *    p (the store's append writes the heads row first), p was drawn before q, and q's writer
 *    committed before the read that saw the hole; so when the token is taken after that read, T
 *    is visible, aborted, or running with an id. T wrote our events table, so it runs on a backend
 *    of this database or is prepared in it — it is in the list. A transaction of another database
 *    never is, so it cannot hold the wait (it only delays rule 1).
 *
 * Why each step is in the order it is:
 *
 * - `pg_stat_activity` is snapshotted once per transaction (on first use). A batch transaction
 *   runs the resolution check before its read and may take a token after it, so both statements
 *   first call `pg_stat_clear_snapshot()`. A `CASE` fixes the order (the documented way to force
 *   evaluation order; its branches' uncorrelated subqueries run when first reached).
 * - A transaction being prepared enters `pg_prepared_xacts` (its gxact is marked valid and put in
 *   the proc array) *before* its backend's `backend_xid` is cleared, and leaves `pg_prepared_xacts`
 *   only after it has left the proc array. So the activity view is read (snapshotted) first and
 *   `pg_prepared_xacts` after: a transaction missing from both has left the proc array, and a
 *   statement after the check sees its outcome.
 * - A `backend_xid` is cleared when the transaction leaves the proc array (after its commit or
 *   abort is recorded), so a later snapshot sees the outcome too. (`pg_xact_status` would not do:
 *   the commit is in the commit log a moment before the proc array lets go of the id.)
 *
 * 32-bit ids: `backend_xid` and `pg_prepared_xacts.transaction` are `xid`, so the list is compared
 * as `xid = xid`. Equal low 32 bits mean the same transaction unless 2^32 ids went by in between,
 * which cannot happen while that transaction is still running (wraparound protection stops id
 * assignment 2^31 ids behind the oldest running one); a later transaction that reuses the value
 * can only make the check wait longer, never pass a hole early. `N` stays an `xid8`; the 32-bit ids
 * of `pg_locks` are widened against the snapshot's xmax (a running id is within 2^31 of it).
 *
 * Trusting the activity view: other roles' sessions need not show their `backend_xid` to a role
 * that is neither superuser nor a member of `pg_read_all_stats` (PostgreSQL 15 does show it, but the
 * documented guarantee is only for those roles), and an embedded server may not track backends.
 * So the token carries the list only when the role has `pg_read_all_stats` (superusers do) and its
 * own backend is listed under this database; otherwise rule 1 alone decides. Checked with every
 * token (once per hole), so a role change is picked up.
 *
 * Cost: the token and the check read the functions under the views (`pg_stat_get_activity`,
 * `pg_prepared_xact`, `pg_lock_status`: the same rows without the views' catalog joins), which
 * keeps planning small for pools without prepared statements (measured on PostgreSQL 15: the
 * check plans and runs in ~0.4 ms unprepared against ~1.4 ms through the views, ~0.1–0.25 ms
 * prepared). The check runs only while a consumer waits at a hole; `pg_lock_status` (which
 * briefly takes every lock-manager partition) only in the token, once per hole.
 *
 * @module
 */

/** 2^32 and 2^31, for the modular arithmetic on 32-bit transaction ids. */
const WRAP = "4294967296";
const HALF = "2147483648";

/** `value - base` as a signed 32-bit difference (both numeric; `value` may be the low 32 bits). */
const signedDiff = (value: string, base: string) =>
  `((((${value}) - (${base})) % ${WRAP} + ${WRAP} + ${HALF}) % ${WRAP} - ${HALF})`;

/** The 32-bit ids in the token (an empty array when there is no list). */
const TOKEN_XIDS = `string_to_array(split_part($1::text, ';', 2), ',')::xid[]`;

/** Our own database by oid (pg_stat_activity names databases by oid). */
const OUR_DATABASE = `(SELECT oid FROM pg_database WHERE datname = current_database())`;

/**
 * Takes the token (see the module doc). Must run after the read that saw the hole, on the same
 * connection or any other; inside a transaction it is still correct (it drops the cached activity
 * snapshot first).
 */
export const GAP_TOKEN_SQL = `SELECT h.horizon || CASE
    WHEN pg_stat_clear_snapshot() IS NULL THEN NULL
    WHEN NOT pg_has_role('pg_read_all_stats', 'USAGE') OR NOT EXISTS (
        SELECT 1 FROM pg_stat_get_activity(pg_backend_pid()) WHERE datid = ${OUR_DATABASE})
      THEN ''
    ELSE ';' || array_to_string(ARRAY(
        SELECT backend_xid FROM pg_stat_get_activity(NULL)
          WHERE datid = ${OUR_DATABASE} AND backend_xid IS NOT NULL
        UNION ALL
        SELECT transaction FROM pg_prepared_xact() WHERE dbid = ${OUR_DATABASE}), ',')
    END
  FROM (
    SELECT (x.xmax + greatest(0, coalesce(max(${
  signedDiff("l.transactionid::text::numeric", "x.xmax")
} + 1), 0)))::text AS horizon
    FROM (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::numeric AS xmax) x
    LEFT JOIN pg_lock_status() l ON l.locktype = 'transactionid' AND l.granted
    GROUP BY x.xmax) h`;

/**
 * Whether the token is resolved: rule 1, else (when the token has a list) rule 2. One statement;
 * rule 1 first, so a hole no transaction holds any more costs one snapshot.
 */
export const GAP_RESOLVED_SQL = `SELECT CASE
    WHEN pg_snapshot_xmin(pg_current_snapshot()) >= split_part($1::text, ';', 1)::xid8 THEN true
    WHEN strpos($1::text, ';') = 0 THEN false
    WHEN pg_stat_clear_snapshot() IS NULL THEN NULL
    WHEN EXISTS (SELECT 1 FROM pg_stat_get_activity(NULL) WHERE backend_xid = ANY (${TOKEN_XIDS}))
      THEN false
    ELSE NOT EXISTS (SELECT 1 FROM pg_prepared_xact() WHERE transaction = ANY (${TOKEN_XIDS}))
  END`;

/**
 * The transactions that hold the wait, this database's first, at most 20. Columns: pid, xid,
 * transaction age (ms; for a prepared transaction, since it was prepared), state, application
 * name, query, database. With a list in the token: the listed transactions still running (all of
 * this database). Without one (rule 1 alone): every running transaction older than `N`, on any
 * database. The query text is given for this database's sessions only, never another database's.
 */
export const GAP_BLOCKERS_SQL = `WITH t AS (
    SELECT split_part($1::text, ';', 1)::numeric AS horizon, strpos($1::text, ';') > 0 AS listed,
      ${TOKEN_XIDS} AS xids),
  b AS (
    SELECT a.pid, a.backend_xid AS xid, a.xact_start AS since, a.state, a.application_name,
        CASE WHEN a.datid = ${OUR_DATABASE} THEN left(a.query, 300) END AS query,
        a.datname::text AS database
      FROM pg_stat_activity a WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()
    UNION ALL
    SELECT NULL, p.transaction, p.prepared, 'prepared', NULL,
        CASE WHEN p.database = current_database()
          THEN 'PREPARE TRANSACTION ' || quote_literal(p.gid) END,
        p.database::text
      FROM pg_prepared_xacts p)
  SELECT b.pid, b.xid::text, (extract(epoch FROM clock_timestamp() - b.since) * 1000)::bigint,
      b.state, b.application_name, b.query, b.database
    FROM b, t
    WHERE CASE WHEN t.listed THEN b.xid = ANY (t.xids)
      ELSE ${signedDiff("b.xid::text::numeric", "t.horizon")} < 0 END
    ORDER BY b.database IS DISTINCT FROM current_database(), b.since
    LIMIT 20`;

/**
 * The parts of a token (for tests and diagnostics): the horizon `N`, and this database's running
 * transactions when the activity view was trusted (null otherwise).
 */
export function parseGapToken(token: string): { horizon: string; transactions: string[] | null } {
  const split = token.indexOf(";");
  if (split < 0) return { horizon: token, transactions: null };
  const list = token.slice(split + 1);
  return { horizon: token.slice(0, split), transactions: list === "" ? [] : list.split(",") };
}
