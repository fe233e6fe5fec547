import { eventStoreContract } from "../testing/store_contract.ts";
import { postgresStoreHarness } from "../testing/store_harnesses.ts";

eventStoreContract("PostgresStore (prepare: true)", postgresStoreHarness({ prepare: true }));
eventStoreContract(
  "PostgresStore (prepare: false, as behind PgBouncer transaction pooling)",
  postgresStoreHarness({ prepare: false }),
);
