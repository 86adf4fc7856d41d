/**
 * Maps the store and files domain errors (and the multipart reader's) to the
 * OpenAI error envelope. Returns null for anything else, so it composes with
 * `toApiError`: `storeApiError(err) ?? toApiError(err)`.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { StoreError, type StoreErrorCode } from "../src/store/errors.ts";
import { FileError } from "../src/store/file_service.ts";
import { ApiError } from "./errors.ts";
import { MultipartError } from "./multipart.ts";

const STORE_STATUS: Record<StoreErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  invalid_cursor: 400,
  invalid_transition: 409,
  conflict: 409,
  no_previous_target: 409,
  lease_lost: 409,
  database_in_use: 503,
};

export function storeApiError(err: unknown): ApiError | null {
  if (err instanceof StoreError) {
    // OpenAI's "No such File object" 404s carry no code; the rest name theirs.
    const code = err.code === "not_found" ? null : err.code;
    const status = STORE_STATUS[err.code];
    return new ApiError(status, err.message, status >= 500 ? "server_error" : "invalid_request_error", err.param, code);
  }
  if (err instanceof FileError) {
    switch (err.code) {
      case "file_too_large":
        return new ApiError(413, err.message, "invalid_request_error", "file", "file_too_large");
      case "invalid_file":
        return new ApiError(400, err.message, "invalid_request_error", "file", "invalid_file");
      case "content_missing":
        return new ApiError(500, err.message, "server_error", null, "content_missing");
    }
  }
  if (err instanceof MultipartError) {
    return err.kind === "too_large"
      ? new ApiError(413, err.message, "invalid_request_error", null, "request_too_large")
      : new ApiError(
        400,
        `Malformed multipart body: ${err.message}`,
        "invalid_request_error",
        null,
        "invalid_multipart",
      );
  }
  return null;
}
