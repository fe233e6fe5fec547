import { applyMigration, migrationSql as storeMigrationSql } from "../store/migration.ts";
import { migrationSql as workerMigrationSql } from "../worker/postgres/migration.ts";
import { TABLE_OPTION_KEYS as WORKER_TABLES } from "../worker/postgres/tables.ts";
import { migrationSql as encryptionMigrationSql } from "../encryption/migration.ts";
import { connectFromEnvironment } from "./database.ts";
import { type FlagValues, integerFlag, parseFlags, pickOptions, tableFlags } from "./flags.ts";
import { type CliIo, CliUsageError } from "./io.ts";

/** One component's schema: the table options it reads and the DDL they produce. */
export interface SchemaComponent {
  readonly name: string;
  /** Library option names; each is also a kebab-case flag (`eventsTable` → `--events-table`). */
  readonly tableOptions: readonly string[];
  ddl(values: FlagValues): string;
}

const STORE_TABLES = ["eventsTable", "headsTable"];

const store: SchemaComponent = {
  name: "store",
  tableOptions: STORE_TABLES,
  ddl(values) {
    const size = integerFlag(values["partition-size"], "partition-size");
    const initial = integerFlag(values["initial-partitions"], "initial-partitions");
    if (initial !== undefined && size === undefined) {
      throw new CliUsageError("--initial-partitions needs --partition-size");
    }
    return storeMigrationSql({
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
  ddl: (values) => workerMigrationSql(pickOptions(values, WORKER_TABLES)),
};

const encryption: SchemaComponent = {
  name: "encryption",
  // Flags --keys-table / --keys-tombstone-table map to the key store's `table` / `tombstoneTable`.
  tableOptions: ["keysTable", "keysTombstoneTable"],
  ddl: (values) => {
    const picked = pickOptions(values, ["keysTable", "keysTombstoneTable"]);
    return encryptionMigrationSql({
      table: picked.keysTable,
      tombstoneTable: picked.keysTombstoneTable,
    });
  },
};

/** The components `migrate` knows, in the order their DDL is applied. */
export const schemaComponents: SchemaComponent[] = [store, worker, encryption];

/** The usage line of `migrate`. */
export const migrateUsage: string =
  `eventsalsa migrate [--apply] [--only store,worker,encryption] [--events-table name ...]
  Prints the schema DDL (idempotent), or applies it to DATABASE_URL with --apply. Table flags are
  the library's table options in kebab case; --partition-size N [--initial-partitions N] partitions
  the events table.`;

/** `eventsalsa migrate`. */
export async function migrateCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, {
    apply: { type: "boolean" },
    only: { type: "string" },
    "partition-size": { type: "string" },
    "initial-partitions": { type: "string" },
    ...tableFlags(schemaComponents.flatMap((c) => c.tableOptions)),
  });
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
  const ddl = schemaComponents.filter((c) => only.includes(c.name))
    .map((c) => `-- ${c.name}\n${c.ddl(values)}`).join("\n");
  if (!values.apply) {
    io.out(ddl);
    return 0;
  }
  const sql = await connectFromEnvironment(io);
  try {
    await applyMigration(sql, ddl);
  } finally {
    await sql.end();
  }
  io.out(`applied: ${only.join(", ")}`);
  return 0;
}
