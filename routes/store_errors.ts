/**
 * Maps the store's domain errors to the OpenAI error envelope. Returns null for anything else, so it composes with
 * `toApiError`: `storeApiError(err) ?? toApiError(err)`.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { StoreError, type StoreErrorCode } from "../src/store/errors.ts";
import { ApiError } from "./errors.ts";

const STORE_STATUS: Record<StoreErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  invalid_cursor: 400,
  invalid_transition: 409,
  conflict: 409,
  no_previous_target: 409,
  lease_lost: 409,
  database_in_use: 503,
  invalid_value: 400,
};

export function storeApiError(err: unknown): ApiError | null {
  if (err instanceof StoreError) {
    // OpenAI's "No such File object" 404s carry no code; the rest name theirs.
    const code = err.code === "not_found" ? null : err.code;
    const status = STORE_STATUS[err.code];
    return new ApiError(status, err.message, status >= 500 ? "server_error" : "invalid_request_error", err.param, code);
  }
  return null;
}
