/** OpenAPI fragments shared by the route definitions. */
import { ErrorSchema } from "./schemas.ts";

const error = (description: string) => ({ description, content: { "application/json": { schema: ErrorSchema } } });

export const errorResponses = {
  400: error("Invalid parameters (the message and `param` name the field); `context_length_exceeded`"),
  401: error("Missing or invalid API key (`invalid_api_key`)"),
  404: error("Unknown model (`model_not_found`)"),
  413: error("Request body too large"),
  503: error("Engine queue full (`server_overloaded`); retry later"),
} as const;
