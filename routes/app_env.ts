/**
 * Per-request state shared by middleware and handlers (Hono `c.var`), and
 * the handlers' view of the app's dependencies.
 */
import type { ModelResolver } from "../src/serve/model_resolver.ts";
import type { TokenTimingObserver } from "./sequences.ts";

/** What the request log line and the token metrics report for one request. */
export interface RequestRecord {
  model: string | null;
  promptTokens: number;
  completionTokens: number;
  /** Set by streaming handlers: resolves when the stream has ended (the log waits for it). */
  streamEnded: Promise<void> | null;
  /** A failure after the status was sent (mid-stream). */
  streamError: string | null;
}

export type AppEnv = { Variables: { record: RequestRecord } };

export interface GenerationContext {
  models: ModelResolver;
  /** Per-request wall-clock limit passed to the engine; undefined = none. */
  requestTimeoutMs?: number;
  systemFingerprint: string;
  /** TTFT / inter-token observer for a model's sequences. */
  timing(model: string): TokenTimingObserver;
}

export function newRecord(): RequestRecord {
  return { model: null, promptTokens: 0, completionTokens: 0, streamEnded: null, streamError: null };
}
