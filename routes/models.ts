/** OpenAI `GET /v1/models` and `GET /v1/models/{id}`. */
import { Hono } from "hono";
import { openAIError } from "./errors.ts";

export interface ModelInfo {
  id: string;
  created: number;
  ownedBy: string;
}

export interface ModelsDeps {
  listModels: () => ModelInfo[];
}

function modelObject(m: ModelInfo) {
  return { id: m.id, object: "model", created: m.created, owned_by: m.ownedBy };
}

export function modelsRoutes(deps: ModelsDeps): Hono {
  const app = new Hono();
  app.get("/v1/models", (c) => c.json({ object: "list", data: deps.listModels().map(modelObject) }));
  app.get("/v1/models/:id{.+}", (c) => {
    const id = c.req.param("id");
    const hit = deps.listModels().find((m) => m.id === id);
    if (!hit) return openAIError(c, 404, `The model '${id}' does not exist`, "invalid_request_error", "model", "model_not_found");
    return c.json(modelObject(hit));
  });
  return app;
}
