/** OpenAI `GET /v1/models` and `GET /v1/models/{id}` over the model resolver. */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "./app_env.ts";
import { modelNotFound } from "./errors.ts";
import type { ModelInfo, ModelResolver } from "../src/serve/model_resolver.ts";
import { errorResponses } from "./openapi_common.ts";
import { ModelListSchema, ModelSchema } from "./schemas.ts";

function modelObject(m: ModelInfo): z.infer<typeof ModelSchema> {
  return { id: m.id, object: "model", created: m.created, owned_by: m.ownedBy };
}

const listRoute = createRoute({
  method: "get",
  path: "/v1/models",
  summary: "List served models",
  security: [{ bearerAuth: [] }],
  responses: {
    200: { description: "The models", content: { "application/json": { schema: ModelListSchema } } },
    401: errorResponses[401],
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/v1/models/{id}",
  summary: "Retrieve a model",
  security: [{ bearerAuth: [] }],
  request: { params: z.object({ id: z.string().openapi({ example: "HuggingFaceTB/SmolLM2-135M-Instruct" }) }) },
  responses: {
    200: { description: "The model", content: { "application/json": { schema: ModelSchema } } },
    401: errorResponses[401],
    404: errorResponses[404],
  },
});

export function modelsRoutes(models: ModelResolver): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(listRoute, (c) => c.json({ object: "list" as const, data: models.list().map(modelObject) }, 200));
  // Ids are hub-style (`owner/name`), so the served path takes slashes
  // (`:id{.+}`); the documented route is the plain `{id}` form.
  app.openAPIRegistry.registerPath(getRoute);
  app.openapi({ ...getRoute, path: "/v1/models/{id{.+}}", hide: true }, (c) => {
    const { id } = c.req.valid("param");
    const hit = models.list().find((m) => m.id === id);
    if (!hit) throw modelNotFound(id);
    return c.json(modelObject(hit), 200);
  });
  return app;
}
