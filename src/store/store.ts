/**
 * The persistence facade: `openStore` opens the database (PGlite or
 * PostgreSQL), applies migrations, and hands out typed query groups. Nothing
 * outside src/store/ sees SQL or drizzle.
 */
import { AliasQueries } from "./alias_queries.ts";
import { CheckpointQueries } from "./checkpoint_queries.ts";
import { type Backend, type Database, openDatabase } from "./database.ts";
import { EventQueries } from "./event_queries.ts";
import { FileQueries } from "./file_queries.ts";
import { JobQueries } from "./job_queries.ts";
import { VersionQueries } from "./version_queries.ts";

export interface StoreConfig {
  /** Embedded PGlite lives in `<dataDir>/db`. */
  dataDir: string;
  /** PostgreSQL URL (`DATABASE_URL`); null = embedded PGlite. */
  databaseUrl: string | null;
}

export interface Store {
  readonly backend: Backend;
  readonly files: FileQueries;
  readonly jobs: JobQueries;
  readonly events: EventQueries;
  readonly checkpoints: CheckpointQueries;
  readonly versions: VersionQueries;
  readonly aliases: AliasQueries;
  close(): Promise<void>;
}

/** The database behind each store, for src/store-internal helpers (tests' reset). */
const databases = new WeakMap<Store, Database>();

export function databaseOf(store: Store): Database {
  const database = databases.get(store);
  if (!database) throw new Error("not a store opened by openStore");
  return database;
}

export async function openStore(config: StoreConfig): Promise<Store> {
  const database = await openDatabase(config);
  const { db } = database;
  let closed: Promise<void> | null = null;
  const store: Store = {
    backend: database.backend,
    files: new FileQueries(db),
    jobs: new JobQueries(db),
    events: new EventQueries(db),
    checkpoints: new CheckpointQueries(db),
    versions: new VersionQueries(db),
    aliases: new AliasQueries(db, database.listen),
    close: () => closed ??= database.close(),
  };
  databases.set(store, database);
  return store;
}
