/**
 * The one error base of the service. Every domain's error type (store,
 * files, registry, fine-tuning, engine, multipart, disk) extends `ApiError`
 * and says, where it is thrown, which HTTP status and OpenAI envelope
 * {"error": {"message", "type", "param", "code"}} it stands for — as Hono's
 * `HTTPException` carries its status. The app maps errors once, in
 * `onError` (routes/errors.ts `toApiError`): an `ApiError` is answered as
 * it is, anything else is a bug (500).
 *
 * A leaf module (type imports only), so every layer can extend it.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";

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
    readonly type: ErrorType = status >= 500 ? "server_error" : "invalid_request_error",
    /** The request parameter at fault, when there is one (OpenAI notation: `messages[0].content`). */
    readonly param: string | null = null,
    /** The envelope's machine-readable code (null where OpenAI sends none, e.g. "No such File object"). */
    readonly code: string | null = null,
    /** Extra response headers (e.g. Retry-After). */
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** The type of an envelope for a status: server-side failures are `server_error`. */
export function errorTypeFor(status: number): ErrorType {
  return status >= 500 ? "server_error" : "invalid_request_error";
}
