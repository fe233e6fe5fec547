import postgres from "postgres";
import { type CliIo, CliUsageError } from "./io.ts";

/** Opens a pool on DATABASE_URL; a missing URL is a usage error, not a stack trace. */
export function connectFromEnvironment(io: CliIo): postgres.Sql {
  const url = io.env("DATABASE_URL");
  if (!url) {
    throw new CliUsageError(
      "DATABASE_URL is not set (e.g. DATABASE_URL=postgres://user@host:5432/db)",
    );
  }
  return postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10 });
}
