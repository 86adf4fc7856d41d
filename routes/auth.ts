/**
 * Bearer-key auth for `/v1/*`. Keys are compared as SHA-256 digests with a
 * constant-time compare, against every configured key, so neither the
 * key's length nor which key matched leaks through timing.
 */
import type { MiddlewareHandler } from "hono";
import { createHash, timingSafeEqual } from "node:crypto";
import type { AppEnv } from "./app_env.ts";
import { ApiError } from "./errors.ts";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

export function bearerKeyAuth(keys: readonly string[]): MiddlewareHandler<AppEnv> {
  const digests = keys.map(digest);
  return async (c, next) => {
    const header = c.req.header("Authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!match) {
      throw new ApiError(
        401,
        "You didn't provide an API key. Provide it in the Authorization header as 'Bearer <key>'.",
        "invalid_request_error",
        null,
        "invalid_api_key",
      );
    }
    const given = digest(match[1]);
    let ok = false;
    for (const d of digests) ok = timingSafeEqual(given, d) || ok;
    if (!ok) throw new ApiError(401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
    await next();
  };
}
