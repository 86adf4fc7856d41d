/**
 * The job runner with real training (tiny Llama, WorkerBackend): a job end
 * to end (events, checkpoints, versions, cleanup), pause + resume and
 * cancel mid-run, an expired lease reclaimed, and a restart re-queueing the
 * jobs this owner held (and failing one that keeps crashing).
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import type { JobRecord } from "../src/store/job_queries.ts";
import { openStore } from "../src/store/store.ts";
import type { CreateJobInput } from "../src/jobs/fine_tuning_service.ts";
import { JobRunner } from "../src/jobs/job_runner.ts";
import { resolveHyperparameters, storedMethod } from "../src/jobs/job_spec.ts";
import type { TrainEvent } from "../src/jobs/job_worker_protocol.ts";
import { type TrainingBackend, WorkerBackend } from "../src/jobs/training_backend.ts";
import {
  baseModels,
  deltaDifference,
  facts,
  MemorySink,
  tinyModel,
  uploadText,
  waitFor,
  waitForStatus,
  wireFineTuning,
} from "./helpers/fine_tuning.ts";

const HP = {
  n_epochs: 2,
  batch_size: 4,
  learning_rate_multiplier: 50, // 1e-2: visible progress in a dozen steps
  rank: 2,
  alpha: 4,
  scaling: "column" as const,
  interval: 2,
  max_length: 32,
  checkpoint_every: 4,
};
/** 24 examples / batch 4 = 6 steps per epoch, 12 steps, checkpoints at 4, 8, 12. */
const EXAMPLES = 24;

Deno.test("job runner: real training in a worker", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "job_runner_test_" });
  const model = await tinyModel(`${root}/model`);
  const dataDir = `${root}/data`;
  const store = await openStore({ dataDir, databaseUrl: null });
  const sink = new MemorySink();
  const models = baseModels({ tiny: model });
  let hook: ((e: TrainEvent) => void) | null = null;
  const real = new WorkerBackend();
  const backend: TrainingBackend = {
    validate: (r) => real.validate(r),
    train: (o, onEvent) => real.train(o, (e) => (onEvent(e), hook?.(e))),
  };
  const w = await wireFineTuning(store, {
    dataDir,
    sink,
    baseModels: models,
    backend,
    threads: 1,
    pollMs: 100,
    leaseMs: 2000,
    log: () => {},
  });
  await w.runner.start();
  let stopped = false;
  const trainingFile = await uploadText(w.app, facts(EXAMPLES));
  const create = (extra: Partial<CreateJobInput> = {}) =>
    w.service.create({
      model: "tiny",
      training_file: trainingFile,
      seed: 11,
      method: { type: "supervised", supervised: { hyperparameters: HP } },
      ...extra,
    });
  const idle = () => waitFor("the runner to go idle", () => Promise.resolve(w.runner.activeJob === null));
  const events = async (id: string) => (await store.events.list(id, { limit: 1000, order: "asc" })).data;
  const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
  let reference: LayerDelta[] | null = null;

  try {
    await t.step("a job trains end to end: events, checkpoints, versions, cleanup", async () => {
      const created = await create({ suffix: "e2e", promote_to_alias: "latest" });
      assert.equal(created.status, "validating_files");
      const job = await waitForStatus(store, created.id, ["succeeded", "failed", "cancelled"]);
      assert.equal(job.status, "succeeded", JSON.stringify(job.error));
      const ftName = `ft:tiny:e2e:${job.id}`;
      assert.equal(job.fineTunedModel, ftName);
      assert.ok(job.trainedTokens! > 0);
      assert.equal(job.finishedAt !== null, true);

      const final = sink.versions.get(ftName)!;
      assert.equal(final.kind, "final");
      assert.equal(final.baseModel, "tiny");
      assert.equal(final.jobId, job.id);
      assert.ok(final.deltas.length > 0);
      assert.ok(deltaDifference(final.deltas, final.deltas).size > 0, "the model moved");
      reference = final.deltas;
      assert.equal(sink.aliases.get("latest"), ftName);

      const ckpts = (await store.checkpoints.list(job.id, { limit: 10, order: "asc" })).data;
      assert.deepEqual(ckpts.map((c) => c.step), [4, 8, 12]);
      for (const c of ckpts) {
        assert.equal(c.fineTunedModelCheckpoint, `${ftName}:ckpt-step-${c.step}`);
        assert.equal(sink.versions.get(c.fineTunedModelCheckpoint)?.kind, "checkpoint");
        assert.equal(typeof c.metrics.train_loss, "number");
      }
      // The last checkpoint's deltas are the final model's.
      assert.ok(deltaDifference(sink.versions.get(`${ftName}:ckpt-step-12`)!.deltas, final.deltas).relative < 1e-6);

      const log = await events(job.id);
      const statuses = log.map((e) => (e.data as { status?: string } | null)?.status).filter(Boolean);
      assert.deepEqual(statuses, ["validating_files", "queued", "running", "succeeded"]);
      const metrics = log.filter((e) => e.type === "metrics");
      assert.equal(metrics.length, 12);
      const last = metrics.at(-1)!.data as Record<string, unknown>;
      assert.equal(last.step, 12);
      assert.equal(last.total_steps, 12);
      for (const k of ["train_loss", "train_mean_token_accuracy", "tokens_per_second", "learning_rate"]) {
        assert.equal(typeof last[k], "number", k);
      }
      assert.ok(log.some((e) => e.message.startsWith("Files validated: 24 training examples")));
      assert.ok(log.some((e) => e.message.includes(`Alias 'latest' now points at ${ftName}`)));
      assert.ok(log.some((e) => e.message === `New fine-tuned model created: ${ftName}`));
      await waitFor("the job's checkpoints to be removed", async () => !await exists(`${dataDir}/jobs/${job.id}`));
    });

    await t.step("a bad line fails the job in validation, naming the line", async () => {
      const bad = await uploadText(w.app, facts(3) + "{not json\n" + '{"prompt": "x="}\n');
      const created = await create({ training_file: bad });
      const job = await waitForStatus(store, created.id, ["failed", "queued", "running", "succeeded"]);
      assert.equal(job.status, "failed");
      assert.equal(job.error?.code, "invalid_json");
      assert.equal(job.error?.param, "training_file");
      assert.match(job.error!.message, /line 4/);
      assert.match(job.error!.message, /and 1 more problem/);
      const listing = (await events(job.id)).find((e) => e.level === "error" && e.data && "issues" in e.data);
      assert.ok(listing);
      assert.match(listing.message, /line 4: \[invalid_json\]/);
      assert.match(listing.message, /line 5: \[missing_completion\]/);
    });

    await t.step("pause and resume mid-run equals an uninterrupted run", async () => {
      assert.ok(reference);
      const created = await create({ suffix: "e2e" });
      let paused = false;
      hook = (e) => {
        if (e.type === "checkpoint" && e.step === 4 && !paused) {
          paused = true;
          w.service.pause(created.id).catch((err) => console.error(err));
        }
      };
      const pausedJob = await waitForStatus(store, created.id, ["paused", "succeeded", "failed"]);
      assert.equal(pausedJob.status, "paused");
      await idle();
      hook = null;
      const pauseEvent = (await events(created.id)).find((e) => e.message.startsWith("Training paused at step"));
      assert.ok(pauseEvent, "the runner reports where it stopped");
      const stepAt = Number(/step (\d+)/.exec(pauseEvent.message)![1]);
      assert.ok(stepAt >= 4 && stepAt < 12, `paused mid-run (step ${stepAt})`);
      assert.ok(await exists(`${dataDir}/jobs/${created.id}/checkpoints`), "the pause checkpoint is kept");

      const resumed = await w.service.resume(created.id);
      assert.equal(resumed.status, "queued");
      const job = await waitForStatus(store, created.id, ["succeeded", "failed", "cancelled"]);
      assert.equal(job.status, "succeeded", JSON.stringify(job.error));
      assert.equal(job.attempts, 2);
      const deltas = sink.versions.get(job.fineTunedModel!)!.deltas;
      const diff = deltaDifference(reference, deltas);
      assert.ok(diff.relative < 1e-6, `resumed run differs from the uninterrupted one by ${diff.relative}`);
      const ckpts = (await store.checkpoints.list(job.id, { limit: 10, order: "asc" })).data;
      assert.deepEqual(ckpts.map((c) => c.step), [4, 8, 12]);
    });

    await t.step("cancel stops a running job and removes its files", async () => {
      const created = await create();
      hook = (e) => {
        if (e.type === "checkpoint" && e.step === 4) w.service.cancel(created.id).catch((err) => console.error(err));
      };
      const job = await waitForStatus(store, created.id, ["cancelled", "succeeded", "failed"]);
      assert.equal(job.status, "cancelled");
      await idle();
      hook = null;
      assert.ok((await events(job.id)).some((e) => e.message.startsWith("Training stopped at step")));
      assert.equal(job.fineTunedModel, null);
      assert.equal(
        [...sink.versions.keys()].some((n) => n.startsWith(`ft:tiny::${job.id}`) && !n.includes("ckpt")),
        false,
      );
      assert.equal(await exists(`${dataDir}/jobs/${job.id}`), false);
      await assert.rejects(w.service.pause(job.id), /cannot go from 'cancelled' to 'paused'/);
    });

    await t.step(
      "shutdown and restart: jobs re-queued and resumed, an expired lease reclaimed, a crash loop failed",
      async () => {
        // A graceful shutdown mid-run checkpoints the job and hands it back to the queue.
        const interrupted = await create({ suffix: "e2e" });
        hook = (e) => {
          if (e.type === "checkpoint" && e.step === 4) stopping = w.runner.stop();
        };
        let stopping: Promise<void> | null = null;
        await waitFor("the shutdown", () => Promise.resolve(stopping !== null));
        await stopping;
        stopped = true;
        hook = null;
        const requeued = await store.jobs.get(interrupted.id);
        assert.equal(requeued.status, "queued");
        assert.equal(requeued.leaseOwner, null);
        assert.ok((await events(interrupted.id)).some((e) => e.message.startsWith("The server is shutting down")));

        const hp = resolveHyperparameters({ ...HP, checkpoint_every: 0 }, EXAMPLES);
        const fresh: JobRecord[] = [];
        for (const seed of [1, 2]) {
          fresh.push(
            await store.jobs.create({
              model: "tiny",
              trainingFile,
              seed,
              method: storedMethod(hp, null),
              hyperparameters: { ...hp },
              status: "queued",
            }),
          );
        }
        // As a kill -9 leaves them: running, leased to this server (the interrupted job first, the oldest).
        const held: JobRecord[] = [];
        for (let i = 0; i < 3; i++) held.push((await store.jobs.claimNext(w.runner.owner, 600_000))!);
        assert.deepEqual(held.map((j) => j.id), [interrupted.id, ...fresh.map((j) => j.id)]);
        // Another server died holding this one: its lease (1 ms) has expired.
        const orphan = await store.jobs.create({
          model: "tiny",
          trainingFile,
          seed: 3,
          method: storedMethod(hp, null),
          hyperparameters: { ...hp },
          status: "queued",
        });
        assert.equal((await store.jobs.claimNext("dead-server", 1))?.id, orphan.id);
        // The last one "died" in 5 runs before.
        await Deno.mkdir(`${dataDir}/jobs/${held[2].id}`, { recursive: true });
        await Deno.writeTextFile(`${dataDir}/jobs/${held[2].id}/run.json`, JSON.stringify({ crashes: 4 }));

        const restarted = new JobRunner({
          store,
          files: w.files,
          journal: w.journal,
          sink,
          baseModels: models,
          dataDir,
          owner: w.runner.owner,
          backend,
          threads: 1,
          pollMs: 100,
          log: () => {},
        });
        await restarted.start();
        try {
          const resumed = await waitForStatus(store, interrupted.id, ["succeeded", "failed", "cancelled"]);
          assert.equal(resumed.status, "succeeded", JSON.stringify(resumed.error));
          const diff = deltaDifference(reference!, sink.versions.get(resumed.fineTunedModel!)!.deltas);
          assert.ok(diff.relative < 1e-6, `resumed after shutdown: differs by ${diff.relative}`);
          const ok = await waitForStatus(store, held[1].id, ["succeeded", "failed", "cancelled"]);
          assert.equal(ok.status, "succeeded", JSON.stringify(ok.error));
          assert.ok((await events(ok.id)).some((e) => e.level === "warn" && e.message.includes("server restarted")));
          const looped = await waitForStatus(store, held[2].id, ["succeeded", "failed", "cancelled"]);
          assert.equal(looped.status, "failed");
          assert.equal(looped.error?.code, "training_interrupted");
          await waitFor("the crashed job's files to go", async () => !await exists(`${dataDir}/jobs/${held[2].id}`));
          const reclaimed = await waitForStatus(store, orphan.id, ["succeeded", "failed", "cancelled"]);
          assert.equal(reclaimed.status, "succeeded", JSON.stringify(reclaimed.error));
          assert.equal(reclaimed.attempts, 2);
        } finally {
          await restarted.stop();
        }
      },
    );
  } finally {
    if (!stopped) await w.runner.stop();
    await store.close();
    await Deno.remove(root, { recursive: true });
  }
});
