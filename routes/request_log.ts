/**
 * Outermost middleware: one structured JSON log line and the request metrics
 * per request. For streams it waits for the stream's end, so duration and
 * token counts cover the whole response.
 */
import type { MiddlewareHandler } from "hono";
import type { ServerMetrics } from "../src/serve/metrics.ts";
import { type AppEnv, newRecord } from "./app_env.ts";

export interface RequestLogLine {
  time: string;
  method: string;
  path: string;
  status: number;
  duration_ms: number;
  model: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  stream: boolean;
  error?: string;
}

export function requestLog(metrics: ServerMetrics, log: (line: RequestLogLine) => void): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    const record = newRecord();
    c.set("record", record);
    await next();
    const status = c.res.status;
    // The matched pattern, not the raw path, keeps label cardinality bounded.
    const route = c.req.routePath && c.req.routePath !== "/*" ? c.req.routePath : "unmatched";
    const finish = () => {
      const seconds = (performance.now() - started) / 1000;
      metrics.requests.inc({ method: c.req.method, route, status: String(status) });
      metrics.requestDuration.observe({ method: c.req.method, route }, seconds);
      if (record.model) {
        metrics.promptTokens.inc({ model: record.model }, record.promptTokens);
        metrics.completionTokens.inc({ model: record.model }, record.completionTokens);
      }
      log({
        time: new Date().toISOString(),
        method: c.req.method,
        path: c.req.path,
        status,
        duration_ms: Math.round(seconds * 1000 * 10) / 10,
        model: record.model,
        prompt_tokens: record.promptTokens,
        completion_tokens: record.completionTokens,
        stream: record.streamEnded !== null,
        ...(record.streamError ? { error: record.streamError } : {}),
      });
    };
    if (record.streamEnded) record.streamEnded.then(finish);
    else finish();
  };
}
