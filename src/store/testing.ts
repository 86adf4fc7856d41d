/** Test support: empties every table of a store (keeps the schema). Never used by the server. */
import { sql } from "drizzle-orm";
import { databaseOf, type Store } from "./store.ts";

export async function resetStore(store: Store): Promise<void> {
  await databaseOf(store).db.execute(sql`
    TRUNCATE model_alias_history, model_aliases, model_versions, fine_tuning_checkpoints,
      fine_tuning_events, fine_tuning_jobs, files RESTART IDENTITY CASCADE`);
}
