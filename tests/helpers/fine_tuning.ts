/**
 * Test support for the fine-tuning service: a tiny model, JSONL data, a fake
 * version sink, the store + files + runner + routes wired the way main.ts
 * wires them (`wireFineTuning`), and dense comparisons of LayerDeltas.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../../routes/app_env.ts";
import { errorResponse, toApiError } from "../../routes/errors.ts";
import { filesRoutes } from "../../routes/files.ts";
import { fineTuningRoutes } from "../../routes/fine_tuning.ts";
import { Rng } from "../../src/model/rng.ts";
import { generateTinyModel } from "../../src/model/tiny_model.ts";
import type { NewVersion } from "../../src/registry/types.ts";
import type { LayerDelta } from "../../src/train/layer_delta.ts";
import { BlobStore } from "../../src/store/blob_store.ts";
import { FileService } from "../../src/store/file_service.ts";
import type { JobRecord } from "../../src/store/job_queries.ts";
import type { Store } from "../../src/store/store.ts";
import { createFineTuning } from "../../src/jobs/fine_tuning_setup.ts";
import type { FineTuningService } from "../../src/jobs/fine_tuning_service.ts";
import type { JobJournal } from "../../src/jobs/job_events.ts";
import type { JobRunner, JobRunnerOptions } from "../../src/jobs/job_runner.ts";
import type { BaseModelLookup, VersionSink } from "../../src/jobs/ports.ts";
import type { TrainOptions } from "../../src/jobs/job_spec.ts";
import { validateJobFiles } from "../../src/jobs/job_validation.ts";
import type {
  JobFailure,
  TrainEvent,
  TrainOutcome,
  ValidateOutcome,
  ValidateRequest,
} from "../../src/jobs/job_worker_protocol.ts";
import type { TrainingBackend, TrainingRun } from "../../src/jobs/training_backend.ts";

/** A generated tiny Llama with a bytes tokenizer (no chat template: data is prompt/completion). */
export async function tinyModel(dir: string): Promise<string> {
  await generateTinyModel({ out: dir, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 4 });
  return dir;
}

/** `n` deterministic prompt/completion examples, one per line. */
export function facts(n: number, from = 0): string {
  return Array.from({ length: n }, (_, i) => {
    const rng = new Rng(7, `fact${from + i}`);
    const word = (len: number) => Array.from({ length: len }, () => "abcdefghij"[rng.nextInt(10)]).join("");
    return JSON.stringify({ prompt: `${word(3)}=`, completion: word(3) });
  }).join("\n") + "\n";
}

/** Records every version in memory; `fail` makes createVersion throw for matching names. */
export class MemorySink implements VersionSink {
  readonly versions = new Map<string, NewVersion>();
  readonly aliases = new Map<string, string>();
  fail: ((name: string) => boolean) | null = null;

  createVersion(v: NewVersion): Promise<{ name: string }> {
    if (this.fail?.(v.name)) return Promise.reject(new Error(`registry refused ${v.name}`));
    if (this.versions.has(v.name)) return Promise.reject(new Error(`version ${v.name} exists`));
    this.versions.set(v.name, v);
    return Promise.resolve({ name: v.name });
  }

  hasVersion(name: string): Promise<boolean> {
    return Promise.resolve(this.versions.has(name));
  }

  promoteAlias(alias: string, versionName: string): Promise<void> {
    this.aliases.set(alias, versionName);
    return Promise.resolve();
  }
}

export interface Wiring {
  files: FileService;
  journal: JobJournal;
  runner: JobRunner;
  service: FineTuningService;
  app: OpenAPIHono<AppEnv>;
}

/** The wiring main.ts does: files, journal, runner, service, and both routers behind one error handler. */
export async function wireFineTuning(
  store: Store,
  opts: { dataDir: string; sink: VersionSink; baseModels: BaseModelLookup } & Partial<JobRunnerOptions>,
): Promise<Wiring> {
  const { dataDir, sink, baseModels, ...runnerOptions } = opts;
  const files = new FileService(store, await BlobStore.open(`${dataDir}/files`));
  const { journal, runner, service } = createFineTuning({
    store,
    files,
    sink,
    baseModels,
    dataDir,
    runner: runnerOptions,
    journal: { pollMs: 200, graceMs: 10_000 },
  });
  const app = new OpenAPIHono<AppEnv>();
  app.route("/", filesRoutes({ files }));
  app.route("/", fineTuningRoutes({ service }));
  app.onError((err, c) => errorResponse(c, toApiError(err)));
  return { files, journal, runner, service, app };
}

/** Serves exactly these model ids from these directories. */
export function baseModels(models: Record<string, string>): BaseModelLookup {
  return { resolve: (id) => models[id] ?? null };
}

export async function uploadText(app: OpenAPIHono<AppEnv>, text: string, name = "train.jsonl"): Promise<string> {
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", new File([text], name));
  const res = await app.request("/v1/files", { method: "POST", body: form });
  if (res.status !== 200) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
  return (await res.json()).id;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 25,
): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const TERMINAL = ["succeeded", "failed", "cancelled"];

export function waitForStatus(
  store: Store,
  id: string,
  statuses: readonly string[],
  timeoutMs = 30_000,
): Promise<JobRecord> {
  return waitFor(`job ${id} to reach ${statuses.join("|")}`, async () => {
    const job = await store.jobs.get(id);
    return statuses.includes(job.status) ? job : null;
  }, timeoutMs);
}

/** Σ U Vᵀ of one layer, dense (m x n, float64). */
export function denseDelta(d: LayerDelta): Float64Array {
  const out = new Float64Array(d.m * d.n);
  for (const t of d.terms) {
    for (let i = 0; i < d.m; i++) {
      for (let j = 0; j < d.n; j++) {
        let acc = 0;
        for (let k = 0; k < t.k; k++) acc += t.U[i * t.k + k] * t.V[j * t.k + k];
        out[i * d.n + j] += acc;
      }
    }
  }
  return out;
}

/** Largest |a − b| over all layers relative to the largest |a|; throws if the layer sets differ. */
export function deltaDifference(
  a: readonly LayerDelta[],
  b: readonly LayerDelta[],
): { relative: number; size: number } {
  const byName = new Map(b.map((d) => [d.name, d]));
  if (a.length !== b.length || a.some((d) => !byName.has(d.name))) throw new Error("different layers");
  let diff = 0, size = 0;
  for (const da of a) {
    const x = denseDelta(da), y = denseDelta(byName.get(da.name)!);
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i] - y[i]));
      size = Math.max(size, Math.abs(x[i]));
    }
  }
  return { relative: size === 0 ? diff : diff / size, size };
}

/**
 * A training backend without training: validation is the real one (in-process),
 * a "run" emits one metrics event per `stepMs` and a checkpoint every
 * `checkpointEvery` steps, honours abort (remembering the step per checkpoint
 * dir, so a resumed run continues there) and ends with a one-layer delta.
 */
export class ScriptedBackend implements TrainingBackend {
  readonly runs: TrainOptions[] = [];
  /** Set to make every run fail with this error. */
  failure: JobFailure | null = null;
  readonly #saved = new Map<string, number>();

  constructor(public opts: { steps: number; stepMs: number; checkpointEvery: number }) {}

  validate(request: ValidateRequest): Promise<ValidateOutcome> {
    return validateJobFiles(request);
  }

  train(options: TrainOptions, onEvent: (e: TrainEvent) => void): TrainingRun {
    this.runs.push(options);
    const { steps, stepMs, checkpointEvery } = this.opts;
    let step = this.#saved.get(options.checkpointDir) ?? 0;
    let stopRequested = false;
    let wakeStep: (() => void) | null = null;
    const delta = (s: number): LayerDelta[] => [{
      name: "model.layers.0.self_attn.q_proj",
      m: 2,
      n: 2,
      terms: [{ U: Float32Array.of(s, 0), V: Float32Array.of(1, 1), k: 1 }],
    }];
    const done = (async (): Promise<TrainOutcome> => {
      if (this.failure) return { kind: "failed", error: this.failure };
      onEvent({ type: "message", level: "info", message: `scripted run from step ${step}` });
      while (step < steps) {
        const aborted = stopRequested || await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), stepMs);
          wakeStep = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
        if (aborted) {
          this.#saved.set(options.checkpointDir, step);
          return { kind: "aborted", step, checkpoint: step > 0 ? `${options.checkpointDir}/step-${step}` : null };
        }
        step++;
        onEvent({
          type: "metrics",
          step,
          totalSteps: steps,
          epoch: 1,
          trainLoss: 1 / step,
          tokenAccuracy: 0.5,
          tokensPerSecond: 100,
          learningRate: 1e-3,
          lrBoost: 1,
          ...(step === steps ? { validLoss: 0.5, validTokenAccuracy: 0.6 } : {}),
          scaling: { columnwiseShare: 1, meanAlphaBeta: 0.9, updateRank: 12 },
        });
        if (step % checkpointEvery === 0 || step === steps) {
          onEvent({
            type: "checkpoint",
            step,
            dir: `${options.checkpointDir}/step-${step}`,
            metrics: { step, trainLoss: 1 / step, tokenAccuracy: 0.5, trainedTokens: step * 10 },
            deltas: delta(step),
          });
        }
      }
      return {
        kind: "succeeded",
        result: { steps, trainedTokens: steps * 10, finalTrainLoss: 1 / steps, deltas: delta(steps) },
      };
    })();
    return {
      done,
      abort: () => {
        stopRequested = true;
        (wakeStep as (() => void) | null)?.();
      },
    };
  }
}
