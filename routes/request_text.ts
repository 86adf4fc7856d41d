/**
 * One check of every string a request brings, before any route sees it: the
 * decoded path, every query key and value, and every key and string value of
 * a JSON body must be text the store can hold (src/store/storable_text.ts:
 * no NUL, no unpaired surrogate) — a 400 naming where, never a database
 * error. Generation bodies (`/v1/chat/completions`, `/v1/completions`) are
 * the exception: their text goes to the tokenizer, never to the store, and a
 * prompt may hold any character; their `model` is looked up by the resolver,
 * which answers 404 for an id no model can have.
 *
 * Also: a JSON request with an empty body reads as `{}` (a body-less POST
 * sent by a client that always sets `Content-Type: application/json`).
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./app_env.ts";
import { badRequest } from "./errors.ts";
import { findUnstorable, unstorableText } from "../src/store/storable_text.ts";

const FREE_TEXT_BODIES = new Set(["/v1/chat/completions", "/v1/completions"]);
const JSON_TYPE = /^application\/([a-z-.]+\+)?json/i;

function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // malformed escapes stay as sent (as Hono's own decoding does)
  }
}

export function requestTextGuard(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const path = decoded(c.req.path);
    const inPath = unstorableText(path);
    if (inPath) throw badRequest(`The request path ${inPath}, which is not accepted`, null, "invalid_value");
    for (const [key, values] of Object.entries(c.req.queries())) {
      const inKey = unstorableText(key);
      if (inKey) throw badRequest(`A query parameter name ${inKey}, which is not accepted`, null, "invalid_value");
      for (const v of values) {
        const inValue = unstorableText(v);
        if (inValue) throw badRequest(`Invalid value for '${key}': it ${inValue}`, key, "invalid_value");
      }
    }
    if (JSON_TYPE.test(c.req.header("content-type") ?? "") && c.req.method !== "GET" && c.req.method !== "HEAD") {
      const text = await c.req.text();
      if (text.trim() === "") {
        // What the route's validator reads (`c.req.json()` parses the cached text).
        (c.req.bodyCache as Record<string, Promise<string>>).text = Promise.resolve("{}");
      } else if (!FREE_TEXT_BODIES.has(c.req.path)) {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined; // malformed: the route's validator answers it
        }
        const bad = body === undefined ? null : findUnstorable(body);
        if (bad) {
          throw badRequest(
            bad.path ? `Invalid value for '${bad.path}': it ${bad.reason}` : `The request body ${bad.reason}`,
            bad.path || null,
            "invalid_value",
          );
        }
      }
    }
    await next();
  };
}
