/**
 * Opens the database behind the store and brings its schema up to date:
 * PGlite in `DATA_DIR/db` by default, PostgreSQL (postgres.js) when a URL is
 * given. Both run the same drizzle migrations from migrations/, and both are
 * seen by the queries as one drizzle `PgDatabase` type.
 */
import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import type { Logger } from "drizzle-orm/logger";
import { lockDataDir } from "./data_dir_lock.ts";
import { StoreError } from "./errors.ts";
import { unstorableParam } from "./storable_text.ts";

/** What every query module sees; a transaction (`PgTransaction`) is one too. */
export type Db = PgDatabase<PgQueryResultHKT>;
export type Backend = "pglite" | "postgres";

export interface Database {
  readonly db: Db;
  readonly backend: Backend;
  /** LISTEN on a channel; resolves once listening, to an unsubscribe function. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** Resolves true when a trivial query answers within `timeoutMs` (readiness: a replica that lost its database). */
  ping(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface DatabaseConfig {
  /** PGlite keeps its files in `<dataDir>/db`. */
  dataDir: string;
  /** PostgreSQL connection URL; null = embedded PGlite. */
  databaseUrl: string | null;
  /** postgres.js pool size (default 10). */
  poolSize?: number;
}

export const MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations", import.meta.url));

/**
 * Refuses, before it is sent, any query with a parameter the database cannot
 * store (storable_text.ts). Drizzle hands every query of both drivers, in and
 * out of transactions, to its logger just before the driver runs it: the one
 * place that sees them all.
 */
const storableParams: Logger = {
  logQuery(_query: string, params: unknown[]): void {
    for (const p of params) {
      const reason = unstorableParam(p);
      if (reason) throw new StoreError("invalid_value", `A value in the request cannot be stored: it ${reason}`);
    }
  },
};

/** Key for the session-level advisory lock that serializes migrations across replicas. */
const MIGRATION_LOCK_KEY = 0x5ca10a;

export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  return config.databaseUrl === null
    ? await openPglite(config.dataDir)
    : await openPostgres(config.databaseUrl, config.poolSize ?? 10);
}

async function openPglite(dataDir: string): Promise<Database> {
  await Deno.mkdir(dataDir, { recursive: true });
  const lock = await lockDataDir(dataDir);
  let client: PGlite | null = null;
  try {
    client = await PGlite.create(join(dataDir, "db"));
    const db = drizzlePglite(client, { logger: storableParams });
    // The directory lock makes this the only migrator.
    await migratePglite(db, { migrationsFolder: MIGRATIONS_DIR });
    const open = client;
    return {
      db,
      backend: "pglite",
      listen: async (channel, onPayload) => {
        const unlisten = await open.listen(channel, onPayload);
        return () => unlisten();
      },
      ping: (timeoutMs) => withTimeout(open.query("select 1").then(() => true), timeoutMs).catch(() => false),
      close: async () => {
        try {
          await open.close();
        } finally {
          await lock.release();
        }
      },
    };
  } catch (e) {
    await client?.close();
    await lock.release();
    throw e;
  }
}

async function openPostgres(url: string, poolSize: number): Promise<Database> {
  const quiet = { onnotice: () => {} };
  await migratePostgresLocked(url, quiet);
  const client = postgres(url, { max: poolSize, ...quiet });
  return {
    db: drizzlePostgres(client, { logger: storableParams }),
    backend: "postgres",
    listen: async (channel, onPayload) => {
      // postgres.js keeps one dedicated connection for all LISTENs.
      const sub = await client.listen(channel, onPayload);
      return () => sub.unlisten();
    },
    ping: (timeoutMs) => withTimeout(client`select 1`.then(() => true), timeoutMs).catch(() => false),
    close: () => client.end({ timeout: 5 }),
  };
}

/**
 * Replicas starting together would race to apply the same migration; a
 * session advisory lock on a one-connection client lets one apply, the rest
 * then find nothing left to do.
 */
async function migratePostgresLocked(url: string, options: { onnotice: () => void }): Promise<void> {
  const client = postgres(url, { max: 1, ...options });
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await migratePostgres(drizzlePostgres(client), { migrationsFolder: MIGRATIONS_DIR });
    } finally {
      await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await client.end({ timeout: 5 });
  }
}

/** `p`, or a rejection after `ms` (the query itself is left to finish or fail on its own). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
