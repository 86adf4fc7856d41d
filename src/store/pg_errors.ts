/**
 * SQLSTATE of a failed query, whichever driver raised it: drizzle wraps the
 * driver's error (postgres.js `PostgresError`, PGlite `DatabaseError`) in
 * `cause`; both carry the code as `code`.
 */
export const UNIQUE_VIOLATION = "23505";
export const FOREIGN_KEY_VIOLATION = "23503";

export function sqlState(err: unknown): string | null {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as Error & { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return null;
}
