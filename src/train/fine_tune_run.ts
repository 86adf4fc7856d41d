/**
 * The training phase of a fine-tuning run: the LM training model with
 * recorded merges and its Trainer; `resume` continues from the latest
 * checkpoint of the same trajectory (bit-exactly); `train` runs the step loop
 * with metrics events, periodic validation and checkpoints, and returns the
 * deltas. An aborted signal stops it between steps, after a checkpoint.
 */
import type { Checkpoint } from "../model/checkpoint.ts";
import type { LmBatch } from "./batching.ts";
import type { FineTuneEvent, FineTuneResult } from "./fine_tune.ts";
import {
  FineTuneCheckpointError,
  listCheckpoints,
  pruneCheckpoints,
  readFineTuneState,
  stepDir,
  writeFineTuneState,
} from "./fine_tune_checkpoints.ts";
import { type FineTuneConfig, trainerConfig } from "./fine_tune_config.ts";
import type { RunData } from "./fine_tune_data.ts";
import { LmTrainingModel } from "./lm_training_graph.ts";
import { deltasOf, RecordingModel } from "./merge_log.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "./train_checkpoint.ts";
import { Trainer } from "./trainer.ts";

/** A checkpoint's metrics (the job service names them as OpenAI does). */
export interface CheckpointMetrics {
  step: number;
  /** The loss of the step taken last (null: none yet). */
  trainLoss: number | null;
  /** Absent at a pause point (saved between steps, no step of its own to report). */
  tokenAccuracy?: number;
  trainedTokens: number;
  validLoss?: number;
  validTokenAccuracy?: number;
}

/** The signal fired; `checkpoint` is where the state was saved (null if nothing new to save or saving failed). */
export class FineTuneAborted extends Error {
  override name = "FineTuneAborted";
  constructor(readonly step: number, readonly checkpoint: string | null, readonly reason: unknown) {
    super(`fine-tuning stopped at step ${step}${checkpoint ? ` (checkpoint ${checkpoint})` : ""}`);
  }
}

type Emit = (e: FineTuneEvent) => Promise<void>;

interface Evaluation {
  loss: number;
  accuracy: number;
}

export class FineTuneRun {
  #trainedTokens = 0;
  #lastLoss: number | null = null;
  #lastSaved = -1;

  private constructor(
    readonly model: RecordingModel<LmBatch>,
    readonly trainer: Trainer<LmBatch>,
    private readonly o: FineTuneConfig,
    private readonly data: RunData,
    /** The trajectory's fingerprint, stored with each checkpoint. */
    private readonly runId: string,
    private readonly emit: Emit,
  ) {}

  static async open(ckpt: Checkpoint, o: FineTuneConfig, data: RunData, runId: string, emit: Emit) {
    const on = { device: o.device, threads: o.threads ?? navigator.hardwareConcurrency };
    const inner = await LmTrainingModel.create(ckpt, {
      rank: o.rank,
      alpha: o.alpha,
      rsLora: o.rsLora,
      targetModules: o.targetModules,
    }, { ...on, maxLength: o.maxLength }); // maxLength: recompute layers when one row would not fit
    const model = new RecordingModel(inner, on);
    try {
      return new FineTuneRun(
        model,
        new Trainer(model, data.source, trainerConfig(o, data.totalSteps), on),
        o,
        data,
        runId,
        emit,
      );
    } catch (e) {
      await model.release();
      throw e;
    }
  }

  async release(): Promise<void> {
    await this.trainer.release();
    await this.model.release();
  }

  /** Continues from the latest checkpoint in checkpointDir, which must be of this trajectory (none: fresh). */
  async resume(): Promise<void> {
    const { checkpointDir } = this.o;
    const latest = (await listCheckpoints(checkpointDir)).at(-1);
    if (!latest) return await this.#info(`no checkpoint in ${checkpointDir}: starting from scratch`);
    const state = await readFineTuneState(latest.dir);
    if (state.fingerprint !== this.runId) {
      throw new FineTuneCheckpointError(
        `${latest.dir} belongs to another run (different data, model or hyper-parameters): cannot resume`,
      );
    }
    await loadTrainingCheckpoint(this.trainer, latest.dir);
    this.#trainedTokens = state.trainedTokens;
    this.#lastLoss = state.lastTrainLoss;
    this.#lastSaved = state.step;
    await this.#info(`resumed from step ${state.step} (${latest.dir})`);
  }

  /** Steps until the end (or the signal); returns the deltas. */
  async train(signal?: AbortSignal): Promise<FineTuneResult> {
    const { trainer, o } = this;
    const { source, totalSteps } = this.data;
    const evalEvery = o.evalEvery ?? o.checkpointEvery;
    let finalValid: Evaluation | undefined;
    while (trainer.step < totalSteps) {
      if (signal?.aborted) throw await this.#abort(signal.reason);
      const t0 = performance.now(), tokens0 = source.tokens;
      const rep = await trainer.trainStep();
      const seconds = (performance.now() - t0) / 1000;
      this.#trainedTokens += source.tokens - tokens0;
      this.#lastLoss = rep.loss;
      const step = trainer.step, last = step === totalSteps;
      const valid = last || (evalEvery > 0 && step % evalEvery === 0) ? await this.#evaluate() : undefined;
      if (last) finalValid = valid;
      const accuracy = rep.count ? (rep.correct ?? 0) / rep.count : 0;
      await this.emit({
        type: "metrics",
        step,
        totalSteps,
        epoch: source.position().epoch + 1,
        trainLoss: rep.loss,
        tokenAccuracy: accuracy,
        ...(valid ? { validLoss: valid.loss, validTokenAccuracy: valid.accuracy } : {}),
        tokensPerSecond: (source.tokens - tokens0) / seconds,
        learningRate: rep.lr,
        lrBoost: rep.lrBoost,
        ...(rep.scaling && rep.scaling.scaled > 0
          ? {
            scaling: {
              columnwiseShare: rep.scaling.columnwiseShare,
              meanAlphaBeta: rep.scaling.meanAlphaBeta,
              updateRank: this.#updateRank(),
            },
          }
          : {}),
      });
      if (last || (o.checkpointEvery > 0 && step % o.checkpointEvery === 0)) {
        await this.#checkpoint({
          step,
          trainLoss: rep.loss,
          tokenAccuracy: accuracy,
          trainedTokens: this.#trainedTokens,
          ...(valid ? { validLoss: valid.loss, validTokenAccuracy: valid.accuracy } : {}),
        });
      }
    }
    if (this.#lastLoss === null) throw new FineTuneCheckpointError("the run ended without a training step");
    finalValid ??= await this.#evaluate();
    await this.#info(
      `done: ${trainer.step} steps, ${this.#trainedTokens} tokens, final train loss ${this.#lastLoss.toFixed(4)}`,
    );
    return {
      steps: trainer.step,
      trainedTokens: this.#trainedTokens,
      finalTrainLoss: this.#lastLoss,
      ...(finalValid ? { finalValidLoss: finalValid.loss } : {}),
      deltas: deltasOf(this.model.weights.view(), this.model.adapters, trainer.factors),
    };
  }

  /**
   * Mean over adapted layers of the rank the accumulated update W − W_base can have: the merged columns
   * plus the live adapter's r, at most min(m, n) (a layer whose log was folded dense counts min(m, n)).
   * It equals the rank for factors in general position: how far the merges took the update past r.
   */
  #updateRank(): number {
    const adapters = this.model.adapters;
    let sum = 0;
    for (const a of adapters) {
      const { k, dense } = this.model.weights.stats(a.name);
      sum += Math.min(a.m, a.n, dense ? Infinity : k + a.rank);
    }
    return adapters.length ? sum / adapters.length : 0;
  }

  async #evaluate(): Promise<Evaluation | undefined> {
    if (!this.data.validBatches.length) return undefined;
    const r = await this.trainer.evaluate(this.data.validBatches);
    return { loss: r.loss, accuracy: r.count ? (r.correct ?? 0) / r.count : 0 };
  }

  /** Saves a published checkpoint and announces it, with the deltas as of now. */
  async #checkpoint(metrics: CheckpointMetrics): Promise<void> {
    const { model, trainer } = this;
    const dir = await this.#save(metrics);
    const view = model.weights.view();
    const factors = new Map([...trainer.factors].map(([k, f]) => [k, { A: f.A.slice(), B: f.B.slice() }]));
    await this.emit({
      type: "checkpoint",
      step: trainer.step,
      dir,
      metrics,
      deltas: () => Promise.resolve(deltasOf(view, model.adapters, factors)),
    });
  }

  async #save(metrics: CheckpointMetrics): Promise<string> {
    const { trainer, o } = this;
    const dir = stepDir(o.checkpointDir, trainer.step);
    await Deno.mkdir(o.checkpointDir, { recursive: true });
    await saveTrainingCheckpoint(trainer, dir);
    await writeFineTuneState(dir, {
      fingerprint: this.runId,
      step: trainer.step,
      totalSteps: this.data.totalSteps,
      trainedTokens: this.#trainedTokens,
      lastTrainLoss: this.#lastLoss,
      metrics: { ...metrics },
    });
    this.#lastSaved = trainer.step;
    await pruneCheckpoints(o.checkpointDir, o.keepCheckpoints);
    return dir;
  }

  /** Pause/cancel: saves what is not saved yet (no event: a pause point, not a published checkpoint). */
  async #abort(reason: unknown): Promise<FineTuneAborted> {
    const step = this.trainer.step;
    let dir: string | null = null;
    if (step > this.#lastSaved && step > 0) {
      try {
        dir = await this.#save({ step, trainLoss: this.#lastLoss, trainedTokens: this.#trainedTokens });
      } catch (e) {
        await this.emit({
          type: "message",
          level: "error",
          message: `could not write a checkpoint at step ${step}: ${e instanceof Error ? e.message : e}`,
        });
      }
    } else if (step > 0) {
      dir = stepDir(this.o.checkpointDir, step);
    }
    return new FineTuneAborted(step, dir, reason);
  }

  #info(message: string): Promise<void> {
    return this.emit({ type: "message", level: "info", message });
  }
}
