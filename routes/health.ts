/** Liveness, readiness and Prometheus metrics: open even when API keys are required. */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { ServerMetrics } from "../src/serve/metrics.ts";
import type { AppEnv } from "./app_env.ts";

export interface HealthDeps {
  /** True once the serving model is loaded. */
  ready: () => boolean;
  metrics: ServerMetrics;
}

const Status = z.object({ status: z.string() });

const health = createRoute({
  method: "get",
  path: "/health",
  summary: "Liveness",
  responses: { 200: { description: "The process is up", content: { "application/json": { schema: Status } } } },
});

const ready = createRoute({
  method: "get",
  path: "/ready",
  summary: "Readiness: the model is loaded",
  responses: {
    200: { description: "Ready to serve", content: { "application/json": { schema: Status } } },
    503: { description: "Still loading", content: { "application/json": { schema: Status } } },
  },
});

const metrics = createRoute({
  method: "get",
  path: "/metrics",
  summary: "Prometheus metrics (text exposition format)",
  responses: { 200: { description: "Metrics", content: { "text/plain": { schema: z.string() } } } },
});

export function healthRoutes(deps: HealthDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(health, (c) => c.json({ status: "ok" }, 200));
  app.openapi(ready, (c) => deps.ready() ? c.json({ status: "ready" }, 200) : c.json({ status: "loading" }, 503));
  app.openapi(metrics, async (c) => {
    const { contentType, body } = await deps.metrics.render();
    return c.text(body, 200, { "Content-Type": contentType });
  });
  return app;
}
