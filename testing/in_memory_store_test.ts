import { eventStoreContract } from "./store_contract.ts";
import { inMemoryStoreHarness } from "./store_harnesses.ts";

eventStoreContract("InMemoryEventStore", inMemoryStoreHarness());
