/**
 * The two API routes the dashboard needs beyond the OpenAI/admin API (under
 * /v1, so bearer keys guard them like everything else there):
 *
 * - `GET /v1/dashboard`: what the overview shows that no other route gives —
 *   the device and dtype engines run with, the base models, the loaded
 *   engines with their memory estimate and load, the pool's budget, the job
 *   training now. Rates (requests/s, tokens/s) come from /metrics.
 * - `POST /v1/dashboard/check_file` {file, model, max_length?}: a fine-tune
 *   file validated line by line exactly as a job's `validating_files` phase
 *   would (the model's tokenizer), plus the values "auto" resolves to for it,
 *   so the new-job page shows problems and defaults before a job exists.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../app_env.ts";
import { fromZodError } from "../errors.ts";
import { errorResponses } from "../openapi_common.ts";
import { ErrorSchema } from "../schemas.ts";
import type { FineTuningService } from "../../src/jobs/fine_tuning_service.ts";
import { LIMITS } from "../../src/jobs/job_spec.ts";
import type { ModelRegistry } from "../../src/registry/model_registry.ts";

export interface DashboardApiDeps {
  registry: ModelRegistry;
  /** The job this server is training now (null: none). */
  runningJob?: () => string | null;
  fineTuning?: FineTuningService;
}

const OverviewSchema = z.object({
  object: z.literal("dashboard.overview"),
  device: z.string().openapi({ description: "Where engines and training run: cpu, cuda or webgpu." }),
  dtype: z.string().openapi({ description: "The compute dtype of serving engines." }),
  base_models: z.array(z.string()),
  engines: z.array(z.object({
    model: z.string(),
    bytes: z.number().int().openapi({ description: "Memory estimate (parameters x dtype size)." }),
    busy: z.boolean(),
    queue_depth: z.number().int(),
    active_sequences: z.number().int(),
  })),
  memory: z.object({
    budget_bytes: z.number().int(),
    used_bytes: z.number().int(),
    draining_bytes: z.number().int(),
  }),
  running_job: z.string().nullable(),
}).openapi("DashboardOverview");

const IssueSchema = z.object({
  line: z.number().int(),
  code: z.string(),
  message: z.string(),
  param: z.string().nullable(),
});

const FileCheckSchema = z.object({
  object: z.literal("dashboard.file_check"),
  file: z.string(),
  filename: z.string(),
  valid: z.boolean(),
  examples: z.number().int().nullable(),
  tokens: z.number().int().nullable(),
  trainable_tokens: z.number().int().nullable(),
  truncated: z.number().int().nullable(),
  issue_count: z.number().int(),
  issues: z.array(IssueSchema),
  error: z.string().nullable().openapi({ description: "Not the data's fault: the model could not be loaded." }),
  hyperparameters: z.record(z.string(), z.unknown()).nullable().openapi({
    description: 'What "auto" and the defaults resolve to for a job on this file.',
  }),
}).openapi("DashboardFileCheck");

const CheckBodySchema = z.object({
  file: z.string().min(1).max(512),
  model: z.string().min(1).max(512),
  max_length: z.number().int().min(LIMITS.maxLength.min).max(LIMITS.maxLength.max).nullish(),
});

const overviewRoute = createRoute({
  method: "get",
  path: "/v1/dashboard",
  summary: "Dashboard overview: device, base models, loaded engines and memory, running job",
  security: [{ bearerAuth: [] }],
  responses: {
    200: { description: "The overview", content: { "application/json": { schema: OverviewSchema } } },
    401: errorResponses[401],
  },
});

const checkRoute = createRoute({
  method: "post",
  path: "/v1/dashboard/check_file",
  summary: "Validate a fine-tune file's lines for a model, as a job would",
  security: [{ bearerAuth: [] }],
  request: { body: { required: true, content: { "application/json": { schema: CheckBodySchema } } } },
  responses: {
    200: { description: "The check", content: { "application/json": { schema: FileCheckSchema } } },
    400: errorResponses[400],
    401: errorResponses[401],
    404: { description: "No such file", content: { "application/json": { schema: ErrorSchema } } },
  },
});

export function dashboardApiRoutes(deps: DashboardApiDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw fromZodError(result.error);
    },
  });
  const { registry } = deps;

  app.openapi(overviewRoute, (c) => {
    const usage = registry.pool.usage();
    return c.json({
      object: "dashboard.overview" as const,
      device: registry.bases.device,
      dtype: registry.bases.dtype,
      base_models: registry.bases.ids(),
      engines: registry.pool.ready().reverse().map((e) => {
        const s = e.loaded?.engine.stats();
        return {
          model: e.key,
          bytes: e.bytes,
          busy: e.busy(),
          queue_depth: s?.queueDepth ?? 0,
          active_sequences: s?.activeSequences ?? 0,
        };
      }),
      memory: {
        budget_bytes: registry.pool.budgetBytes,
        used_bytes: usage.usedBytes,
        draining_bytes: usage.drainingBytes,
      },
      running_job: deps.runningJob?.() ?? null,
    }, 200);
  });

  const fineTuning = deps.fineTuning;
  if (!fineTuning) return app;
  app.openapi(checkRoute, async (c) => {
    const body = c.req.valid("json");
    const { file, outcome, hyperparameters } = await fineTuning.checkFile(body.file, {
      model: body.model,
      maxLength: body.max_length ?? undefined,
    });
    const base = { object: "dashboard.file_check" as const, file: file.id, filename: file.filename };
    if (outcome.kind === "valid") {
      const t = outcome.train;
      return c.json({
        ...base,
        valid: true,
        examples: t.examples,
        tokens: t.tokens,
        trainable_tokens: t.trainableTokens,
        truncated: t.truncated,
        issue_count: 0,
        issues: [],
        error: null,
        hyperparameters: hyperparameters ? { ...hyperparameters } : null,
      }, 200);
    }
    const none = { examples: null, tokens: null, trainable_tokens: null, truncated: null, hyperparameters: null };
    if (outcome.kind === "error") {
      return c.json({ ...base, ...none, valid: false, issue_count: 0, issues: [], error: outcome.error.message }, 200);
    }
    return c.json({
      ...base,
      ...none,
      valid: false,
      issue_count: outcome.issueCount,
      issues: outcome.issues.map((i) => ({ line: i.line, code: i.code, message: i.message, param: i.param ?? null })),
      error: null,
    }, 200);
  });

  return app;
}
