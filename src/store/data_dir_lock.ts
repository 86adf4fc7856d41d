/**
 * PGlite is one in-process PostgreSQL: two processes opening the same
 * directory would corrupt it. An exclusive lock on `<dir>/db.lock`, held
 * while the store is open, makes the second one fail fast instead.
 */
import { join } from "node:path";
import { StoreError } from "./errors.ts";

export interface DataDirLock {
  release(): Promise<void>;
}

export async function lockDataDir(dataDir: string, timeoutMs = 2000): Promise<DataDirLock> {
  const file = await Deno.open(join(dataDir, "db.lock"), { read: true, write: true, create: true });
  // Deno has no try-lock: race the blocking lock against a timer. A lost race
  // leaves the lock request pending until the holder exits; the caller is
  // failing start-up anyway.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs));
  const locked = await Promise.race([file.lock(true).then(() => true), timedOut]);
  clearTimeout(timer);
  if (!locked) {
    file.close();
    throw new StoreError(
      "database_in_use",
      `${dataDir} is in use by another process (PGlite allows one; use DATABASE_URL to share a database)`,
    );
  }
  return {
    release: async () => {
      await file.unlock();
      file.close();
    },
  };
}
