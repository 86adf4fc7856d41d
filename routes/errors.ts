/**
 * The one error type of the HTTP layer (`ApiError`) and the single place where
 * every failure — validation, engine, template, framework — becomes the OpenAI
 * envelope {"error": {"message", "type", "param", "code"}} with its status.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { ChatTemplateError } from "../src/model/tokenizer.ts";
import { InvalidRequestError, QueueFullError, RequestTimeoutError } from "../src/serve/engine_types.ts";

export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "server_error"
  | "timeout_error";

export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly type: ErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (e.g. Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

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
  if (err instanceof QueueFullError) {
    return new ApiError(
      503,
      `The server is overloaded: ${err.message || "request queue is full"}. Retry later.`,
      "server_error",
      null,
      "server_overloaded",
      { "Retry-After": "1" },
    );
  }
  if (err instanceof InvalidRequestError) {
    const code = /context/i.test(err.message) ? "context_length_exceeded" : null;
    return badRequest(err.message, err.param, code);
  }
  if (err instanceof RequestTimeoutError) {
    return new ApiError(504, err.message || "The request timed out", "timeout_error", null, "timeout");
  }
  if (err instanceof ChatTemplateError) return badRequest(err.message, "messages", "chat_template_error");
  if (err instanceof HTTPException) {
    // Hono's own 4xx (e.g. malformed JSON from the validator).
    const status = err.status as ContentfulStatusCode;
    return new ApiError(status, err.message || "Bad request", status >= 500 ? "server_error" : "invalid_request_error");
  }
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
