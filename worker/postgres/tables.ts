/**
 * The worker's table names: validated and quoted once, shared by the migration, the adapter,
 * `status` and `retryDeadLetter` so all agree on every name.
 *
 * @module
 */
import {
  derivedIdentifier,
  IdentifierError,
  parseIdentifier,
  quotePart,
  type SqlIdentifier,
} from "../../internal/sql_identifier.ts";
import { WorkerConfigError } from "../errors.ts";
import type { WorkerTableOptions } from "../options.ts";

/** The worker's tables, validated and quoted. */
export interface WorkerTables {
  readonly nodes: SqlIdentifier;
  readonly assignments: SqlIdentifier;
  readonly checkpoints: SqlIdentifier;
  readonly gapSkips: SqlIdentifier;
  readonly deadLetters: SqlIdentifier;
  readonly leader: SqlIdentifier;
}

/** The option names that hold table names. */
export const TABLE_OPTION_KEYS: readonly string[] = [
  "workerNodesTable",
  "consumerAssignmentsTable",
  "consumerCheckpointsTable",
  "consumerGapSkipsTable",
  "consumerDeadLettersTable",
  "leaderElectionTable",
];

/** Wraps identifier problems in the worker's own error type. */
export function identifier(
  value: unknown,
  what: string,
  options?: { allowSchema?: boolean },
): SqlIdentifier {
  try {
    return parseIdentifier(value, what, options);
  } catch (error) {
    if (error instanceof IdentifierError) throw new WorkerConfigError(error.message);
    throw error;
  }
}

/** Validates the table names (defaults for omitted ones). */
export function workerTables(options: WorkerTableOptions = {}): WorkerTables {
  return {
    nodes: identifier(options.workerNodesTable ?? "worker_nodes", "workerNodesTable"),
    assignments: identifier(
      options.consumerAssignmentsTable ?? "consumer_assignments",
      "consumerAssignmentsTable",
    ),
    checkpoints: identifier(
      options.consumerCheckpointsTable ?? "consumer_checkpoints",
      "consumerCheckpointsTable",
    ),
    gapSkips: identifier(
      options.consumerGapSkipsTable ?? "consumer_gap_skips",
      "consumerGapSkipsTable",
    ),
    deadLetters: identifier(
      options.consumerDeadLettersTable ?? "consumer_dead_letters",
      "consumerDeadLettersTable",
    ),
    leader: identifier(
      options.leaderElectionTable ?? "worker_leader_election",
      "leaderElectionTable",
    ),
  };
}

/** An index name next to `table`: `idx_<table>_<suffix>`, checked like a user-given name. */
export function indexName(table: SqlIdentifier, suffix: string): string {
  try {
    // CREATE INDEX takes an unqualified name: the index lives in its table's schema.
    return quotePart(derivedIdentifier(table, `idx_${table.name}_${suffix}`, "index name").name);
  } catch (error) {
    if (error instanceof IdentifierError) throw new WorkerConfigError(error.message);
    throw error;
  }
}
