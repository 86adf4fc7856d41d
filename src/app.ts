/**
 * Builds the Hono app from routes/. Pure: no I/O at import, everything it
 * needs comes in through `AppDeps`, so tests mount it without a server.
 */
import { Hono } from "hono";
import { healthRoutes } from "../routes/health.ts";
import { type ModelInfo, modelsRoutes } from "../routes/models.ts";
import { openAIError } from "../routes/errors.ts";

export interface AppDeps {
  ready: () => boolean;
  listModels: () => ModelInfo[];
}

export function buildApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.route("/", healthRoutes(deps));
  app.route("/", modelsRoutes(deps));
  app.notFound((c) => openAIError(c, 404, `Unknown route ${c.req.method} ${c.req.path}`, "invalid_request_error"));
  app.onError((err, c) => {
    console.error(err);
    return openAIError(c, 500, "Internal server error", "server_error");
  });
  return app;
}
