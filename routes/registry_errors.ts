/**
 * Maps the registry's domain errors to the OpenAI error envelope. Returns null
 * for anything else, so it composes: `registryApiError(e) ?? storeApiError(e) ?? toApiError(e)`.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { RegistryError, type RegistryErrorCode } from "../src/registry/errors.ts";
import { ApiError } from "./errors.ts";
import { storeApiError } from "./store_errors.ts";

const STATUS: Record<RegistryErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  conflict: 409,
  invalid_delta: 400,
  invalid_alias: 400,
  no_previous_target: 409,
  // The request was fine; the model it names is not servable (the old target keeps serving).
  validation_failed: 422,
  load_failed: 503,
};

const CODES: Record<RegistryErrorCode, string | null> = {
  not_found: null,
  conflict: "conflict",
  invalid_delta: "invalid_delta",
  invalid_alias: "invalid_alias",
  no_previous_target: "no_previous_target",
  validation_failed: "validation_failed",
  load_failed: "model_load_failed",
};

export function registryApiError(err: unknown): ApiError | null {
  if (!(err instanceof RegistryError)) return null;
  const status = STATUS[err.code];
  return new ApiError(
    status,
    err.message,
    status >= 500 ? "server_error" : "invalid_request_error",
    err.param,
    CODES[err.code],
  );
}

/** Awaits a domain call, turning registry and store errors into ApiErrors for the app's one error handler. */
export async function domainCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw registryApiError(e) ?? storeApiError(e) ?? e;
  }
}
