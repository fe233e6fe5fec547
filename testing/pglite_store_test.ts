import { eventStoreContract } from "./store_contract.ts";
import { postgresStoreHarness } from "./store_harnesses.ts";

// Always on the embedded engine, even when DATABASE_URL names a server.
eventStoreContract(
  "PostgresStore on embedded PGlite",
  postgresStoreHarness({ server: "embedded" }),
);
