/** OpenAPI fragments shared by the route definitions. */
import { createRoute, type RouteConfig, type z } from "@hono/zod-openapi";
import { ErrorSchema } from "./schemas.ts";

/** A response documented as `schema` in JSON. */
export const jsonResponse = <S extends z.ZodType>(description: string, schema: S) => ({
  description,
  content: { "application/json": { schema } },
});

/** An error response (OpenAI's error body). */
export const jsonError = (description: string) => jsonResponse(description, ErrorSchema);

export const errorResponses = {
  400: jsonError("Invalid parameters (the message and `param` name the field); `context_length_exceeded`"),
  401: jsonError("Missing or invalid API key (`invalid_api_key`)"),
  404: jsonError("Unknown model (`model_not_found`)"),
  413: jsonError("Request body too large"),
  503: jsonError("Engine queue full (`server_overloaded`); retry later"),
} as const;

/**
 * `createRoute` for a bearer-authenticated route: adds the `security`
 * requirement and the 401 response, so `config` states only the rest.
 */
export const authRoute = <P extends string, R extends Omit<RouteConfig, "path" | "security"> & { path: P }>(
  config: R,
) =>
  createRoute({
    ...config,
    security: [{ bearerAuth: [] }],
    responses: { ...config.responses, 401: errorResponses[401] },
  });
