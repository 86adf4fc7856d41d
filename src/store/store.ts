/**
 * The persistence facade: `openStore` opens the database (PGlite or
 * PostgreSQL), applies migrations, and hands out typed query groups. Nothing
 * outside src/store/ sees SQL or drizzle.
 */
import { InsufficientStorageError } from "../disk_space.ts";
import { AliasQueries } from "./alias_queries.ts";
import { CheckpointQueries } from "./checkpoint_queries.ts";
import { type Backend, type Database, openDatabase } from "./database.ts";
import { EventQueries } from "./event_queries.ts";
import { FileQueries } from "./file_queries.ts";
import { JobQueries } from "./job_queries.ts";
import { sqlState } from "./pg_errors.ts";
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
  /** True when the database answers within `timeoutMs` (default 2 s). */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** The database behind each store, for src/store-internal helpers (tests' reset). */
const databases = new WeakMap<Store, Database>();

export function databaseOf(store: Store): Database {
  const database = databases.get(store);
  if (!database) throw new Error("not a store opened by openStore");
  return database;
}

/**
 * The query group with every failed query whose database ran out of disk
 * (SQLSTATE 53100, PostgreSQL and PGlite alike) reported as
 * `InsufficientStorageError("database")`: a 507 naming the database.
 */
function reportDiskFull<T extends object>(queries: T): T {
  return new Proxy(queries, {
    get(target, prop) {
      const member = Reflect.get(target, prop, target);
      if (typeof member !== "function") return member;
      return (...args: unknown[]) => {
        const out = member.apply(target, args);
        if (!(out instanceof Promise)) return out;
        return out.catch((e: unknown) => {
          throw sqlState(e) === "53100" ? new InsufficientStorageError("database", { cause: e }) : e;
        });
      };
    },
  });
}

export async function openStore(config: StoreConfig): Promise<Store> {
  const database = await openDatabase(config);
  const { db } = database;
  let closed: Promise<void> | null = null;
  const store: Store = {
    backend: database.backend,
    files: reportDiskFull(new FileQueries(db)),
    jobs: reportDiskFull(new JobQueries(db)),
    events: reportDiskFull(new EventQueries(db)),
    checkpoints: reportDiskFull(new CheckpointQueries(db)),
    versions: reportDiskFull(new VersionQueries(db)),
    aliases: reportDiskFull(new AliasQueries(db, database.listen)),
    ping: (timeoutMs = 2000) => database.ping(timeoutMs),
    close: () => closed ??= database.close(),
  };
  databases.set(store, database);
  return store;
}
