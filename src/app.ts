/**
 * Builds the Hono app from routes/. Pure: no I/O at import, everything it
 * needs comes in through `AppDeps`, so tests mount it without a server.
 *
 * Middleware order: request log + metrics (outermost, sees final statuses),
 * 405 for known paths, body size limit, bearer auth on /v1/*, the check of
 * every path/query/body string (routes/request_text.ts), then routes.
 * Every error goes through `toApiError` once, in `onError`.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { methodNotAllowed } from "hono/method-not-allowed";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "../routes/app_env.ts";
import { bearerKeyAuth } from "../routes/auth.ts";
import { chatRoutes } from "../routes/chat.ts";
import { completionRoutes } from "../routes/completions.ts";
import { docsRoutes } from "../routes/docs.ts";
import { ApiError, errorResponse, fromZodError, toApiError } from "../routes/errors.ts";
import { type AliasesDeps, aliasesRoutes } from "../routes/aliases.ts";
import { type FilesDeps, filesRoutes } from "../routes/files.ts";
import { fineTuningRoutes } from "../routes/fine_tuning.ts";
import { versionsRoutes } from "../routes/versions.ts";
import type { AliasCoordinator } from "./registry/hot_swap.ts";
import type { VersionService } from "./registry/versions.ts";
import type { FineTuningService } from "./jobs/fine_tuning_service.ts";
import { healthRoutes } from "../routes/health.ts";
import { type DashboardApiDeps, dashboardApiRoutes } from "../routes/ui/dashboard_api.ts";
import { uiRoutes } from "../routes/ui/ui_routes.tsx";
import type { ModelResolver } from "./serve/model_resolver.ts";
import { modelsRoutes } from "../routes/models.ts";
import { requestLog, type RequestLogLine } from "../routes/request_log.ts";
import { requestTextGuard } from "../routes/request_text.ts";
import type { DiskSpace } from "./disk_space.ts";
import { ServerMetrics } from "./serve/metrics.ts";

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface AppDeps {
  models: ModelResolver;
  /** True once the serving model is loaded. */
  ready: () => boolean;
  /** Bearer keys required on /v1/*; empty or absent = open. */
  apiKeys?: readonly string[];
  /** Request body limit (413 above it). Default 4 MiB. */
  maxBodyBytes?: number;
  /** Per-request wall-clock limit handed to the engine. */
  requestTimeoutMs?: number;
  /** Default: a registry over `models`' engines. */
  metrics?: ServerMetrics;
  /** One structured line per request. Default: JSON on stdout. */
  logRequest?: (line: RequestLogLine) => void;
  systemFingerprint?: string;
  /** `/v1/files` (mounted when given). */
  files?: FilesDeps;
  /** `/v1/fine_tuning/jobs` (mounted when given). */
  fineTuning?: FineTuningService;
  /** `/v1/aliases` (mounted when given). */
  coordinator?: AliasCoordinator;
  /** `/v1/versions` (mounted when given). */
  versions?: VersionService;
  /** The data directory's filesystem: free space and disk pressure in /ready and /metrics. */
  disk?: DiskSpace;
  /** The dashboard at /ui and its overview API (mounted when given). */
  dashboard?: Omit<DashboardApiDeps, "fineTuning">;
  /** Whether the database answers: /ready is 503 `unavailable` while it does not. */
  database?: () => Promise<boolean>;
  /** This replica's name and training job, in /ready. */
  replica?: () => { id: string; trainingJob: string | null };
}

/** The evaluation set of an eval-gated alias switch: the named file, else the target version's job's validation file. */
function evaluationData(deps: AppDeps): AliasesDeps["evaluationData"] {
  const { fineTuning, versions } = deps;
  if (!fineTuning || !versions) return undefined;
  return async (target, file) => {
    const version = await versions.find(target);
    return await fineTuning.evaluationData({ file, jobId: version?.jobId ?? null });
  };
}

export function buildApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const metrics = deps.metrics ??
    new ServerMetrics(() => deps.models.loaded().map((m) => ({ model: m.id, stats: () => m.engine.stats() })));
  const log = deps.logRequest ?? ((line: RequestLogLine) => console.log(JSON.stringify(line)));
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  const app = new OpenAPIHono<AppEnv>({
    // zod failures become a 400 naming the parameter.
    defaultHook: (result) => {
      if (!result.success) throw fromZodError(result.error);
    },
  });
  app.use("*", requestLog(metrics, log));
  app.use(
    "*",
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        c.json(
          new ApiError(
            405,
            `Method ${c.req.method} is not allowed on ${c.req.path}`,
            "invalid_request_error",
            null,
            "method_not_allowed",
          ).body,
          405,
          { Allow: methods.join(", ") },
        ),
    }),
  );
  const limitBody = bodyLimit({
    maxSize: maxBodyBytes,
    onError: () => {
      throw new ApiError(
        413,
        `Request body is larger than ${maxBodyBytes} bytes`,
        "invalid_request_error",
        null,
        "request_too_large",
      );
    },
  });
  // File uploads stream to disk under their own, larger limit (routes/files.ts).
  app.use(
    "*",
    (c, next) => deps.files && c.req.method === "POST" && c.req.path === "/v1/files" ? next() : limitBody(c, next),
  );
  if (deps.apiKeys && deps.apiKeys.length > 0) app.use("/v1/*", bearerKeyAuth(deps.apiKeys));
  app.use("*", requestTextGuard());

  const ctx = {
    models: deps.models,
    requestTimeoutMs: deps.requestTimeoutMs,
    systemFingerprint: deps.systemFingerprint ?? "fp_scalora",
    timing: (model: string) => metrics.timing(model),
  };
  app.route(
    "/",
    healthRoutes({
      ready: deps.ready,
      metrics,
      disk: deps.disk,
      database: deps.database,
      replica: deps.replica,
    }),
  );
  app.route("/", modelsRoutes(deps.models));
  app.route("/", completionRoutes(ctx));
  app.route("/", chatRoutes(ctx));
  if (deps.files) app.route("/", filesRoutes(deps.files));
  if (deps.fineTuning) app.route("/", fineTuningRoutes({ service: deps.fineTuning }));
  if (deps.coordinator) {
    app.route("/", aliasesRoutes({ coordinator: deps.coordinator, evaluationData: evaluationData(deps) }));
  }
  if (deps.versions) app.route("/", versionsRoutes({ versions: deps.versions }));
  if (deps.dashboard) {
    app.route("/", dashboardApiRoutes({ ...deps.dashboard, fineTuning: deps.fineTuning }));
    app.route("/", uiRoutes({ authRequired: (deps.apiKeys?.length ?? 0) > 0 }));
  }
  app.route("/", docsRoutes());
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", { type: "http", scheme: "bearer" });
  app.doc("/openapi.json", {
    openapi: "3.0.0",
    info: {
      title: "ScaLoRA Server",
      version: "1.0.0",
      description: "OpenAI-compatible inference API (models, completions, chat completions) plus ops endpoints.",
    },
  });

  app.notFound((c) =>
    errorResponse(
      c,
      new ApiError(404, `Unknown route ${c.req.method} ${c.req.path}`, "invalid_request_error", null, "not_found"),
    )
  );
  app.onError((err, c) => {
    // The client went away mid-request: nobody reads this answer; 499 as nginx logs it.
    if (c.req.raw.signal.aborted && !(err instanceof ApiError)) {
      return errorResponse(c, new ApiError(499 as ContentfulStatusCode, "Client closed request"));
    }
    const api = toApiError(err);
    if (api.status === 500) console.error(err);
    return errorResponse(c, api);
  });
  return app;
}
