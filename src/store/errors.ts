/**
 * The one error type of the store domain. `kind` is what callers branch on;
 * it also fixes the HTTP status and the OpenAI envelope's code (an
 * `ApiError`, answered as is by the app).
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ApiError } from "../errors.ts";

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

const STATUS: Record<StoreErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  invalid_cursor: 400,
  invalid_transition: 409,
  conflict: 409,
  no_previous_target: 409,
  lease_lost: 409,
  database_in_use: 503,
  invalid_value: 400,
};

export class StoreError extends ApiError {
  override name = "StoreError";
  /** The envelope's code: none for a 404 (OpenAI's "No such File object" carries none), else the kind. */
  declare readonly code: Exclude<StoreErrorCode, "not_found"> | null;
  constructor(
    readonly kind: StoreErrorCode,
    message: string,
    /** The request parameter at fault, when there is one (`id`, `after`, …). */
    param: string | null = null,
  ) {
    super(STATUS[kind], message, undefined, param, kind === "not_found" ? null : kind);
  }
}
