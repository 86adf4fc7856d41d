/**
 * A one-layer matrix-regression TrainingModel: pred = x·W_effᵀ with the LoRA
 * hook, loss = 0.5 · mean over rows of ‖pred − y‖². It runs the same path as
 * LM training (LoraGraph → TrainingSession → WeightState → kernels), which is
 * what makes the synthetic benchmark a test of that path.
 */
import { GraphBuilder } from "../onnx/builder.ts";
import { ort } from "../runtime/ort.ts";
import type { Device } from "../runtime/session.ts";
import { LoraGraph } from "./lora_graph.ts";
import { TrainingSession } from "./training_session.ts";
import type { AdapterFactors, AdapterSpec, EvalResult, StepResult, TrainingModel } from "./types.ts";
import { BakedWeightState, CpuWeightState, type GraphWeightState } from "./weight_state.ts";

/** Row-major x [rows, n] and y [rows, m]. */
export interface RegressionBatch {
  rows: number;
  x: Float32Array;
  y: Float32Array;
}

export interface RegressionModelOptions {
  /** The adapted layer (name, m, n, rank, scale). */
  adapter: AdapterSpec;
  /** Initial W (m x n); the weight state takes ownership. */
  w0: Float32Array;
  /** "input": CpuWeightState (weights as inputs); "baked": BakedWeightState (initializers + pending). */
  layout: "input" | "baked";
  device: Device;
  threads?: number;
  /** Baked layout only: re-bake threshold. */
  maxPendingRank?: number;
}

export class RegressionModel implements TrainingModel<RegressionBatch> {
  private constructor(
    readonly adapters: readonly AdapterSpec[],
    readonly weights: GraphWeightState,
    readonly session: TrainingSession,
  ) {}

  static async create(opts: RegressionModelOptions): Promise<RegressionModel> {
    const { adapter: a } = opts;
    const layers = new Map([[a.name, { m: a.m, n: a.n, data: opts.w0 }]]);
    const kernel = { device: opts.device, threads: opts.threads };
    const weights = opts.layout === "input"
      ? new CpuWeightState(layers, kernel)
      : new BakedWeightState(layers, { ...kernel, maxPendingRank: opts.maxPendingRank });
    const g = new GraphBuilder("regression");
    const lora = new LoraGraph(g, weights.layout);
    const x = g.input("x", "float32", ["rows", a.n]);
    const y = g.input("y", "float32", ["rows", a.m]);
    const d = g.sub(lora.linear(x, a), y);
    const perRow = g.reduceSum(g.mul(d, d), [1], false);
    const loss = g.mul(g.reduceMean(perRow, [0], false), g.scalar(0.5, "float32"));
    const io = lora.finish(loss);
    const session = await TrainingSession.create(g.build(), io, weights, kernel);
    return new RegressionModel(io.adapters, weights, session);
  }

  async forwardBackward(batch: RegressionBatch, factors: ReadonlyMap<string, AdapterFactors>): Promise<StepResult> {
    const r = await this.session.run(factors, this.#inputs(batch));
    return { loss: r.loss, grads: r.grads, count: batch.rows };
  }

  async evaluate(
    batch: RegressionBatch,
    factors: ReadonlyMap<string, AdapterFactors>,
  ): Promise<EvalResult> {
    const r = await this.session.run(factors, this.#inputs(batch), { grads: false });
    return { loss: r.loss, count: batch.rows };
  }

  #inputs(b: RegressionBatch) {
    const a = this.adapters[0];
    return {
      x: new ort.Tensor("float32", b.x, [b.rows, a.n]),
      y: new ort.Tensor("float32", b.y, [b.rows, a.m]),
    };
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.weights.release();
  }
}
