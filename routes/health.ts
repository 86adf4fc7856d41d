/** Liveness and readiness: open even when API keys are required. */
import { Hono } from "hono";

export interface HealthDeps {
  /** True once the serving model is loaded. */
  ready: () => boolean;
}

export function healthRoutes(deps: HealthDeps): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => deps.ready() ? c.json({ status: "ready" }) : c.json({ status: "loading" }, 503));
  return app;
}
