/**
 * Admin API over model aliases (stable names clients send as `model`):
 *
 * - `PUT /v1/aliases/{name}` {target, reason?}: points the alias at a version
 *   (name or id) or a base model id. Synchronous: the target is loaded and
 *   validated first, and the answer (200) comes once this replica serves it;
 *   a target that fails validation answers 422 `validation_failed` and the
 *   old target keeps serving (the attempt is in the alias's `events`).
 * - `GET /v1/aliases`, `GET /v1/aliases/{name}` (with store `history`, newest
 *   first, and this replica's switch/rejection `events`).
 * - `POST /v1/aliases/{name}/rollback` {reason?}: back to the previous target
 *   (404 unknown alias, 409 `no_previous_target`).
 * - `PUT` with `evaluate` {metric?, must_beat?, min_improvement?, file?}:
 *   "evaluate, then switch": the target and the alias's current target are
 *   scored on one evaluation set (`file`, default the target's job's
 *   validation file) and the alias switches only when the target wins; the
 *   answer (`model.alias.evaluation`) carries the decision with both scores,
 *   which the history records too (a refusal is an `action: "refused"` row).
 *
 * Names: 1-64 of A-Z a-z 0-9 . _ - (no `:` or `/`, so never a version name or
 * hub id); an alias may not shadow a base model id or version (409).
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "./app_env.ts";
import { ApiError, fromZodError } from "./errors.ts";
import { promotionGate, resolvePromotion } from "../src/jobs/job_spec.ts";
import { authRoute, errorResponses, jsonError, jsonResponse } from "./openapi_common.ts";
import type { AliasEvent } from "../src/registry/hot_swap.ts";
import type { AliasCoordinator, AliasSwitch, GatedSwitch } from "../src/registry/hot_swap.ts";
import { type EvaluationData, GATE_METRICS, type PromotionDecision } from "../src/registry/types.ts";
import type { AliasHistoryEntry, AliasRecord } from "../src/store/alias_queries.ts";
import { gateFields } from "./fine_tuning_schemas.ts";

export interface AliasesDeps {
  coordinator: AliasCoordinator;
  /**
   * The evaluation set of an eval-gated switch to `target`: `file` if given, else the validation file of
   * the job that trained it. Without it, `evaluate` is refused (400).
   */
  evaluationData?: (target: string, file: string | null) => Promise<EvaluationData>;
}

const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

const TargetKind = z.enum(["version", "base_model"]);

const ScoreSchema = z.object({ model: z.string(), score: z.number().nullable() });

export const PromotionDecisionSchema = z.object({
  alias: z.string(),
  decision: z.enum(["switched", "refused", "unchanged"]).openapi({
    description: "switched: the alias points at the candidate now; refused: it kept its target; unchanged: it " +
      "already pointed at the candidate (nothing evaluated).",
  }),
  metric: z.enum(GATE_METRICS),
  must_beat: z.union([z.literal("current"), z.number()]),
  min_improvement: z.number(),
  candidate: ScoreSchema,
  incumbent: ScoreSchema.nullable().openapi({ description: "The alias's target when evaluated (null: none)." }),
  threshold: z.number().nullable().openapi({ description: "The value the candidate had to beat (null: none)." }),
  reason: z.string(),
  eval_set: z.object({ source: z.string(), examples: z.number().int(), tokens: z.number().int() }).nullable(),
}).openapi("PromotionDecision");

const HistoryEntrySchema = z.object({
  seq: z.number().int(),
  action: z.enum(["set", "rollback", "refused"]).openapi({
    description: "`refused`: an eval-gated switch kept the alias; `target` is the candidate it refused.",
  }),
  previous: z.string().nullable(),
  target: z.string(),
  target_kind: TargetKind,
  reason: z.string().nullable(),
  evaluation: PromotionDecisionSchema.nullable().openapi({
    description: "The gate's decision with both scores, when an evaluation decided this row.",
  }),
  at: z.number().int(),
});

const EventSchema = z.object({
  at: z.number(),
  type: z.enum(["switched", "rejected"]),
  action: z.enum(["set", "rollback", "sync"]),
  origin: z.enum(["api", "replica"]),
  from: z.string().nullable(),
  to: z.string(),
  reason: z.string().nullable(),
  load_ms: z.number().nullable(),
  validate_ms: z.number().nullable(),
  via: z.enum(["notify", "refresh"]).nullable().openapi({
    description: "For a replica's sync: whether the store's NOTIFY or the periodic refresh (a lost NOTIFY) started it.",
  }),
}).openapi({ description: "This replica's switch attempts (in memory, newest first)." });

export const AliasObjectSchema = z.object({
  object: z.literal("model.alias"),
  name: z.string(),
  target: z.string().openapi({
    description: "What the store says the alias points at (version name or base model id).",
  }),
  target_kind: TargetKind,
  version_id: z.string().nullable(),
  serving: z.string().nullable().openapi({
    description: "What this replica serves the alias with (lags `target` while a new target validates).",
  }),
  updated_at: z.number().int(),
  history: z.array(HistoryEntrySchema).optional(),
  events: z.array(EventSchema).optional(),
}).openapi("ModelAlias");

const SwitchSchema = AliasObjectSchema.extend({
  changed: z.boolean(),
  switch: EventSchema.nullable(),
}).openapi("ModelAliasSwitch");

const AliasListSchema = z.object({ object: z.literal("list"), data: z.array(AliasObjectSchema) }).openapi(
  "ModelAliasList",
);

const GatedSwitchSchema = z.object({
  object: z.literal("model.alias.evaluation"),
  name: z.string(),
  changed: z.boolean(),
  evaluation: PromotionDecisionSchema,
  alias: AliasObjectSchema.nullable().openapi({ description: "The alias now (null: refused before it existed)." }),
  switch: EventSchema.nullable(),
}).openapi("ModelAliasGatedSwitch");

const SetBodySchema = z.object({
  target: z.string().min(1).max(512).openapi({ description: "A version name or id, or a base model id." }),
  reason: z.string().max(1000).nullish(),
  evaluate: z.strictObject({
    ...gateFields,
    file: z.string().min(1).max(512).nullish().openapi({
      description: "A fine-tune file to score both on. Default: the validation file of the target's job.",
    }),
  }).nullish().openapi({
    description: "Evaluate, then switch: switch only if the target beats the alias's current target (or " +
      "`must_beat`) on the evaluation set.",
  }),
});
const RollbackBodySchema = z.object({ reason: z.string().max(1000).nullish() });
const NameParams = z.object({ name: z.string().min(1).openapi({ example: "prod" }) });

const setRoute = authRoute({
  method: "put",
  path: "/v1/aliases/{name}",
  summary: "Point an alias at a version or base model (hot-swap once validated)",
  request: { params: NameParams, body: { required: true, content: { "application/json": { schema: SetBodySchema } } } },
  responses: {
    200: jsonResponse(
      "The alias, now served with the target; with `evaluate`, the gate's decision " +
        "(`model.alias.evaluation`) and the alias as it stands",
      z.union([SwitchSchema, GatedSwitchSchema]),
    ),
    400: errorResponses[400],
    404: jsonError("No such version or base model"),
    409: jsonError("The alias would shadow a model id, or changed while an evaluation compared it"),
    422: jsonError("The target failed validation; the alias still serves its old target (`validation_failed`)"),
    503: jsonError("The target could not be loaded (`model_load_failed`)"),
  },
});

const listRoute = authRoute({
  method: "get",
  path: "/v1/aliases",
  summary: "List aliases",
  responses: { 200: jsonResponse("Every alias", AliasListSchema) },
});

const getRoute = authRoute({
  method: "get",
  path: "/v1/aliases/{name}",
  summary: "Retrieve an alias with its history and this replica's switch events",
  request: { params: NameParams },
  responses: { 200: jsonResponse("The alias", AliasObjectSchema), 404: jsonError("No such alias") },
});

const rollbackRoute = authRoute({
  method: "post",
  path: "/v1/aliases/{name}/rollback",
  summary: "Roll an alias back to its previous target",
  request: {
    params: NameParams,
    body: { required: false, content: { "application/json": { schema: RollbackBodySchema } } },
  },
  responses: {
    200: jsonResponse("The alias, now served with the previous target", SwitchSchema),
    404: jsonError("No such alias"),
    409: jsonError("Nothing to roll back to (`no_previous_target`)"),
    422: jsonError("The previous target failed validation; nothing changed (`validation_failed`)"),
  },
});

function aliasObject(a: AliasRecord, serving: string | null): z.infer<typeof AliasObjectSchema> {
  return {
    object: "model.alias",
    name: a.name,
    target: a.target,
    target_kind: a.kind,
    version_id: a.versionId,
    serving,
    updated_at: seconds(a.updatedAt),
  };
}

function historyEntry(h: AliasHistoryEntry): z.infer<typeof HistoryEntrySchema> {
  return {
    seq: h.seq,
    action: h.action,
    previous: h.previous?.target ?? null,
    target: h.next.target,
    target_kind: h.next.kind,
    reason: h.reason,
    evaluation: h.evaluation ? (h.evaluation as unknown as PromotionDecision) : null,
    at: seconds(h.at),
  };
}

function eventObject(e: AliasEvent): z.infer<typeof EventSchema> {
  return {
    at: e.at.getTime() / 1000,
    type: e.type,
    action: e.action,
    origin: e.origin,
    from: e.from,
    to: e.to,
    reason: e.reason,
    load_ms: e.loadMs,
    validate_ms: e.validateMs,
    via: e.via ?? null,
  };
}

function switchObject(s: AliasSwitch): z.infer<typeof SwitchSchema> {
  return { ...aliasObject(s.alias, s.serving), changed: s.changed, switch: s.event ? eventObject(s.event) : null };
}

async function gatedObject(
  coordinator: AliasCoordinator,
  name: string,
  g: GatedSwitch,
): Promise<z.infer<typeof GatedSwitchSchema>> {
  const alias = g.switch?.alias ?? await coordinator.get(name).catch(() => null);
  return {
    object: "model.alias.evaluation",
    name,
    changed: g.switch?.changed ?? false,
    evaluation: g.decision,
    alias: alias ? aliasObject(alias, coordinator.serving(name)) : null,
    switch: g.switch?.event ? eventObject(g.switch.event) : null,
  };
}

export function aliasesRoutes(deps: AliasesDeps): OpenAPIHono<AppEnv> {
  const { coordinator } = deps;
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw fromZodError(result.error);
    },
  });

  app.openapi(setRoute, async (c) => {
    const { name } = c.req.valid("param");
    const body = c.req.valid("json");
    if (!body.evaluate) return c.json(switchObject(await coordinator.set(name, body.target, body.reason ?? null)), 200);
    const ev = body.evaluate;
    if (!deps.evaluationData || !coordinator.canEvaluate) {
      throw new ApiError(400, "This server cannot evaluate models", "invalid_request_error", "evaluate");
    }
    const data = await deps.evaluationData(body.target, ev.file ?? null);
    const gated = await coordinator.promote(
      name,
      body.target,
      promotionGate(resolvePromotion({ alias: name, ...ev })),
      data,
      body.reason ?? null,
    );
    return c.json(await gatedObject(coordinator, name, gated), 200);
  });

  app.openapi(listRoute, async (c) => {
    const rows = await coordinator.list();
    return c.json({ object: "list" as const, data: rows.map((a) => aliasObject(a, coordinator.serving(a.name))) }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { name } = c.req.valid("param");
    const alias = await coordinator.get(name);
    const history = await coordinator.history(name);
    return c.json({
      ...aliasObject(alias, coordinator.serving(name)),
      history: history.data.map(historyEntry),
      events: coordinator.events(name).map(eventObject),
    }, 200);
  });

  app.openapi(rollbackRoute, async (c) => {
    const { name } = c.req.valid("param");
    // The body is optional: without a JSON content type the validator hands over {}.
    const { reason } = c.req.valid("json");
    return c.json(switchObject(await coordinator.rollback(name, reason ?? null)), 200);
  });

  return app;
}
