/**
 * OpenAI `GET /v1/models`, `GET /v1/models/{id}` and `DELETE /v1/models/{id}`
 * over the model resolver. `owned_by` tells base models (`system`),
 * fine-tuned versions (`fine-tuned`) and aliases (`alias`) apart.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "./app_env.ts";
import { ApiError, modelNotFound } from "./errors.ts";
import type { ModelInfo, ModelResolver } from "../src/serve/model_resolver.ts";
import { authRoute, errorResponses, jsonError, jsonResponse } from "./openapi_common.ts";
import { ModelDeletedSchema, ModelListSchema, ModelSchema } from "./schemas.ts";

function modelObject(m: ModelInfo): z.infer<typeof ModelSchema> {
  return { id: m.id, object: "model", created: m.created, owned_by: m.ownedBy };
}

const listRoute = authRoute({
  method: "get",
  path: "/v1/models",
  summary: "List served models",
  responses: { 200: jsonResponse("The models", ModelListSchema) },
});

const getRoute = authRoute({
  method: "get",
  path: "/v1/models/{id}",
  summary: "Retrieve a model",
  request: { params: z.object({ id: z.string().openapi({ example: "HuggingFaceTB/SmolLM2-135M-Instruct" }) }) },
  responses: { 200: jsonResponse("The model", ModelSchema), 404: errorResponses[404] },
});

const deleteRoute = authRoute({
  method: "delete",
  path: "/v1/models/{id}",
  summary: "Delete a fine-tuned model (a version) and free its artifacts",
  description: "Base models cannot be deleted (403 `model_not_deletable`), nor aliases (400: point them elsewhere). " +
    "409 `conflict` while an alias points at the version or its fine-tuning job has not ended.",
  request: {
    params: z.object({ id: z.string().openapi({ example: "ft:HuggingFaceTB/SmolLM2-135M-Instruct:x:ftjob-abc" }) }),
  },
  responses: {
    200: jsonResponse("Deleted", ModelDeletedSchema),
    400: errorResponses[400],
    403: jsonError("A base model"),
    404: errorResponses[404],
    409: jsonError("In use by an alias or a job"),
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
  app.openAPIRegistry.registerPath(deleteRoute);
  app.openapi({ ...deleteRoute, path: "/v1/models/{id{.+}}", hide: true }, async (c) => {
    const { id } = c.req.valid("param");
    if (!models.deleteModel) {
      throw new ApiError(
        403,
        "Models cannot be deleted on this server",
        "invalid_request_error",
        "model",
        "model_not_deletable",
      );
    }
    const deleted = await models.deleteModel(id);
    return c.json({ id: deleted.id, object: "model" as const, deleted: true }, 200);
  });
  return app;
}
