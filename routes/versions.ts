/**
 * Admin API over model versions: `GET /v1/versions` (cursor list),
 * `GET /v1/versions/{id}` (by id `ftver-…` or name `ft:…`), and
 * `POST /v1/versions/{id}/export` ({format: "hf" | "onnx"}) which writes the
 * merged model under DATA_DIR/exports/<version id>/<export>/ and answers,
 * once written, with that path relative to DATA_DIR and a download URL per
 * file (synchronous: an ONNX export of a 135M model takes seconds; an
 * existing export is returned at once), and
 * `GET /v1/versions/{version id}/export/{export}/files/{name}` serving one
 * of those files (only names the export lists: no path reaches outside it).
 *
 * Version names may contain `/` (hub-style bases), so `{id}` takes slashes.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "./app_env.ts";
import { relative } from "node:path";
import { ApiError, fromZodError } from "./errors.ts";
import { authRoute, errorResponses, jsonError, jsonResponse } from "./openapi_common.ts";
import type { VersionRecord } from "../src/store/version_queries.ts";
import { versionMetadata, type VersionService } from "../src/registry/versions.ts";
import { EXPORT_NAMES, exportName } from "../src/registry/version_export.ts";

export interface VersionsDeps {
  versions: VersionService;
}

const LayerSchema = z.object({
  name: z.string(),
  format: z.enum(["lowrank", "dense"]),
  m: z.number().int(),
  n: z.number().int(),
  rank: z.number().int(),
  dtype: z.enum(["F32", "F16", "BF16"]),
});

export const VersionObjectSchema = z.object({
  id: z.string().openapi({ example: "ftver-abc123" }),
  object: z.literal("model.version"),
  name: z.string().openapi({ example: "ft:HuggingFaceTB/SmolLM2-135M-Instruct:demo:ftjob-abc123" }),
  base_model: z.string(),
  kind: z.enum(["final", "checkpoint"]),
  job_id: z.string().nullable(),
  created_at: z.number().int(),
  delta_format: z.enum(["lowrank", "dense"]).openapi({ description: "`dense` when any layer is stored dense." }),
  content_hash: z.string().openapi({ description: "sha256 over the stored delta and the base id." }),
  artifact_path: z.string().openapi({ description: "Relative to DATA_DIR." }),
  size_bytes: z.number().int(),
  layers: z.array(LayerSchema),
  metrics: z.record(z.string(), z.unknown()),
}).openapi("ModelVersion");

const VersionListSchema = z.object({
  object: z.literal("list"),
  data: z.array(VersionObjectSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
}).openapi("ModelVersionList");

const ExportBodySchema = z.object({
  format: z.enum(["hf", "onnx"]).openapi({
    description:
      "`hf`: HF safetensors directory (merged weights, base config and tokenizer); `onnx`: transformers.js directory.",
  }),
  dtype: z.enum(["fp32", "fp16"]).default("fp32").openapi({ description: "ONNX weights dtype (ignored for hf)." }),
});

const ExportResultSchema = z.object({
  object: z.literal("model.version.export"),
  version: z.string(),
  format: z.enum(["hf", "onnx"]),
  export: z.enum(EXPORT_NAMES).openapi({ description: "The export's name: `hf`, `onnx-float32` or `onnx-float16`." }),
  path: z.string().openapi({ description: "The export directory, relative to DATA_DIR." }),
  files: z.array(z.object({
    name: z.string().openapi({ example: "model.safetensors" }),
    bytes: z.number().int(),
    url: z.string().openapi({
      description: "Download path on this server",
      example: "/v1/versions/ftver-abc123/export/hf/files/model.safetensors",
    }),
  })),
}).openapi("ModelVersionExport");

const FileParams = z.object({
  id: z.string().min(1).openapi({ example: "ftver-abc123", description: "The version id (as in the export's URLs)." }),
  export: z.enum(EXPORT_NAMES),
  name: z.string().min(1).openapi({ example: "model.safetensors" }),
});

const ListQuerySchema = z.object({
  after: z.string().optional().openapi({ description: "Cursor: the id of the last version of the previous page." }),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
  order: z.enum(["asc", "desc"]).default("desc"),
  base_model: z.string().optional(),
  job_id: z.string().optional(),
});

const IdParams = z.object({ id: z.string().min(1).openapi({ example: "ftver-abc123" }) });
const err404 = jsonError("No such version");

const listRoute = authRoute({
  method: "get",
  path: "/v1/versions",
  summary: "List model versions",
  request: { query: ListQuerySchema },
  responses: { 200: jsonResponse("A page of versions", VersionListSchema), 400: errorResponses[400] },
});

const getRoute = authRoute({
  method: "get",
  path: "/v1/versions/{id}",
  summary: "Retrieve a model version (by id or name)",
  request: { params: IdParams },
  responses: { 200: jsonResponse("The version", VersionObjectSchema), 404: err404 },
});

const exportRoute = authRoute({
  method: "post",
  path: "/v1/versions/{id}/export",
  summary: "Export a model version's merged weights",
  request: {
    params: IdParams,
    body: { required: true, content: { "application/json": { schema: ExportBodySchema } } },
  },
  responses: {
    200: jsonResponse("Where the export was written", ExportResultSchema),
    400: errorResponses[400],
    404: err404,
  },
});

const fileRoute = authRoute({
  method: "get",
  path: "/v1/versions/{id}/export/{export}/files/{name}",
  summary: "Download a file of a version's export",
  request: { params: FileParams },
  responses: {
    200: {
      description: "The file's bytes",
      content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } },
    },
    404: jsonError("No such version, export or file"),
  },
});

export function versionObject(v: VersionRecord): z.infer<typeof VersionObjectSchema> {
  const meta = versionMetadata(v);
  return {
    id: v.id,
    object: "model.version",
    name: v.name,
    base_model: v.baseModel,
    kind: meta.kind,
    job_id: v.jobId,
    created_at: Math.floor(v.createdAt.getTime() / 1000),
    delta_format: v.deltaFormat,
    content_hash: v.contentHash,
    artifact_path: v.artifactPath,
    size_bytes: v.sizeBytes,
    layers: meta.layers,
    metrics: meta.metrics,
  };
}

export function versionsRoutes(deps: VersionsDeps): OpenAPIHono<AppEnv> {
  const { versions } = deps;
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw fromZodError(result.error);
    },
  });

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid("query");
    const page = await versions.list({
      after: q.after,
      limit: q.limit,
      order: q.order,
      baseModel: q.base_model,
      jobId: q.job_id,
    });
    const data = page.data.map(versionObject);
    return c.json({
      object: "list" as const,
      data,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: page.hasMore,
    }, 200);
  });

  // Before the slash-taking `{id}` route below, which would read the whole path as an id.
  app.openAPIRegistry.registerPath(fileRoute);
  app.openapi(
    { ...fileRoute, path: "/v1/versions/{id{ftver-[^/]+}}/export/{export}/files/{name{.+}}", hide: true },
    async (c) => {
      const { id, export: name, name: file } = c.req.valid("param");
      const record = await versions.get(id);
      const listed = (await versions.exportFiles(record, name)).find((f) => f.name === file);
      if (!listed) {
        throw new ApiError(
          404,
          `Version ${record.id} has no exported file '${
            file.slice(0, 200)
          }' in '${name}' (POST /v1/versions/${record.id}/export first)`,
          "invalid_request_error",
          "name",
          null,
        );
      }
      const f = await versions.openExportFile(record, name, listed);
      const base = listed.name.split("/").pop()!;
      return c.body(f.stream, 200, {
        "Content-Type": "application/octet-stream",
        "Content-Length": String(listed.bytes),
        "Content-Disposition": `attachment; filename="${base.replace(/[^\x20-\x7e]|["\\%;]/g, "_")}"`,
        "X-Content-Type-Options": "nosniff",
      });
    },
  );

  // Documented as `{id}`, served with ids that may contain slashes.
  app.openAPIRegistry.registerPath(getRoute);
  app.openapi({ ...getRoute, path: "/v1/versions/{id{.+}}", hide: true }, async (c) => {
    return c.json(versionObject(await versions.get(c.req.valid("param").id)), 200);
  });

  app.openAPIRegistry.registerPath(exportRoute);
  app.openapi({ ...exportRoute, path: "/v1/versions/{id{.+}}/export", hide: true }, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const record = await versions.get(id);
    const dtype = body.dtype === "fp16" ? "float16" : "float32";
    const dir = await versions.exportVersion(record.id, body.format, dtype);
    const name = exportName(body.format, dtype);
    const files = (await versions.exportFiles(record, name)).map((f) => ({
      ...f,
      url: `/v1/versions/${record.id}/export/${name}/files/${f.name.split("/").map(encodeURIComponent).join("/")}`,
    }));
    return c.json({
      object: "model.version.export" as const,
      version: record.name,
      format: body.format,
      export: name,
      path: relative(versions.dataDir, dir),
      files,
    }, 200);
  });

  return app;
}
