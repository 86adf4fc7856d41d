/**
 * Runs the same store-backed test cases on every backend: PGlite always, and
 * PostgreSQL when TEST_DATABASE_URL is set (otherwise that variant shows up as
 * "ignored", not silently missing). Each variant gets its own fresh database
 * (a temp dir for PGlite, a throwaway database for PostgreSQL).
 */
import postgres from "postgres";
import { openStore, type Store } from "../../src/store/store.ts";

export interface StoreBackend {
  name: "pglite" | "postgres";
  /** Why the variant is skipped, or null when it runs. */
  skip: string | null;
  /** Opens a store on a fresh database; `dispose` closes it and drops the database. */
  open(): Promise<{ store: Store; dataDir: string; dispose: () => Promise<void> }>;
}

const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ?? "";

/** A fresh database on the TEST_DATABASE_URL server; `drop` removes it. */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const dbName = `scalora_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${dbName}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${dbName}`;
  return {
    url: url.href,
    drop: async () => {
      const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
      try {
        // FORCE terminates what is still connected; without pg_signal_backend it may not terminate a background
        // process (an autovacuum worker) that happens to be in the database: wait for it and try again.
        for (let attempt = 1;; attempt++) {
          try {
            await admin.unsafe(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
            return;
          } catch (e) {
            if ((e as { code?: string }).code !== "42501" || attempt >= 20) throw e;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      } finally {
        await admin.end();
      }
    },
  };
}

export const storeBackends: StoreBackend[] = [
  {
    name: "pglite",
    skip: null,
    async open() {
      const dataDir = await Deno.makeTempDir({ prefix: "scalora-store-" });
      const store = await openStore({ dataDir, databaseUrl: null });
      return {
        store,
        dataDir,
        dispose: async () => {
          await store.close();
          await Deno.remove(dataDir, { recursive: true });
        },
      };
    },
  },
  {
    name: "postgres",
    skip: TEST_DATABASE_URL ? null : "TEST_DATABASE_URL is not set",
    async open() {
      const dataDir = await Deno.makeTempDir({ prefix: "scalora-store-" });
      const db = await createTestDatabase();
      const store = await openStore({ dataDir, databaseUrl: db.url });
      return {
        store,
        dataDir,
        dispose: async () => {
          await store.close();
          try {
            await db.drop();
          } finally {
            await Deno.remove(dataDir, { recursive: true });
          }
        },
      };
    },
  },
];

export interface StoreCase {
  name: string;
  fn: (ctx: { store: Store; dataDir: string }) => Promise<void>;
}

/**
 * One Deno test per backend, one step per case; the store is opened once per
 * backend and emptied before every case.
 */
export function defineStoreTests(suite: string, cases: StoreCase[], reset: (store: Store) => Promise<void>): void {
  for (const backend of storeBackends) {
    Deno.test({
      name: `${suite} [${backend.name}]${backend.skip ? ` (skipped: ${backend.skip})` : ""}`,
      ignore: backend.skip !== null,
      async fn(t) {
        const { store, dataDir, dispose } = await backend.open();
        try {
          for (const c of cases) {
            await t.step(c.name, async () => {
              await reset(store);
              await c.fn({ store, dataDir });
            });
          }
        } finally {
          await dispose();
        }
      },
    });
  }
}
