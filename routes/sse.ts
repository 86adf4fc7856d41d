/**
 * OpenAI-style SSE: `data: <json>` events, then `data: [DONE]`. A client
 * disconnect aborts the engine sequences; a failure after the 200 was sent
 * becomes one error event (OpenAI envelope) before `[DONE]`.
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppEnv } from "./app_env.ts";
import { toApiError } from "./errors.ts";
import type { SequenceGroup } from "./sequences.ts";

export type Send = (data: unknown) => Promise<void>;

export function sseResponse(c: Context<AppEnv>, group: SequenceGroup, body: (send: Send) => Promise<void>): Response {
  const record = c.var.record;
  let ended = () => {};
  record.streamEnded = new Promise<void>((resolve) => (ended = resolve));
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => group.abort(new Error("client disconnected")));
    try {
      await body((data) => stream.writeSSE({ data: JSON.stringify(data) }));
      await stream.writeSSE({ data: "[DONE]" });
    } catch (e) {
      if (stream.aborted) {
        record.streamError = "client disconnected";
        return;
      }
      const err = toApiError(e);
      if (err.status >= 500 && err.type === "server_error") console.error(e);
      record.streamError = err.message;
      await stream.writeSSE({ data: JSON.stringify(err.body) });
      await stream.writeSSE({ data: "[DONE]" });
    } finally {
      ended();
    }
  });
}
