/**
 * Persists one training run's reports in the order the worker posted them,
 * without holding the worker up: messages and metrics become job events;
 * each checkpoint becomes a registry version (`<ft model>:ckpt-step-N`), a
 * store checkpoint row and an event. Also registers the final version and
 * promotes the alias, and times steps for `estimated_finish`.
 */
import { StoreError } from "../store/errors.ts";
import type { JobRecord } from "../store/job_queries.ts";
import type { Store } from "../store/store.ts";
import type { FineTuneResult } from "../train/fine_tune.ts";
import type { JobJournal } from "./job_events.ts";
import { checkpointMetrics, finalMetrics, metricsEventData } from "./job_metrics.ts";
import { checkpointModelName } from "./job_spec.ts";
import type { TrainEvent } from "./job_worker_protocol.ts";
import type { EvaluationData, NewVersion, PromotionGate, VersionSink } from "./ports.ts";
import { SerialQueue } from "./serial_queue.ts";
import type { CheckpointStore } from "./checkpoint_store.ts";

export interface RecorderDeps {
  store: Store;
  journal: JobJournal;
  sink: VersionSink;
  log: (message: string) => void;
  /** A shared artifact store: each checkpoint's trainer state is uploaded before the checkpoint is recorded. */
  checkpoints?: CheckpointStore;
  /** Clock for `estimated_finish` (ms since the epoch); default Date.now. */
  now?: () => number;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Creates the version unless it exists (a run resumed after a crash re-reaches what it recorded before). */
export async function createVersionOnce(sink: VersionSink, v: NewVersion): Promise<string> {
  if (sink.hasVersion && await sink.hasVersion(v.name)) return v.name;
  return (await sink.createVersion(v)).name;
}

export class RunRecorder {
  readonly #queue: SerialQueue;
  #first: { step: number; at: number } | null = null;
  #last: { step: number; total: number; at: number } | null = null;

  constructor(private readonly deps: RecorderDeps, private readonly job: JobRecord, readonly fineTunedModel: string) {
    this.#queue = new SerialQueue((e) => deps.log(`job ${job.id}: recording progress failed: ${message(e)}`));
  }

  push(e: TrainEvent): void {
    if (e.type === "metrics") this.#timeStep(e.step, e.totalSteps);
    this.#queue.push(() => this.#record(e));
  }

  /** Resolves once everything pushed so far is persisted. */
  drain(): Promise<void> {
    return this.#queue.drain();
  }

  estimatedFinish(): Date | undefined {
    const first = this.#first, last = this.#last;
    if (!first || !last || last.step <= first.step) return undefined;
    const perStep = (last.at - first.at) / (last.step - first.step);
    return new Date(last.at + perStep * (last.total - last.step));
  }

  /** Registers the fine-tuned model; returns its name. */
  async registerFinal(result: FineTuneResult): Promise<string> {
    const name = await createVersionOnce(this.deps.sink, {
      name: this.fineTunedModel,
      kind: "final",
      jobId: this.job.id,
      baseModel: this.job.model,
      deltas: result.deltas,
      metrics: finalMetrics(result),
    });
    await this.deps.journal.append(this.job.id, { level: "info", message: `New fine-tuned model created: ${name}` });
    return name;
  }

  /** Points `alias` at the model; a failure is a warning event, not a failed job. */
  async promote(alias: string, name: string): Promise<void> {
    const { sink, journal } = this.deps;
    try {
      if (!sink.promoteAlias) throw new Error("this server cannot change aliases");
      await sink.promoteAlias(alias, name);
      await journal.append(this.job.id, { level: "info", message: `Alias '${alias}' now points at ${name}` });
    } catch (e) {
      await journal.append(this.job.id, {
        level: "warn",
        message: `The model was not promoted to alias '${alias}': ${message(e)}`,
      });
    }
  }

  /**
   * Eval-gated promotion: the sink scores the model and the alias's target and switches only if the model
   * wins; the decision with both scores becomes a job event (`data.promotion`). A failure (the evaluation
   * could not run) is a warning event, not a failed job: the version exists either way.
   */
  async promoteGated(
    alias: string,
    name: string,
    gate: PromotionGate,
    data: () => Promise<EvaluationData>,
  ): Promise<void> {
    const { sink, journal } = this.deps;
    try {
      if (!sink.promoteAliasGated) throw new Error("this server cannot evaluate promotions");
      await journal.append(this.job.id, {
        level: "info",
        message: `Evaluating ${name} against the target of alias '${alias}' (${gate.metric})`,
      });
      const decision = await sink.promoteAliasGated(alias, name, gate, await data());
      const message = decision.decision === "switched"
        ? `Promotion gate passed: alias '${alias}' now points at ${name}; ${decision.reason}`
        : decision.decision === "refused"
        ? `Promotion gate refused ${name}: alias '${alias}' keeps ${decision.incumbent?.model ?? "no target"}; ` +
          decision.reason
        : `Promotion gate: ${decision.reason}`;
      await journal.append(this.job.id, {
        level: decision.decision === "refused" ? "warn" : "info",
        message,
        data: { promotion: { ...decision } },
      });
    } catch (e) {
      await journal.append(this.job.id, {
        level: "warn",
        message: `The model was not promoted to alias '${alias}': the evaluation gate failed: ${message(e)}`,
      });
    }
  }

  #timeStep(step: number, total: number): void {
    const at = (this.deps.now ?? Date.now)();
    this.#first ??= { step, at };
    this.#last = { step, total, at };
  }

  async #record(e: TrainEvent): Promise<void> {
    const { journal } = this.deps;
    const jobId = this.job.id;
    switch (e.type) {
      case "message":
        await journal.append(jobId, { level: e.level, message: e.message });
        return;
      case "metrics": {
        const valid = e.validLoss !== undefined ? `, validation loss=${e.validLoss.toFixed(4)}` : "";
        await journal.append(jobId, {
          level: "info",
          type: "metrics",
          message: `Step ${e.step}/${e.totalSteps}: training loss=${e.trainLoss.toFixed(4)}${valid}`,
          data: metricsEventData(e),
        });
        return;
      }
      case "checkpoint":
        await this.#recordCheckpoint(e);
        return;
    }
  }

  async #recordCheckpoint(e: Extract<TrainEvent, { type: "checkpoint" }>): Promise<void> {
    const { store, journal, sink } = this.deps;
    const jobId = this.job.id;
    const metrics = checkpointMetrics(e.metrics);
    if (this.deps.checkpoints) {
      try {
        await this.deps.checkpoints.upload(jobId, e.dir);
      } catch (err) {
        // The previous uploaded checkpoint stays the one another replica would resume from.
        this.deps.log(`job ${jobId}: uploading the checkpoint at step ${e.step} failed: ${message(err)}`);
      }
    }
    let name: string;
    try {
      name = await createVersionOnce(sink, {
        name: checkpointModelName(this.fineTunedModel, e.step),
        kind: "checkpoint",
        jobId,
        baseModel: this.job.model,
        deltas: e.deltas,
        metrics,
      });
    } catch (err) {
      await journal.append(jobId, {
        level: "warn",
        message: `Checkpoint at step ${e.step} could not be registered: ${message(err)}`,
      });
      return;
    }
    try {
      await store.checkpoints.add(jobId, {
        step: e.step,
        metrics,
        // The registry version is the durable artifact (trainer states under the job dir are pruned).
        artifactPath: `registry:${name}`,
        fineTunedModelCheckpoint: name,
      });
    } catch (err) {
      // Recorded by the run that died before this one.
      if (!(err instanceof StoreError && err.kind === "conflict")) throw err;
    }
    await journal.append(jobId, {
      level: "info",
      message: `Checkpoint created at step ${e.step}: ${name}`,
      data: { step: e.step, fine_tuned_model_checkpoint: name },
    });
  }
}
