/**
 * drizzle-kit settings: `deno task db:generate` diffs src/store/schema.ts
 * against migrations/meta and writes the next SQL migration into migrations/.
 * The server applies migrations/ at start (src/store/database.ts).
 */
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/store/schema.ts",
  out: "./migrations",
  strict: true,
  verbose: true,
});
