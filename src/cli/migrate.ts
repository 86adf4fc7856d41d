/**
 * deno run -A src/cli/migrate.ts
 *
 * Applies the database migrations (migrations/) and exits: to DATABASE_URL
 * when set, else to the embedded database in DATA_DIR. Every replica also
 * migrates at start (under an advisory lock, so only one applies them); a
 * deployment runs this once up front instead (a Kubernetes Job, the compose
 * `migrate` service) so replicas start without waiting on each other.
 */
import { parseFlags, UsageError } from "./flags.ts";
import { openStore } from "../store/store.ts";

const USAGE = `usage: deno run -A src/cli/migrate.ts

Applies the migrations to DATABASE_URL (PostgreSQL), or to the embedded
database in DATA_DIR (default ./data) when DATABASE_URL is unset, and exits.`;

try {
  const flags = parseFlags(Deno.args, {});
  if (flags.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  console.error(`${e.message}\n\n${USAGE}`);
  Deno.exit(2);
}

const databaseUrl = Deno.env.get("DATABASE_URL") || null;
const dataDir = Deno.env.get("DATA_DIR") || "./data";
const started = performance.now();
const store = await openStore({ dataDir, databaseUrl });
await store.close();
console.log(
  `migrations applied to ${databaseUrl ? "DATABASE_URL" : `${dataDir}/db`} in ${
    ((performance.now() - started) / 1000).toFixed(1)
  } s`,
);
