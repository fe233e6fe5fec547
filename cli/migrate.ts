import { parseArgs } from "node:util";
import { applyMigration, migrationSql as storeMigrationSql } from "../store/migration.ts";
import { connectFromEnvironment } from "./database.ts";
import { type CliIo, CliUsageError } from "./io.ts";

/** One component's schema: the flags it reads and the DDL they produce. */
export interface SchemaComponent {
  readonly name: string;
  readonly flags: Record<string, { type: "string"; description: string }>;
  ddl(flags: Record<string, string | undefined>): string;
}

const store: SchemaComponent = {
  name: "store",
  flags: {
    "events-table": { type: "string", description: "events table (default events)" },
    "heads-table": {
      type: "string",
      description: "aggregate heads table (default aggregate_heads)",
    },
    "partition-size": { type: "string", description: "native range partitions of N positions" },
    "initial-partitions": { type: "string", description: "partitions created now (default 4)" },
  },
  ddl(flags) {
    const size = flags["partition-size"];
    const initial = flags["initial-partitions"];
    if (initial !== undefined && size === undefined) {
      throw new CliUsageError("--initial-partitions needs --partition-size");
    }
    const number = (value: string, flag: string) => {
      const n = Number(value);
      if (!Number.isSafeInteger(n) || n < 1) {
        throw new CliUsageError(`--${flag} must be a positive integer, got ${value}`);
      }
      return n;
    };
    return storeMigrationSql({
      eventsTable: flags["events-table"],
      headsTable: flags["heads-table"],
      partitioning: size === undefined ? null : {
        strategy: "native",
        partitionSize: number(size, "partition-size"),
        initialPartitions: initial === undefined
          ? undefined
          : number(initial, "initial-partitions"),
      },
    });
  },
};

/** The components `migrate` knows, in the order their DDL is applied. */
export const schemaComponents: SchemaComponent[] = [store];

export const migrateUsage =
  `eventsalsa migrate [--apply] [--only store,worker,encryption] [table flags]
  Prints the schema DDL (idempotent), or applies it to DATABASE_URL with --apply.`;

/** `eventsalsa migrate`. */
export async function migrateCommand(args: string[], io: CliIo): Promise<number> {
  const options: Record<string, { type: "string" | "boolean" }> = {
    apply: { type: "boolean" },
    only: { type: "string" },
  };
  for (const component of schemaComponents) Object.assign(options, component.flags);
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: false, strict: true });
  } catch (error) {
    throw new CliUsageError((error as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
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
  const flags = values as Record<string, string | undefined>;
  const ddl = schemaComponents.filter((c) => only.includes(c.name))
    .map((c) => `-- ${c.name}\n${c.ddl(flags)}`).join("\n");
  if (!values.apply) {
    io.out(ddl);
    return 0;
  }
  const sql = connectFromEnvironment(io);
  try {
    await applyMigration(sql, ddl);
  } finally {
    await sql.end();
  }
  io.out(`applied: ${only.join(", ")}`);
  return 0;
}
