/**
 * The HTTP side of the one error model (src/errors.ts): every domain error
 * is an `ApiError` that carries its status and envelope, so `toApiError` —
 * called once, by the app's `onError` — only answers it, turns Hono's own
 * HTTPExceptions into envelopes, a full disk into a 507, and treats anything
 * else as a bug (500).
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { InsufficientStorageError, isDiskFull } from "../src/disk_space.ts";
import { ApiError, type ErrorBody, type ErrorType } from "../src/errors.ts";

export { ApiError, type ErrorBody, type ErrorType };

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new ApiError(400, message, "invalid_request_error", param, code);

export const modelNotFound = (id: string) =>
  new ApiError(404, `The model '${id}' does not exist`, "invalid_request_error", "model", "model_not_found");

/** zod path → OpenAI param notation: `messages[0].content`. */
export function paramPath(path: readonly PropertyKey[]): string | null {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out || null;
}

export function fromZodError(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  const param = paramPath(issue?.path ?? []);
  const what = param ? `Invalid value for '${param}'` : "Invalid request body";
  return badRequest(`${what}: ${issue?.message ?? "invalid"}`, param);
}

/** Maps anything thrown while serving a request to an ApiError; unknown errors are bugs (500). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof HTTPException) {
    // Hono's own 4xx (e.g. malformed JSON from the validator).
    const status = err.status as ContentfulStatusCode;
    return new ApiError(status, err.message || "Bad request", status >= 500 ? "server_error" : "invalid_request_error");
  }
  // A write nobody named the area of: still a full disk, not a bug.
  if (isDiskFull(err)) return new InsufficientStorageError("data directory", { cause: err });
  return new ApiError(500, "Internal server error", "server_error");
}

export function errorResponse(c: Context, err: ApiError): Response {
  return c.json(err.body, err.status, err.headers);
}

/** Convenience for handlers that answer an error directly. */
export function openAIError(
  c: Context,
  status: ContentfulStatusCode,
  message: string,
  type: ErrorType,
  param: string | null = null,
  code: string | null = null,
): Response {
  return errorResponse(c, new ApiError(status, message, type, param, code));
}
