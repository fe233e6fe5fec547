import {
  type ComponentSchema,
  type ComponentSchemaState,
  migrateSchemas,
  migrationScript,
  schemaStates,
  type SchemaVersion,
} from "../internal/migration.ts";
import { storeSchema } from "../store/migration.ts";
import { workerSchema } from "../worker/postgres/migration.ts";
import { TABLE_OPTION_KEYS as WORKER_TABLES } from "../worker/postgres/tables.ts";
import { encryptionSchema } from "../encryption/migration.ts";
import { connectFromEnvironment } from "./database.ts";
import { type FlagValues, integerFlag, parseFlags, pickOptions, tableFlags } from "./flags.ts";
import { type CliIo, CliUsageError } from "./io.ts";
import { VERSION } from "./version.ts";

/** One component of the schema: the table options it reads and its versions. */
export interface SchemaComponent {
  readonly name: string;
  /** Library option names; each is also a kebab-case flag (`eventsTable` → `--events-table`). */
  readonly tableOptions: readonly string[];
  schema(values: FlagValues): ComponentSchema;
}

const STORE_TABLES = ["eventsTable", "headsTable"];
const ENCRYPTION_TABLES = ["keysTable", "keysTombstoneTable"];

const store: SchemaComponent = {
  name: "store",
  tableOptions: STORE_TABLES,
  schema(values) {
    const size = integerFlag(values["partition-size"], "partition-size");
    const initial = integerFlag(values["initial-partitions"], "initial-partitions");
    if (initial !== undefined && size === undefined) {
      throw new CliUsageError("--initial-partitions needs --partition-size");
    }
    return storeSchema({
      ...pickOptions(values, STORE_TABLES),
      partitioning: size === undefined
        ? null
        : { strategy: "native", partitionSize: size, initialPartitions: initial },
    });
  },
};

const worker: SchemaComponent = {
  name: "worker",
  tableOptions: WORKER_TABLES,
  schema: (values) => workerSchema(pickOptions(values, WORKER_TABLES)),
};

const encryption: SchemaComponent = {
  name: "encryption",
  // Flags --keys-table / --keys-tombstone-table map to the key store's `table` / `tombstoneTable`.
  tableOptions: ENCRYPTION_TABLES,
  schema: (values) => {
    const picked = pickOptions(values, ENCRYPTION_TABLES);
    return encryptionSchema({ table: picked.keysTable, tombstoneTable: picked.keysTombstoneTable });
  },
};

/** The components `migrate` knows, in the order their DDL is applied. */
export const schemaComponents: SchemaComponent[] = [store, worker, encryption];

/** The flags naming tables, for every command that reads them. */
export const SCHEMA_TABLE_OPTIONS: readonly string[] = schemaComponents.flatMap((c) =>
  c.tableOptions
);

/** `store v1 (app.events)`: a component's state in words. */
export function describeState(state: ComponentSchemaState): string {
  return `${state.component} v${state.current} (${state.target})`;
}

/** One line on where the schema stands, and what to do when it is not where this library expects. */
export function schemaSummary(states: readonly ComponentSchemaState[]): string {
  const behind = states.filter((s) => s.pending.length > 0);
  const ahead = states.filter((s) => s.ahead);
  if (behind.length === 0 && ahead.length === 0) {
    return `schema: up to date (${states.map(describeState).join(", ")})`;
  }
  const parts: string[] = [];
  if (behind.length > 0) {
    parts.push(
      `schema BEHIND eventsalsa ${VERSION}: ` +
        behind.map((s) =>
          `${s.component} (${s.target}) is at v${s.current}, expected v${s.expected} ` +
          `(pending ${s.pending.map((p) => `v${p.version}`).join(", ")})`
        ).join("; ") + `; run "eventsalsa migrate --apply" with the same table flags`,
    );
  }
  if (ahead.length > 0) {
    parts.push(
      `schema AHEAD of eventsalsa ${VERSION}: ` +
        ahead.map((s) =>
          `${s.component} (${s.target}) is at v${s.current}, expected v${s.expected}`
        )
          .join("; ") +
        "; upgrade this library",
    );
  }
  return parts.join("; ");
}

/** The usage of `migrate`. */
export const migrateUsage: string =
  `eventsalsa migrate [--apply | --all] [--only store,worker,encryption] [table flags]
                   [--partition-size N [--initial-partitions N]]
  Brings the schema to the version this library expects. Each applied version is recorded
  (component, version, checksum of its DDL, time) in eventsalsa_schema_versions beside the
  component's tables, in the same transaction, so a version runs once.
    (no flag)            print the SQL script: with DATABASE_URL set, only the versions that
                         database lacks (a comment when it is up to date); without it, all of them
    --all                print every version without connecting
    --apply              apply the pending versions to DATABASE_URL (one transaction, under an
                         advisory lock) and say what was applied
    --only list          some of store, worker, encryption (all three by default)
    --partition-size N   partition a new events table by global_position, N positions each
    --initial-partitions N  partitions created up front (4)
    table flags          the library's table options in kebab case, schema.name allowed:
                         --events-table --heads-table --worker-nodes-table
                         --consumer-assignments-table --consumer-checkpoints-table
                         --consumer-gap-skips-table --consumer-dead-letters-table
                         --leader-election-table --keys-table --keys-tombstone-table`;

/** `eventsalsa migrate`. */
export async function migrateCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, {
    apply: { type: "boolean" },
    all: { type: "boolean" },
    only: { type: "string" },
    "partition-size": { type: "string" },
    "initial-partitions": { type: "string" },
    ...tableFlags(SCHEMA_TABLE_OPTIONS),
  });
  if (values.apply && values.all) throw new CliUsageError("--apply and --all exclude each other");
  const known = schemaComponents.map((c) => c.name);
  const only = typeof values.only === "string"
    ? values.only.split(",").map((s) => s.trim())
    : known;
  for (const name of only) {
    if (!known.includes(name)) {
      throw new CliUsageError(
        `--only: unknown component ${JSON.stringify(name)} (known: ${known.join(", ")})`,
      );
    }
  }
  const schemas = schemaComponents.filter((c) => only.includes(c.name)).map((c) =>
    c.schema(values)
  );
  if (!values.apply && (values.all || !io.env("DATABASE_URL"))) {
    io.out(`-- eventsalsa ${VERSION}: every schema version`);
    io.out(await migrationScript(schemas.map((schema) => ({ schema, versions: schema.versions }))));
    return 0;
  }
  const sql = await connectFromEnvironment(io);
  try {
    if (values.apply) {
      for (const outcome of await migrateSchemas(sql, schemas)) {
        io.out(
          outcome.applied.length > 0
            ? `${outcome.component} (${outcome.target}): applied ` +
              outcome.applied.map((v) => `v${v}`).join(", ")
            : `${outcome.component} (${outcome.target}): up to date at v${outcome.current}`,
        );
      }
      return 0;
    }
    const states = await schemaStates(sql, schemas);
    const pending = schemas.map((schema, i) => ({
      schema,
      versions: schema.versions.filter((v: SchemaVersion) =>
        states[i].pending.some((p) => p.version === v.version)
      ),
    })).filter((part) => part.versions.length > 0);
    io.out(`-- eventsalsa ${VERSION}: ${schemaSummary(states)}`);
    if (pending.length === 0) {
      io.out("-- nothing to apply");
    } else {
      io.out(
        `-- pending: ${
          pending.flatMap((p) =>
            p.versions.map((v) => `${p.schema.component} v${v.version} (${p.schema.target})`)
          ).join(", ")
        }`,
      );
      io.out(await migrationScript(pending));
    }
    return 0;
  } finally {
    await sql.end();
  }
}
