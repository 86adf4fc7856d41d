/**
 * The one error type of the store domain. `code` is what callers branch on;
 * routes map it to the OpenAI envelope (see routes/files_errors.ts).
 */
export type StoreErrorCode =
  /** The named row does not exist (or is deleted). */
  | "not_found"
  /** A compare-and-set lost: the row is not in a state that allows the change. */
  | "invalid_transition"
  /** A unique value is taken (e.g. a version name). */
  | "conflict"
  /** An `after` cursor names no row of that list. */
  | "invalid_cursor"
  /** Alias rollback with nothing to roll back to. */
  | "no_previous_target"
  /** The caller no longer holds the job's lease. */
  | "lease_lost"
  /** The embedded database directory is open in another process. */
  | "database_in_use"
  /** A value the database cannot store (a NUL character, an unpaired surrogate). */
  | "invalid_value";

export class StoreError extends Error {
  override name = "StoreError";
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    /** The request parameter at fault, when there is one (`id`, `after`, …). */
    readonly param: string | null = null,
  ) {
    super(message);
  }
}
