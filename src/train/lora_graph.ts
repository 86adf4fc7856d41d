/**
 * LoRA hooks for training graphs, shared by the LM training graph and the
 * synthetic regression task.
 *
 * `LoraGraph.linear` emits `y = x·Wᵀ [+ x·V·Uᵀ] + s·((x·B)·Aᵀ)` with the
 * adapter factors as graph inputs `lora.<name>.A` [m, r] and
 * `lora.<name>.B` [n, r]. How the frozen W enters depends on the weight
 * state's layout (src/train/weight_state.ts):
 *   - "input" (CPU): W is the graph input `weight.<name>` [m, n], fed each run
 *     over JS memory that the trainer merges in place (ORT CPU does not copy);
 *   - "baked" (CUDA): W is the initializer `weight.<name>` (stays on the
 *     device) and the merges since the last bake arrive as small inputs
 *     `pending.<name>.U` [m, k] and `pending.<name>.V` [n, k] (k may be 0).
 * `finish` adds the backward pass with respect to every adapter input and
 * marks the outputs `loss`, `grad.<name>.A`, `grad.<name>.B` and metrics.
 *
 * Usage (see src/train/regression_model.ts for a complete model):
 *
 *     const weights = new CpuWeightState(new Map([["probe", { m: 64, n: 64, data: w0 }]]));
 *     const g = new GraphBuilder("train");
 *     const lora = new LoraGraph(g, weights.layout);
 *     const x = g.input("x", "float32", ["batch", 64]);
 *     const y = lora.linear(x, { name: "probe", m: 64, n: 64, rank: 8, scale: 1 });
 *     const loss = ...; // scalar float
 *     const io = lora.finish(loss, { correct });
 *     const session = await TrainingSession.create(g.build(), io, weights, { device: "cpu" });
 *     const step = await session.run(factors, { x: xTensor, ... }); // → loss, grads, metrics
 */
import type { GraphBuilder } from "../onnx/builder.ts";
import { addBackward } from "../onnx/autodiff.ts";
import { type DType, GraphError, type TensorSource, type Value } from "../onnx/ir.ts";
import type { AdapterSpec } from "./types.ts";

/** Graph input/output names of one adapted layer. */
export const loraNames = {
  A: (name: string) => `lora.${name}.A`,
  B: (name: string) => `lora.${name}.B`,
  gradA: (name: string) => `grad.${name}.A`,
  gradB: (name: string) => `grad.${name}.B`,
  weight: (name: string) => `weight.${name}`,
  pendingU: (name: string) => `pending.${name}.U`,
  pendingV: (name: string) => `pending.${name}.V`,
  /** Symbolic dim of the pending rank. */
  pendingRank: (name: string) => `pending_k.${name}`,
} as const;

export const LOSS_OUTPUT = "loss";

/** How frozen adapted weights enter the graph (chosen by the WeightState). */
export type FrozenWeightLayout =
  | { kind: "input" }
  /** `data(name)` is read at every serialisation, so a re-bake re-serialises the same graph with new weights. */
  | { kind: "baked"; data: (name: string) => TensorSource };

/** What a finished training graph takes and gives, by name. */
export interface TrainingGraphIO {
  readonly adapters: readonly AdapterSpec[];
  readonly layout: FrozenWeightLayout["kind"];
  readonly loss: string;
  /** Adapter name -> gradient output names. */
  readonly grads: ReadonlyMap<string, { A: string; B: string }>;
  /** Extra outputs (metrics), by name. */
  readonly metrics: readonly string[];
}

export class LoraGraph {
  readonly #adapters: AdapterSpec[] = [];
  readonly #factors = new Map<string, { A: Value; B: Value }>();

  constructor(readonly g: GraphBuilder, readonly layout: FrozenWeightLayout) {}

  get adapters(): readonly AdapterSpec[] {
    return this.#adapters;
  }

  /**
   * The adapted linear layer for x [..., n] → [..., m]. Each adapter name may
   * be used once (it names the graph inputs). Computes in x's dtype; W and the
   * factors are float32 inputs, cast when x is not.
   */
  linear(x: Value, spec: AdapterSpec, opts: { bias?: Value } = {}): Value {
    const { g } = this;
    const { name, m, n, rank } = spec;
    if (this.#factors.has(name)) throw new GraphError(`adapter "${name}" is already in the graph`);
    if (x.shape && x.shape.at(-1) !== n && typeof x.shape.at(-1) === "number") {
      throw new GraphError(`adapter "${name}": input has ${x.shape.at(-1)} features, layer expects ${n}`);
    }
    const to = (v: Value, dtype: DType) => g.cast(v, dtype);
    const A = g.input(loraNames.A(name), "float32", [m, rank]);
    const B = g.input(loraNames.B(name), "float32", [n, rank]);
    this.#factors.set(name, { A, B });
    this.#adapters.push({ ...spec });

    return g.scoped(`lora/${name}`, () => {
      const w = this.layout.kind === "input"
        ? g.input(loraNames.weight(name), "float32", [m, n])
        : g.initializer(loraNames.weight(name), "float32", [m, n], lazy(this.layout.data, name));
      let y = g.linear(x, to(w, x.dtype), opts.bias);
      if (this.layout.kind === "baked") {
        const k = loraNames.pendingRank(name);
        const U = g.input(loraNames.pendingU(name), "float32", [m, k]);
        const V = g.input(loraNames.pendingV(name), "float32", [n, k]);
        // x·V·Uᵀ: two thin products; with k = 0 they yield exact zeros.
        y = g.add(y, g.matmul(g.matmul(x, to(V, x.dtype)), g.transpose(to(U, x.dtype), [1, 0])));
      }
      // Scale the r-wide intermediate: cheaper than scaling either factor or the output.
      const xb = g.mul(g.matmul(x, to(B, x.dtype)), g.scalar(spec.scale, x.dtype));
      return g.add(y, g.matmul(xb, g.transpose(to(A, x.dtype), [1, 0])));
    });
  }

  /**
   * Adds the backward pass (wrt every adapter input) and marks the outputs.
   * `loss` must be a scalar; metrics are output under their keys. With
   * `backward`, the pass starts at `backward.from` with the gradient
   * `backward.seed` (d loss / d from, computed by the caller, e.g. a fused
   * loss), instead of differentiating `loss` itself.
   */
  finish(
    loss: Value,
    metrics: Record<string, Value> = {},
    backward?: { from: Value; seed: Value },
  ): TrainingGraphIO {
    const { g } = this;
    if (loss.shape && loss.shape.length !== 0) throw new GraphError(`loss must be a scalar, got [${loss.shape}]`);
    if (this.#adapters.length === 0) throw new GraphError("a training graph needs at least one adapter");
    const wrt = [...this.#factors.values()].flatMap((f) => [f.A, f.B]);
    const { grads } = backward
      ? addBackward(g, backward.from, wrt, { seed: backward.seed })
      : addBackward(g, loss, wrt);
    g.output(g.cast(loss, "float32"), LOSS_OUTPUT);
    const names = new Map<string, { A: string; B: string }>();
    for (const [name, f] of this.#factors) {
      const gA = g.output(grads.get(f.A.name)!, loraNames.gradA(name));
      const gB = g.output(grads.get(f.B.name)!, loraNames.gradB(name));
      names.set(name, { A: gA.name, B: gB.name });
    }
    for (const [key, v] of Object.entries(metrics)) g.output(v, key);
    return {
      adapters: this.#adapters.map((a) => ({ ...a })),
      layout: this.layout.kind,
      loss: LOSS_OUTPUT,
      grads: names,
      metrics: Object.keys(metrics),
    };
  }
}

function lazy(data: (name: string) => TensorSource, name: string): TensorSource {
  return () => {
    const d = data(name);
    return typeof d === "function" ? d() : d;
  };
}
