/** The OpenAI error envelope: {"error": {"message", "type", "param", "code"}}. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export function openAIError(
  c: Context,
  status: ContentfulStatusCode,
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null,
): Response {
  return c.json({ error: { message, type, param, code } }, status);
}
