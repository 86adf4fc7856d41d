/**
 * OpenAI `/v1/fine_tuning/jobs`: create, list, retrieve, cancel, pause,
 * resume, events (a page, or with `stream=true` a live SSE stream that ends
 * when the job is terminal), and checkpoints. The domain lives in
 * src/jobs/fine_tuning_service.ts; this file checks shapes and renders.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppEnv } from "./app_env.ts";
import { ApiError, fromZodError, paramPath, toApiError } from "./errors.ts";
import {
  checkpointObject,
  CreateJobSchema,
  eventObject,
  FineTuningCheckpointSchema,
  FineTuningEventSchema,
  FineTuningJobSchema,
  jobObject,
  listObject,
  listOf,
} from "./fine_tuning_schemas.ts";
import { authRoute, errorResponses, jsonError, jsonResponse } from "./openapi_common.ts";
import type { WatchItem } from "../src/jobs/job_events.ts";
import type { FineTuningService } from "../src/jobs/fine_tuning_service.ts";

export interface FineTuningDeps {
  service: FineTuningService;
  /** SSE keep-alive comment after this long without events. Default 15 s. */
  keepAliveMs?: number;
}

/** Like `fromZodError`, but an unknown field is named as the param (OpenAI: "Unrecognized request argument"). */
function requestError(error: z.ZodError): ApiError {
  const issue = error.issues[0];
  if (issue?.code === "unrecognized_keys") {
    const param = paramPath([...issue.path, issue.keys[0]]);
    return new ApiError(400, `Unrecognized request argument supplied: ${param}`, "invalid_request_error", param);
  }
  return fromZodError(error);
}

// ---------- schemas ----------

const JobIdParams = z.object({ fine_tuning_job_id: z.string().min(1).openapi({ example: "ftjob-abc123" }) });

const pageQuery = (defaultLimit: number, maxLimit: number) => ({
  after: z.string().min(1).optional().openapi({ description: "Cursor: the id of the last item of the previous page." }),
  limit: z.coerce.number().int().min(1).max(maxLimit).default(defaultLimit),
});

const EventsQuery = z.object({
  ...pageQuery(20, 1000),
  stream: z.enum(["true", "false"]).optional().openapi({
    description: "`true`: a live `text/event-stream` of events, oldest first from `after` (or `Last-Event-ID`), " +
      "each `data:` a fine_tuning.job.event with its id as the SSE id; it ends with `data: [DONE]` once the job " +
      "is succeeded, failed or cancelled.",
  }),
});

const JobListSchema = listOf(FineTuningJobSchema, "FineTuningJobList");
const EventListSchema = listOf(FineTuningEventSchema, "FineTuningJobEventList");
const CheckpointListSchema = listOf(FineTuningCheckpointSchema, "FineTuningJobCheckpointList");

const err404 = jsonError("No such fine-tuning job");
const err409 = jsonError("The job's status does not allow this (e.g. pausing a job that is not running)");
const jobResponse = (description: string) => jsonResponse(description, FineTuningJobSchema);

const createJob = authRoute({
  method: "post",
  path: "/v1/fine_tuning/jobs",
  summary: "Create a fine-tuning job",
  description: "Checks the model and files, resolves the hyperparameters and queues the job (status " +
    "`validating_files`: the files' lines are validated next; a bad line fails the job with `error`).",
  request: { body: { required: true, content: { "application/json": { schema: CreateJobSchema } } } },
  responses: {
    200: jobResponse("The job"),
    400: jsonError(
      "Invalid parameters: `param` names the field (unknown model: `model_not_available`; file: " +
        "`invalid_file_id`, `invalid_file_purpose`)",
    ),
  },
});

const listJobs = authRoute({
  method: "get",
  path: "/v1/fine_tuning/jobs",
  summary: "List fine-tuning jobs (newest first)",
  request: { query: z.object(pageQuery(20, 100)) },
  responses: { 200: jsonResponse("A page of jobs", JobListSchema), 400: errorResponses[400] },
});

const getJob = authRoute({
  method: "get",
  path: "/v1/fine_tuning/jobs/{fine_tuning_job_id}",
  summary: "Retrieve a fine-tuning job",
  request: { params: JobIdParams },
  responses: { 200: jobResponse("The job"), 404: err404 },
});

const action = (verb: "cancel" | "pause" | "resume", summary: string) =>
  authRoute({
    method: "post",
    path: `/v1/fine_tuning/jobs/{fine_tuning_job_id}/${verb}`,
    summary,
    request: { params: JobIdParams },
    responses: { 200: jobResponse("The job after the change"), 404: err404, 409: err409 },
  });

const cancelJob = action("cancel", "Cancel a job (any status but succeeded, failed, cancelled)");
const pauseJob = action("pause", "Pause a running job (it stops after the current step and saves a checkpoint)");
const resumeJob = action("resume", "Resume a paused job (queued again; continues from its checkpoint)");

const listEvents = authRoute({
  method: "get",
  path: "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
  summary: "List a job's events (newest first), or stream them live",
  request: { params: JobIdParams, query: EventsQuery },
  responses: {
    200: {
      description: "A page of events, or with `stream=true` an SSE stream of events",
      content: {
        "application/json": { schema: EventListSchema },
        "text/event-stream": { schema: FineTuningEventSchema },
      },
    },
    400: errorResponses[400],
    404: err404,
  },
});

const listCheckpoints = authRoute({
  method: "get",
  path: "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
  summary: "List a job's checkpoints (newest first)",
  description: "Each checkpoint is also a model version `<fine_tuned_model>:ckpt-step-N`.",
  request: { params: JobIdParams, query: z.object(pageQuery(10, 100)) },
  responses: {
    200: jsonResponse("A page of checkpoints", CheckpointListSchema),
    400: errorResponses[400],
    404: err404,
  },
});

// ---------- helpers ----------

function streamEvents(c: Context<AppEnv>, items: AsyncGenerator<WatchItem>, stop: AbortController): Response {
  // Mounted in the app, the request log waits for the stream; mounted alone (tests) there is no record.
  const record = c.get("record") as AppEnv["Variables"]["record"] | undefined;
  let ended = () => {};
  if (record) record.streamEnded = new Promise<void>((resolve) => (ended = resolve));
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => stop.abort());
    try {
      for await (const item of items) {
        if (item.kind === "idle") await stream.write(": keep-alive\n\n");
        else await stream.writeSSE({ id: item.event.id, data: JSON.stringify(eventObject(item.event)) });
      }
      if (!stream.aborted) await stream.writeSSE({ data: "[DONE]" });
    } catch (e) {
      if (stream.aborted) return;
      const err = toApiError(e);
      if (err.status >= 500) console.error(e);
      if (record) record.streamError = err.message;
      await stream.writeSSE({ data: JSON.stringify(err.body) });
    } finally {
      stop.abort();
      await items.return(undefined);
      ended();
    }
  });
}

// ---------- router ----------

export function fineTuningRoutes(deps: FineTuningDeps): OpenAPIHono<AppEnv> {
  const { service } = deps;
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw requestError(result.error);
    },
  });

  app.openapi(createJob, async (c) => c.json(jobObject(await service.create(c.req.valid("json"))), 200));

  app.openapi(listJobs, async (c) => {
    const q = c.req.valid("query");
    const page = await service.list({ after: q.after, limit: q.limit, order: "desc" });
    return c.json(listObject(page.data.map(jobObject), page.hasMore), 200);
  });

  app.openapi(
    getJob,
    async (c) => c.json(jobObject(await service.get(c.req.valid("param").fine_tuning_job_id)), 200),
  );

  app.openapi(
    cancelJob,
    async (c) => c.json(jobObject(await service.cancel(c.req.valid("param").fine_tuning_job_id)), 200),
  );
  app.openapi(
    pauseJob,
    async (c) => c.json(jobObject(await service.pause(c.req.valid("param").fine_tuning_job_id)), 200),
  );
  app.openapi(
    resumeJob,
    async (c) => c.json(jobObject(await service.resume(c.req.valid("param").fine_tuning_job_id)), 200),
  );

  app.openapi(listEvents, async (c) => {
    const id = c.req.valid("param").fine_tuning_job_id;
    const q = c.req.valid("query");
    if (q.stream === "true") {
      const stop = new AbortController();
      const after = q.after ?? c.req.header("last-event-id") ?? null;
      const items = await service.watch(id, { after, signal: stop.signal, idleMs: deps.keepAliveMs });
      return streamEvents(c, items, stop);
    }
    const page = await service.events(id, { after: q.after, limit: q.limit });
    return c.json(listObject(page.data.map(eventObject), page.hasMore), 200);
  });

  app.openapi(listCheckpoints, async (c) => {
    const q = c.req.valid("query");
    const page = await service.checkpoints(c.req.valid("param").fine_tuning_job_id, q);
    return c.json(listObject(page.data.map(checkpointObject), page.hasMore), 200);
  });

  return app;
}
