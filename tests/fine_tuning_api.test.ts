/**
 * /v1/fine_tuning over `app.request` with the real store, files, runner and
 * validation, and a scripted trainer (ScriptedBackend: metrics and
 * checkpoints on a timer, abortable) so every state is reachable quickly:
 * create (resolved hyperparameters, "auto"), list/retrieve, bad inputs → 4xx
 * naming the param, per-line validation failures, cancel/pause/resume,
 * events pages and the SSE stream, checkpoints, the OpenAI client.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { FilePurpose, FileRecord } from "../src/store/file_queries.ts";
import { FileService } from "../src/store/file_service.ts";
import { BlobStore } from "../src/store/blob_store.ts";
import { openStore } from "../src/store/store.ts";
import { FineTuningService } from "../src/jobs/fine_tuning_service.ts";
import { BASE_LEARNING_RATE } from "../src/jobs/job_spec.ts";
import {
  baseModels,
  facts,
  MemorySink,
  ScriptedBackend,
  TERMINAL,
  tinyModel,
  uploadText,
  waitFor,
  waitForStatus,
  wireFineTuning,
} from "./helpers/fine_tuning.ts";

type Json = Record<string, unknown>;

Deno.test("fine-tuning API", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "fine_tuning_api_test_" });
  const model = await tinyModel(`${root}/model`);
  const dataDir = `${root}/data`;
  const store = await openStore({ dataDir, databaseUrl: null });
  const sink = new MemorySink();
  const backend = new ScriptedBackend({ steps: 6, stepMs: 10, checkpointEvery: 3 });
  const w = await wireFineTuning(store, {
    dataDir,
    sink,
    baseModels: baseModels({ tiny: model }),
    backend,
    pollMs: 50,
    log: () => {},
  });
  await w.runner.start();
  const { app } = w;

  const post = (path: string, body?: unknown, headers: Record<string, string> = {}) =>
    app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  const get = (path: string, headers?: Record<string, string>) => app.request(path, { headers });
  async function ok(res: Response): Promise<Json> {
    assert.equal(res.status, 200, await res.clone().text());
    return await res.json();
  }
  async function expectError(res: Response, status: number, param: string | null, code?: string | null) {
    const text = await res.clone().text();
    assert.equal(res.status, status, text);
    const body = await res.json();
    assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"], text);
    assert.equal(body.error.param, param, text);
    if (code !== undefined) assert.equal(body.error.code, code, text);
    assert.ok(body.error.message.length > 0);
    return body.error as { message: string; code: string | null };
  }
  const trainingFile = await uploadText(app, facts(24));
  const validationFile = await uploadText(app, facts(4, 100), "valid.jsonl");
  const job = (extra: Json = {}) => ({ model: "tiny", training_file: trainingFile, ...extra });
  const hp = (h: Json) => ({ method: { type: "supervised", supervised: { hyperparameters: h } } });
  const finished = (id: string) => waitForStatus(store, id, TERMINAL);

  try {
    await t.step("create resolves every hyperparameter; the job runs to succeeded", async () => {
      const created = await ok(
        await post(
          "/v1/fine_tuning/jobs",
          job({
            validation_file: validationFile,
            suffix: "my-model-1",
            seed: 42,
            metadata: { team: "a" },
            ...hp({
              n_epochs: 2,
              batch_size: 4,
              learning_rate_multiplier: 0.5,
              rank: 4,
              scaling: "scalar",
              lipschitz: 3,
            }),
          }),
        ),
      );
      assert.equal(created.object, "fine_tuning.job");
      assert.match(created.id as string, /^ftjob-/);
      assert.equal(created.status, "validating_files");
      assert.equal(created.model, "tiny");
      assert.equal(created.training_file, trainingFile);
      assert.equal(created.validation_file, validationFile);
      assert.equal(created.seed, 42);
      assert.equal(created.user_provided_suffix, "my-model-1");
      assert.deepEqual(created.metadata, { team: "a" });
      assert.equal(created.fine_tuned_model, null);
      assert.equal(created.error, null);
      const resolved = {
        n_epochs: 2,
        batch_size: 4,
        learning_rate_multiplier: 0.5,
        rank: 4,
        alpha: 8,
        scaling: "scalar",
        interval: 10,
        lipschitz: 3,
        merge_split: "larger",
        lr_boost: 2,
        target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        max_length: 512,
        checkpoint_every: 6,
      };
      assert.deepEqual(created.hyperparameters, resolved);
      assert.deepEqual(created.method, { type: "supervised", supervised: { hyperparameters: resolved } });

      const done = await finished(created.id as string);
      assert.equal(done.status, "succeeded", JSON.stringify(done.error));
      const opts = backend.runs.at(-1)!;
      assert.equal(opts.method, "scalora-scalar");
      assert.equal(opts.learningRate, 0.5 * BASE_LEARNING_RATE);
      assert.equal(opts.seed, 42);
      assert.equal(opts.lipschitz, 3);
      assert.equal(opts.resume, true);
      assert.ok(opts.validationText?.includes("="));
      const got = await ok(await get(`/v1/fine_tuning/jobs/${created.id}`));
      assert.equal(got.status, "succeeded");
      assert.equal(got.fine_tuned_model, `ft:tiny:my-model-1:${created.id}`);
      assert.equal(got.trained_tokens, 60);
      assert.equal(typeof got.finished_at, "number");
    });

    await t.step('"auto" and the legacy top-level hyperparameters', async () => {
      // 24 examples: epochs raised to reach 100 examples (5), batch 1 (0.2%), one checkpoint per epoch (24 steps).
      const auto = await ok(await post("/v1/fine_tuning/jobs", job(hp({ n_epochs: "auto", batch_size: "auto" }))));
      const h = auto.hyperparameters as Json;
      assert.deepEqual([h.n_epochs, h.batch_size, h.learning_rate_multiplier, h.checkpoint_every], [5, 1, 1, 24]);
      assert.equal(typeof auto.seed, "number");
      const legacy = await ok(await post("/v1/fine_tuning/jobs", job({ hyperparameters: { n_epochs: 7 } })));
      assert.equal((legacy.hyperparameters as Json).n_epochs, 7);
      await expectError(
        await post("/v1/fine_tuning/jobs", job({ hyperparameters: { n_epochs: 7 }, ...hp({ n_epochs: 2 }) })),
        400,
        "hyperparameters",
        "conflicting_parameters",
      );
      // The auto L's split: the default when left out, passed to fineTune as the rule's split.
      const split = await ok(await post("/v1/fine_tuning/jobs", job(hp({ merge_split: "solve" }))));
      assert.equal((split.hyperparameters as Json).lipschitz, "auto");
      assert.equal((split.hyperparameters as Json).merge_split, "solve");
      assert.equal((auto.hyperparameters as Json).merge_split, "larger");
      // The lr boost's cap likewise (1 turns it off).
      const off = await ok(await post("/v1/fine_tuning/jobs", job(hp({ lr_boost: 1 }))));
      assert.equal((off.hyperparameters as Json).lr_boost, 1);
      assert.equal((auto.hyperparameters as Json).lr_boost, 2);
      for (const j of [auto, legacy, split, off]) await finished(j.id as string);
      const runs = backend.runs.slice(-4);
      assert.ok(runs.some((o) => JSON.stringify(o.lipschitz) === '{"split":"solve"}'), JSON.stringify(runs));
      assert.ok(runs.some((o) => JSON.stringify(o.lipschitz) === '{"lrBoost":1}'), JSON.stringify(runs));
      assert.ok(runs.some((o) => o.lipschitz === "auto"), "the default split stays plain auto");
    });

    await t.step("bad inputs are 4xx naming the parameter, never 5xx", async () => {
      const jobs = "/v1/fine_tuning/jobs";
      await expectError(await post(jobs, job({ model: "gpt-9" })), 400, "model", "model_not_available");
      await expectError(await post(jobs, job({ training_file: "file-nope" })), 400, "training_file", "invalid_file_id");
      await expectError(
        await post(jobs, job({ validation_file: "file-nope" })),
        400,
        "validation_file",
        "invalid_file_id",
      );
      const deleted = await uploadText(app, facts(2));
      await ok(await app.request(`/v1/files/${deleted}`, { method: "DELETE" }));
      await expectError(await post(jobs, job({ training_file: deleted })), 400, "training_file", "invalid_file_id");
      for (const suffix of ["../../etc", "a/b", "UPPER", "x".repeat(65), "", "dot.dot"]) {
        await expectError(await post(jobs, job({ suffix })), 400, "suffix");
      }
      const hpParam = "method.supervised.hyperparameters";
      const badHp: [Json, string][] = [
        [{ n_epochs: 0 }, "n_epochs"],
        [{ n_epochs: 1.5 }, "n_epochs"],
        [{ batch_size: "big" }, "batch_size"],
        [{ learning_rate_multiplier: -1 }, "learning_rate_multiplier"],
        [{ rank: 0 }, "rank"],
        [{ alpha: 0 }, "alpha"],
        [{ scaling: "rows" }, "scaling"],
        [{ interval: 0 }, "interval"],
        [{ lipschitz: "high" }, "lipschitz"],
        [{ merge_split: "even" }, "merge_split"],
        [{ lr_boost: 0.5 }, "lr_boost"],
        [{ lr_boost: 11 }, "lr_boost"],
        [{ lr_boost: "auto" }, "lr_boost"],
        [{ target_modules: ["lm_head"] }, "target_modules[0]"],
        [{ target_modules: [] }, "target_modules"],
        [{ max_length: 4 }, "max_length"],
        [{ checkpoint_every: -1 }, "checkpoint_every"],
        [{ n_epoch: 3 }, "n_epoch"],
      ];
      for (const [h, param] of badHp) {
        const e = await expectError(await post(jobs, job(hp(h))), 400, `${hpParam}.${param}`);
        assert.ok(e.message.includes(param.replace(/\[0\]$/, "")), e.message);
      }
      await expectError(await post(jobs, job({ hyperparameters: { rank: -2 } })), 400, "hyperparameters.rank");
      await expectError(
        await post(jobs, job({ method: { type: "dpo" } })),
        400,
        "method.type",
        "unsupported_parameter",
      );
      await expectError(await post(jobs, job({ method: { type: "ppo" } })), 400, "method.type");
      await expectError(await post(jobs, job({ seed: -1 })), 400, "seed");
      await expectError(await post(jobs, job({ frobnicate: true })), 400, "frobnicate");
      await expectError(await post(jobs, job({ integrations: [{ type: "wandb" }] })), 400, "integrations");
      await expectError(await post(jobs, job({ promote_to_alias: "bad alias!" })), 400, "promote_to_alias");
      await expectError(await post(jobs, { model: "tiny" }), 400, "training_file");
      await expectError(await post(jobs, "{not json"), 400, null);
      await expectError(await post(jobs, "[1,2]"), 400, null);

      // Wrong purpose: the upload API only takes fine-tune files, so the service sees a file that claims another.
      const files = new FileService(store, await BlobStore.open(`${dataDir}/files`));
      const otherPurpose = Object.assign(files, {
        get: async (id: string): Promise<FileRecord> => ({
          ...await FileService.prototype.get.call(files, id),
          purpose: "assistants" as unknown as FilePurpose,
        }),
      });
      const service = new FineTuningService({
        store,
        files: otherPurpose,
        journal: w.journal,
        control: w.runner,
        baseModels: baseModels({ tiny: model }),
      });
      await assert.rejects(
        service.create({ model: "tiny", training_file: trainingFile }),
        (e: Error & { code?: string; param?: string }) =>
          e.code === "invalid_file_purpose" && e.param === "training_file" && /purpose 'assistants'/.test(e.message),
      );
      assert.equal((await store.jobs.list({ limit: 100 })).data.length, 5, "no job was created by a bad request");
    });

    await t.step("each bad line fails its job with the line's code, message and param", async () => {
      const cases: [string, string, string][] = [
        ["{not json", "invalid_json", "training_file"],
        ["[1, 2]", "data_type", "training_file"],
        ['{"foo": 1}', "missing_prompt", "training_file"],
        ['{"prompt": "x="}', "missing_completion", "training_file"],
        ['{"prompt": "x=", "completion": ""}', "missing_completion", "training_file"],
        [
          '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
          "mixed_formats",
          "training_file",
        ],
      ];
      const ids: string[] = [];
      for (const [line] of cases) {
        const file = await uploadText(app, facts(2) + line + "\n");
        ids.push((await ok(await post("/v1/fine_tuning/jobs", job({ training_file: file })))).id as string);
      }
      const badValidation = await uploadText(app, "{oops\n");
      const v = await ok(await post("/v1/fine_tuning/jobs", job({ validation_file: badValidation })));
      ids.push(v.id as string);
      cases.push(["{oops", "invalid_json", "validation_file"]);
      for (const [i, id] of ids.entries()) {
        const [, code, param] = cases[i];
        const failed = await finished(id);
        const body = await ok(await get(`/v1/fine_tuning/jobs/${id}`));
        assert.equal(failed.status, "failed");
        const error = body.error as Json;
        assert.equal(error.code, code, JSON.stringify(error));
        assert.equal(error.param, param);
        assert.match(error.message as string, new RegExp(`^${param}: line ${param === "training_file" ? 3 : 1}:`));
      }
    });

    await t.step("cancel, pause and resume follow the job's status", async () => {
      backend.opts.steps = 200;
      backend.opts.stepMs = 10;
      const runs = backend.runs.length;
      const created = await ok(await post("/v1/fine_tuning/jobs", job()));
      const id = created.id as string;
      await waitFor("metrics", async () => (await store.events.list(id, { limit: 1 })).data[0]?.type === "metrics");
      await expectError(
        await post(`/v1/fine_tuning/jobs/${id}/resume`),
        409,
        "fine_tuning_job_id",
        "invalid_transition",
      );
      const paused = await ok(await post(`/v1/fine_tuning/jobs/${id}/pause`));
      assert.equal(paused.status, "paused");
      await expectError(await post(`/v1/fine_tuning/jobs/${id}/pause`), 409, "fine_tuning_job_id");
      await waitFor("the run to stop", () => Promise.resolve(w.runner.activeJob === null));
      const resumed = await ok(await post(`/v1/fine_tuning/jobs/${id}/resume`));
      assert.equal(resumed.status, "queued");
      await waitFor("running again", async () => (await store.jobs.get(id)).status === "running");
      // A client that goes away mid-stream: the watch stops with it (the test's op sanitizer would see a leak).
      const live = await get(`/v1/fine_tuning/jobs/${id}/events?stream=true`);
      const reader = live.body!.getReader();
      assert.match(new TextDecoder().decode((await reader.read()).value), /fine_tuning\.job\.event/);
      await reader.cancel();
      const cancelled = await ok(await post(`/v1/fine_tuning/jobs/${id}/cancel`));
      assert.equal(cancelled.status, "cancelled");
      await expectError(await post(`/v1/fine_tuning/jobs/${id}/cancel`), 409, "fine_tuning_job_id");
      await waitFor("the run to stop", () => Promise.resolve(w.runner.activeJob === null));
      assert.equal(backend.runs.length, runs + 2, "resume started a second run of the same job");
      assert.equal(backend.runs[runs].checkpointDir, backend.runs[runs + 1].checkpointDir);
      const log = (await store.events.list(id, { limit: 1000, order: "asc" })).data.map((e) => e.message);
      assert.ok(log.some((m) => m.startsWith("Training paused at step")), log.join("\n"));
      assert.ok(log.some((m) => m.startsWith("scripted run from step ") && !m.endsWith(" 0")), "resumed mid-run");

      // Cancelling a job before it runs.
      backend.opts.steps = 6;
      const early = await ok(await post("/v1/fine_tuning/jobs", job()));
      assert.equal((await ok(await post(`/v1/fine_tuning/jobs/${early.id}/cancel`))).status, "cancelled");
      await expectError(await post("/v1/fine_tuning/jobs/ftjob-nope/cancel"), 404, "fine_tuning_job_id");
      await expectError(await get("/v1/fine_tuning/jobs/ftjob-nope"), 404, "fine_tuning_job_id");
    });

    await t.step("jobs list: newest first, paginated with after/limit", async () => {
      const all = await ok(await get("/v1/fine_tuning/jobs?limit=100"));
      const ids = (all.data as Json[]).map((j) => j.id as string);
      assert.ok(ids.length >= 10);
      const first = await ok(await get("/v1/fine_tuning/jobs?limit=3"));
      assert.equal(first.object, "list");
      assert.equal(first.has_more, true);
      assert.deepEqual((first.data as Json[]).map((j) => j.id), ids.slice(0, 3));
      const next = await ok(await get(`/v1/fine_tuning/jobs?limit=3&after=${first.last_id}`));
      assert.deepEqual((next.data as Json[]).map((j) => j.id), ids.slice(3, 6));
      await expectError(await get("/v1/fine_tuning/jobs?after=ftjob-nope"), 400, "after");
      await expectError(await get("/v1/fine_tuning/jobs?limit=0"), 400, "limit");
    });

    await t.step(
      "events: pages newest first; the SSE stream replays, follows and ends at the terminal status",
      async () => {
        const created = await ok(await post("/v1/fine_tuning/jobs", job()));
        const id = created.id as string;
        // Open the stream at once: it must follow the job live to the end.
        const res = await get(`/v1/fine_tuning/jobs/${id}/events?stream=true`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
        const text = await res.text();
        const frames = text.split("\n\n").filter((f) => f.trim() !== "");
        assert.equal(frames.at(-1), "data: [DONE]");
        const streamed = frames.slice(0, -1).map((f) => {
          const sseId = /^id: (.+)$/m.exec(f)?.[1];
          const data = JSON.parse(/^data: (.+)$/m.exec(f)![1]) as Json;
          assert.equal(data.id, sseId);
          return data;
        });
        assert.equal(streamed[0].message, `Created fine-tuning job: ${id}`);
        assert.equal((streamed.at(-1)!.data as Json).status, "succeeded");
        const metrics = streamed.filter((e) => e.type === "metrics");
        assert.equal(metrics.length, 6);
        const m = metrics[5].data as Json;
        assert.equal(m.step, 6);
        assert.equal(m.valid_loss, 0.5);
        assert.deepEqual(m.scaling, { columnwise_share: 1, mean_alpha_beta: 0.9, update_rank: 12 });
        for (const e of streamed) {
          assert.deepEqual(Object.keys(e).sort(), ["created_at", "data", "id", "level", "message", "object", "type"]);
          assert.equal(e.object, "fine_tuning.job.event");
        }

        // The page API: the same events, newest first, in pages.
        const ids = streamed.map((e) => e.id as string).reverse();
        const page1 = await ok(await get(`/v1/fine_tuning/jobs/${id}/events?limit=4`));
        assert.equal(page1.has_more, true);
        assert.deepEqual((page1.data as Json[]).map((e) => e.id), ids.slice(0, 4));
        const page2 = await ok(await get(`/v1/fine_tuning/jobs/${id}/events?limit=4&after=${page1.last_id}`));
        assert.deepEqual((page2.data as Json[]).map((e) => e.id), ids.slice(4, 8));
        const everything = await ok(await get(`/v1/fine_tuning/jobs/${id}/events?limit=1000`));
        assert.equal(everything.has_more, false);
        assert.ok((everything.data as Json[]).length >= ids.length);

        // Reconnecting with Last-Event-ID replays only what came after it (the job is done: it ends at once).
        const again = await get(`/v1/fine_tuning/jobs/${id}/events?stream=true`, { "last-event-id": ids[3] });
        const replayed = (await again.text()).split("\n\n").map((f) => /^id: (.+)$/m.exec(f)?.[1]).filter(Boolean);
        assert.deepEqual(replayed, ids.slice(0, 3).reverse());
        // From the newest event of a finished job: nothing to replay, and it ends at once (not after the grace period).
        const started = performance.now();
        const tail = await (await get(`/v1/fine_tuning/jobs/${id}/events?stream=true&after=${ids[0]}`)).text();
        assert.equal(tail.trim(), "data: [DONE]");
        assert.ok(performance.now() - started < 5000);

        await expectError(await get(`/v1/fine_tuning/jobs/${id}/events?after=ftevent-nope`), 400, "after");
        await expectError(await get(`/v1/fine_tuning/jobs/${id}/events?stream=true&after=ftevent-nope`), 400, "after");
        await expectError(await get("/v1/fine_tuning/jobs/ftjob-nope/events"), 404, "fine_tuning_job_id");
        await expectError(await get("/v1/fine_tuning/jobs/ftjob-nope/events?stream=true"), 404, "fine_tuning_job_id");
        await expectError(await get(`/v1/fine_tuning/jobs/${id}/events?stream=yes`), 400, "stream");
      },
    );

    await t.step("checkpoints: OpenAI shape, named <fine_tuned_model>:ckpt-step-N", async () => {
      const created = await ok(await post("/v1/fine_tuning/jobs", job({ suffix: "ck" })));
      const id = created.id as string;
      await finished(id);
      const list = await ok(await get(`/v1/fine_tuning/jobs/${id}/checkpoints`));
      const data = list.data as Json[];
      assert.deepEqual(data.map((c) => c.step_number), [6, 3]);
      const ft = `ft:tiny:ck:${id}`;
      assert.deepEqual(data[0], {
        id: data[0].id,
        object: "fine_tuning.job.checkpoint",
        created_at: data[0].created_at,
        fine_tuned_model_checkpoint: `${ft}:ckpt-step-6`,
        step_number: 6,
        metrics: { step: 6, train_loss: 1 / 6, train_mean_token_accuracy: 0.5, trained_tokens: 60 },
        fine_tuning_job_id: id,
      });
      assert.equal(sink.versions.get(`${ft}:ckpt-step-3`)?.kind, "checkpoint");
      const page = await ok(await get(`/v1/fine_tuning/jobs/${id}/checkpoints?limit=1&after=${data[0].id}`));
      assert.deepEqual((page.data as Json[]).map((c) => c.step_number), [3]);
      await expectError(await get("/v1/fine_tuning/jobs/ftjob-nope/checkpoints"), 404, "fine_tuning_job_id");
    });

    await t.step("a registry failure fails the job; promote_to_alias points the alias on success", async () => {
      sink.fail = (name) => !name.includes("ckpt");
      const failing = await ok(await post("/v1/fine_tuning/jobs", job()));
      const failed = await finished(failing.id as string);
      assert.equal(failed.status, "failed");
      assert.equal(failed.error?.code, "registry_error");
      sink.fail = null;
      const promoted = await ok(await post("/v1/fine_tuning/jobs", job({ promote_to_alias: "prod", suffix: "p" })));
      assert.equal(promoted.promote_to_alias, "prod");
      await finished(promoted.id as string);
      assert.equal(sink.aliases.get("prod"), `ft:tiny:p:${promoted.id}`);
    });

    await t.step("the OpenAI client drives the API", async () => {
      const client = new OpenAI({
        apiKey: "test",
        baseURL: "http://localhost/v1",
        maxRetries: 0,
        fetch: (url, init) => Promise.resolve(app.request(String(url), init as RequestInit)),
      });
      const created = await client.fineTuning.jobs.create({
        model: "tiny",
        training_file: trainingFile,
        method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1, batch_size: 8 } } },
      });
      assert.equal(created.status, "validating_files");
      await finished(created.id);
      const job = await client.fineTuning.jobs.retrieve(created.id);
      assert.equal(job.status, "succeeded");
      assert.equal(job.hyperparameters.n_epochs, 1);
      const events = await client.fineTuning.jobs.listEvents(created.id, { limit: 50 });
      assert.ok(events.data.some((e) => e.type === "metrics"));
      const checkpoints = await client.fineTuning.jobs.checkpoints.list(created.id);
      assert.equal(checkpoints.data[0].fine_tuned_model_checkpoint, `${job.fine_tuned_model}:ckpt-step-6`);
      const page = await client.fineTuning.jobs.list({ limit: 2 });
      assert.equal(page.data.length, 2);
      try {
        await client.fineTuning.jobs.create({ model: "nope", training_file: trainingFile });
        assert.fail("expected a 400");
      } catch (e) {
        assert.ok(e instanceof OpenAI.BadRequestError, String(e));
        assert.equal(e.param, "model");
      }
    });

    await t.step("the routes are in the OpenAPI document", () => {
      const doc = app.getOpenAPIDocument({ openapi: "3.0.0", info: { title: "t", version: "1" } });
      for (
        const path of [
          "/v1/fine_tuning/jobs",
          "/v1/fine_tuning/jobs/{fine_tuning_job_id}",
          "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
          "/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause",
          "/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume",
          "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
          "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
        ]
      ) assert.ok(doc.paths?.[path], path);
      assert.ok(JSON.stringify(doc).includes("about 0.2% of the training examples"), "auto is documented");
    });
  } finally {
    await w.runner.stop();
    await store.close();
    await Deno.remove(root, { recursive: true });
  }
});
