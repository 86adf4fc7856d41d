/**
 * The training loop of ../shared/SCALORA.md "One training step", for any
 * TrainingModel:
 *   1. forward/backward at (W, A, B) over `accumulationSteps` micro-batches;
 *   2. on a scaling step (t % I == 0, η > 0, mode ≠ lora), for every layer
 *      whose A and B are both non-zero: Grams (one kernel run for all layers),
 *      host float64 solve → α, β; merge W ← W + s·A diag(1 − α∘β) Bᵀ (one run);
 *   3. AdamW with A ← A diag(α), B ← B diag(β) and the crossed moment
 *      transform folded in (one run).
 * Modes: "lora" (never scales), "scalora" (column-wise, scalar fallback),
 * "scalora-scalar" (scalar only). Deterministic: adapter init and data order
 * derive from the seed; checkpoints resume bit-exactly (train_checkpoint.ts).
 */
import { type ScalingGrams, ScalingGramsKernel } from "../../kernels/scaling_grams.ts";
import { Rng } from "../model/rng.ts";
import type { Device } from "../runtime/session.ts";
import { appliedScales, lEtaS2, type LipschitzRule, lrBoostCap } from "./lipschitz.ts";
import { BOOST_WINDOW, boostCap, type BoostState, closeWindow, initialBoost, recordLoss } from "./lr_boost.ts";
import { type AdamWConfig, AdapterOptimizer, clipScale, globalGradNorm } from "./optimizer.ts";
import { type ColumnScales, columnScales, type ScalingKind, solveScaling } from "./scalora.ts";
import { learningRate, type LrSchedule } from "./schedule.ts";
import {
  type AdapterFactors,
  type AdapterGradients,
  type AdapterSpec,
  type BatchSource,
  type EvalResult,
  pooled,
  type StepResult,
  type TrainingModel,
} from "./types.ts";

export type TrainMode = "lora" | "scalora" | "scalora-scalar";

/** Initial B (A starts at zero): PEFT's kaiming-uniform U(±1/sqrt(n)), or N(0, std²). */
export type AdapterInit = { kind: "kaiming-uniform" } | { kind: "normal"; std: number };

export interface TrainerConfig {
  mode: TrainMode;
  /** Scaling interval I (1 = ScaLoRA, >1 = ScaLoRA-I). */
  interval: number;
  lipschitz: LipschitzRule;
  optimizer: AdamWConfig;
  schedule: LrSchedule;
  /** Global gradient-norm clip over all adapters; 0 disables. */
  maxGradNorm: number;
  /** Micro-batches per optimizer step (their gradients are averaged weighted by `count`). */
  accumulationSteps: number;
  seed: number;
  init: AdapterInit;
}

export interface TrainerOptions {
  /** Device the kernels run on (the model chooses its own). */
  device: Device;
  threads?: number;
  /** Starting factors (copied), e.g. an existing adapter; default: `config.init` from the seed. */
  initialFactors?: ReadonlyMap<string, AdapterFactors>;
  /** Profile the kernels into files prefixed `<prefix>.optimizer` and `<prefix>.scaling` (onnxruntime's profiler). */
  profilePrefix?: string;
}

/** Milliseconds spent per phase of one step. */
export interface StepTimings {
  forwardBackward: number;
  scaling: number;
  merge: number;
  optimizer: number;
}

export interface ScalingEvent {
  /** Adapted layers. */
  layers: number;
  /** Layers actually rescaled (A and B non-zero). */
  scaled: number;
  /** Share of rescaled layers that took the column-wise solution. */
  columnwiseShare: number;
  kinds: Record<ScalingKind, number>;
  /** Mean of α_k·β_k over every column of every rescaled layer. */
  meanAlphaBeta: number;
  /** Mean Lηs² used. */
  meanLEtaS2: number;
}

export interface StepReport {
  /** Optimizer steps done, this one included. */
  step: number;
  loss: number;
  count: number;
  correct?: number;
  /** The learning rate the factors were stepped at: the scheduled one times `lrBoost`. */
  lr: number;
  /** ScaLoRA's learning-rate boost ω of this step (lr_boost.ts; 1 for LoRA and with a fixed L). */
  lrBoost: number;
  gradNorm: number;
  clipScale: number;
  scaling: ScalingEvent | null;
  timings: StepTimings;
}

export class TrainerError extends Error {
  override name = "TrainerError";
}

export class Trainer<Batch> {
  readonly factors = new Map<string, AdapterFactors>();
  readonly optimizer: AdapterOptimizer;
  readonly #grams: ScalingGramsKernel;
  #step = 0;
  #boost: BoostState = initialBoost();
  /** The lr boost's cap: the rule's, 1 (off) for LoRA and above the largest relative step (lr_boost.ts boostCap). */
  readonly #boostMax: number;

  constructor(
    readonly model: TrainingModel<Batch>,
    readonly source: BatchSource<Batch>,
    readonly config: TrainerConfig,
    options: TrainerOptions,
  ) {
    if (!(Number.isInteger(config.interval) && config.interval >= 1)) {
      throw new TrainerError(`interval must be a positive integer, got ${config.interval}`);
    }
    if (!(Number.isInteger(config.accumulationSteps) && config.accumulationSteps >= 1)) {
      throw new TrainerError(`accumulationSteps must be a positive integer, got ${config.accumulationSteps}`);
    }
    for (const a of model.adapters) {
      const given = options.initialFactors?.get(a.name);
      if (given && (given.A.length !== a.m * a.rank || given.B.length !== a.n * a.rank)) {
        throw new TrainerError(`initial factors of "${a.name}" do not match ${a.m}x${a.rank} / ${a.n}x${a.rank}`);
      }
      this.factors.set(a.name, given ? { A: given.A.slice(), B: given.B.slice() } : initFactors(a, config));
    }
    const kernel = (phase: string) => ({
      device: options.device,
      threads: options.threads,
      ...(options.profilePrefix ? { profilePrefix: `${options.profilePrefix}.${phase}` } : {}),
    });
    const relativeStep = config.optimizer.lr / Math.min(...model.adapters.map((a) => initRms(a, config.init)));
    this.#boostMax = config.mode === "lora" ? 1 : boostCap(lrBoostCap(config.lipschitz), relativeStep);
    this.optimizer = new AdapterOptimizer(model.adapters, config.optimizer, kernel("optimizer"));
    this.#grams = new ScalingGramsKernel(kernel("scaling"));
  }

  /** Optimizer steps done. */
  get step(): number {
    return this.#step;
  }

  /** The learning-rate boost's state (lr_boost.ts), for checkpoints. */
  get boost(): BoostState {
    return this.#boost;
  }

  /** Restores the learning-rate boost's state (checkpoint resume; the checkpoint loader checks it with storedBoost). */
  setBoost(state: BoostState): void {
    this.#boost = { ...state };
  }

  /** Restores the step counter (checkpoint resume). */
  setStep(step: number): void {
    if (!(Number.isInteger(step) && step >= 0)) throw new TrainerError(`invalid step ${step}`);
    this.#step = step;
  }

  async trainStep(): Promise<StepReport> {
    const t = this.#step, cfg = this.config;
    const lr = learningRate(cfg.optimizer.lr, cfg.schedule, t);
    const timings: StepTimings = { forwardBackward: 0, scaling: 0, merge: 0, optimizer: 0 };

    let t0 = performance.now();
    const { result, gradScale: avgScale } = await this.#forwardBackward();
    timings.forwardBackward = performance.now() - t0;

    const gradNorm = globalGradNorm(result.grads) * avgScale;
    const clip = clipScale(gradNorm, cfg.maxGradNorm);

    let scaling: ScalingEvent | null = null;
    let scales: Map<string, ColumnScales> | undefined;
    if (this.#boostMax > 1) {
      if (t % BOOST_WINDOW === 0) this.#boost = closeWindow(this.#boost, this.#boostMax);
      this.#boost = recordLoss(this.#boost, result.loss);
    }
    const boost = this.#boost.omega, steppedLr = lr * boost;
    if (cfg.mode !== "lora" && t % cfg.interval === 0 && lr > 0) {
      t0 = performance.now();
      const plan = await this.#planScaling(result.grads, lr);
      timings.scaling = performance.now() - t0;
      t0 = performance.now();
      await this.#merge(plan.scales);
      timings.merge = performance.now() - t0;
      scaling = plan.event;
      scales = plan.scales;
    }

    t0 = performance.now();
    await this.optimizer.step(this.factors, result.grads, {
      lr: steppedLr,
      step: t + 1,
      gradScale: avgScale * clip,
      scales,
    });
    timings.optimizer = performance.now() - t0;

    this.#step = t + 1;
    return {
      step: this.#step,
      loss: result.loss,
      count: result.count,
      correct: result.correct,
      lr: steppedLr,
      lrBoost: boost,
      gradNorm,
      clipScale: clip,
      scaling,
      timings,
    };
  }

  /** Mean loss over `batches` at the current weights (weighted by count). */
  async evaluate(batches: readonly Batch[]): Promise<EvalResult> {
    const parts: EvalResult[] = [];
    for (const b of batches) parts.push(await this.model.evaluate(b, this.factors));
    return pooled(parts);
  }

  /**
   * Forward/backward over the micro-batches. Returns the summed count-weighted
   * gradients and the factor (1 / Σcount) that averages them, applied later by
   * the optimizer kernel; with one micro-batch the gradients pass through untouched.
   */
  async #forwardBackward(): Promise<{ result: StepResult; gradScale: number }> {
    const n = this.config.accumulationSteps;
    const first = await this.model.forwardBackward(this.source.next(), this.factors);
    if (n === 1) return { result: first, gradScale: 1 };
    const grads = new Map<string, AdapterGradients>();
    for (const [name, g] of first.grads) {
      grads.set(name, { gA: g.gA.map((v) => v * first.count), gB: g.gB.map((v) => v * first.count) });
    }
    // Per micro-batch only its metrics are kept; its gradients go into `grads`.
    const metrics = ({ loss, count, correct }: StepResult): EvalResult => ({ loss, count, correct });
    const parts = [metrics(first)];
    for (let i = 1; i < n; i++) {
      const r = await this.model.forwardBackward(this.source.next(), this.factors);
      for (const [name, g] of r.grads) {
        const acc = grads.get(name)!;
        for (let j = 0; j < g.gA.length; j++) acc.gA[j] += g.gA[j] * r.count;
        for (let j = 0; j < g.gB.length; j++) acc.gB[j] += g.gB[j] * r.count;
      }
      parts.push(metrics(r));
    }
    const { loss, count, correct } = pooled(parts);
    if (count <= 0) throw new TrainerError("a step's micro-batches counted no elements");
    return { result: { loss, count, correct, grads }, gradScale: 1 / count };
  }

  async #planScaling(
    grads: ReadonlyMap<string, AdapterGradients>,
    lr: number,
  ): Promise<{ scales: Map<string, ColumnScales>; event: ScalingEvent }> {
    const specs = this.model.adapters;
    // A factor at its zero init has no direction to rescale (and zero atoms).
    const live = specs.filter((a) => {
      const f = this.factors.get(a.name)!;
      return !allZero(f.A) && !allZero(f.B);
    });
    const grams = await this.#grams.run(live.map((a) => {
      const f = this.factors.get(a.name)!, g = grads.get(a.name)!;
      return { m: a.m, n: a.n, r: a.rank, A: f.A, B: f.B, gA: g.gA, gB: g.gB };
    }));
    const kinds: Record<ScalingKind, number> = { columnwise: 0, scalar: 0, boundary: 0, skipped: 0 };
    const scales = new Map<string, ColumnScales>();
    let abSum = 0, abCount = 0, lSum = 0;
    live.forEach((spec, i) => {
      const sol = solveScaling(grams[i], { mode: this.config.mode === "scalora-scalar" ? "scalar" : "columnwise" });
      const product = lEtaS2(this.config.lipschitz, {
        spec,
        lr,
        baseLr: this.config.optimizer.lr,
        interval: this.config.interval,
        initRms: initRms(spec, this.config.init),
        solution: sol,
        grams: grams[i] as ScalingGrams,
      });
      const sc = appliedScales(this.config.lipschitz, columnScales(sol, product), grams[i], spec);
      kinds[sol.kind]++;
      scales.set(spec.name, sc);
      lSum += product;
      for (let k = 0; k < spec.rank; k++) abSum += sc.alpha[k] * sc.beta[k];
      abCount += spec.rank;
    });
    const event: ScalingEvent = {
      layers: specs.length,
      scaled: live.length,
      columnwiseShare: live.length ? kinds.columnwise / live.length : 0,
      kinds,
      meanAlphaBeta: abCount ? abSum / abCount : 1,
      meanLEtaS2: live.length ? lSum / live.length : 0,
    };
    return { scales, event };
  }

  /** W ← W + s·A diag(1 − α∘β) Bᵀ for every rescaled layer, in one batched merge. */
  async #merge(scales: ReadonlyMap<string, ColumnScales>): Promise<void> {
    const merges = this.model.adapters.filter((a) => scales.has(a.name)).map((a) => {
      const { alpha, beta } = scales.get(a.name)!, f = this.factors.get(a.name)!;
      const c = Float32Array.from(alpha, (al, k) => 1 - al * beta[k]);
      return { name: a.name, U: f.A, V: f.B, k: a.rank, c, scale: a.scale };
    });
    if (merges.length) await this.model.weights.mergeLowRankMany(merges);
  }

  async release(): Promise<void> {
    await this.optimizer.release();
    await this.#grams.release();
  }
}

function allZero(x: Float32Array): boolean {
  for (let i = 0; i < x.length; i++) if (x[i] !== 0) return false;
  return true;
}

/** RMS of B's entries under `init` (uniform on ±b has RMS b/√3). */
export function initRms(a: AdapterSpec, init: AdapterInit): number {
  return init.kind === "normal" ? init.std : 1 / Math.sqrt(3 * a.n);
}

/** A = 0, B random from a per-adapter stream of the seed (independent of adapter order). */
export function initFactors(a: AdapterSpec, cfg: Pick<TrainerConfig, "seed" | "init">): AdapterFactors {
  const rng = new Rng(cfg.seed, `lora-init:${a.name}`);
  const B = new Float32Array(a.n * a.rank);
  if (cfg.init.kind === "normal") rng.fillNormal(B, cfg.init.std);
  else {
    const bound = 1 / Math.sqrt(a.n);
    rng.fillUniform(B, -bound, bound);
  }
  return { A: new Float32Array(a.m * a.rank), B };
}
