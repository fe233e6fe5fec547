import { eventStoreContract } from "../testing/store_contract.ts";
import { postgresStoreHarness } from "../testing/store_harnesses.ts";
import { readEnv } from "../internal/env.ts";

eventStoreContract("PostgresStore (prepare: true)", postgresStoreHarness({ prepare: true }));
eventStoreContract(
  "PostgresStore (prepare: false, as behind PgBouncer transaction pooling)",
  postgresStoreHarness({ prepare: false }),
);

// EVENTSALSA_TEST_PGBOUNCER_URL (set by .ci/run): the contract once more through a real PgBouncer
// in transaction pooling mode, where consecutive transactions land on different server
// connections (docs/pgbouncer.md). LISTEN goes to the server directly, as documented.
const pgbouncer = readEnv("EVENTSALSA_TEST_PGBOUNCER_URL");
if (pgbouncer) {
  eventStoreContract(
    "PostgresStore through PgBouncer (pool_mode=transaction, prepare: false)",
    postgresStoreHarness({ pooler: pgbouncer, prepare: false }),
  );
}
