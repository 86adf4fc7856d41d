/**
 * The optimizer update of all adapter tensors in one run: optional ScaLoRA
 * rescale (ColumnScale of the parameter, MomentTransform of its gradient and
 * moments), then AdamWStep. Results are copied back into the caller's
 * buffers, so the trainer's arrays keep their identity.
 */
import { GraphBuilder } from "../src/onnx/builder.ts";
import type { Value } from "../src/onnx/ir.ts";
import { ort } from "../src/runtime/ort.ts";
import type { SessionOptions } from "../src/runtime/session.ts";
import { adamwStepFn, columnScaleFn, momentTransformFn, SCALORA_DOMAIN } from "./functions.ts";
import { KernelError, KernelSessions } from "./kernel_sessions.ts";

/** One parameter tensor (rows x cols, row-major) with its gradient and Adam moments. */
export interface AdamWTensor {
  rows: number;
  cols: number;
  p: Float32Array;
  g: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** Column scale of the parameter (ScaLoRA: α for A, β for B); default ones. */
  paramScale?: Float32Array;
  /** Column scale of gradient and first moment, squared for the second (β for A, α for B); default ones. */
  momentScale?: Float32Array;
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count for bias correction. */
  step: number;
  /** Multiplies every gradient first (global-norm clipping, accumulation averaging). */
  gradScale: number;
}

/**
 * Every parameter in one flat vector (AdapterOptimizer's layout): one run of
 * a handful of nodes instead of ~18 per tensor (a 135M model's 420 adapter
 * tensors made ~7,500 tiny nodes and as many outputs per step).
 */
export interface AdamWFlat {
  p: Float32Array;
  g: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** Per element: the column scale of its tensor (AdamWTensor.paramScale expanded); default ones. */
  paramScale?: Float32Array;
  /** Per element: AdamWTensor.momentScale expanded; default ones. */
  momentScale?: Float32Array;
}

const SCALARS = ["lr", "beta1", "beta2", "eps", "weight_decay", "step", "grad_scale"] as const;

/** The step's hyper-parameters as the scalar inputs both AdamW graphs take. */
function hyperFeeds(hp: AdamWHyper): Record<string, ort.Tensor> {
  const scalar = (x: number) => new ort.Tensor("float32", Float32Array.of(x), []);
  return {
    lr: scalar(hp.lr),
    beta1: scalar(hp.beta1),
    beta2: scalar(hp.beta2),
    eps: scalar(hp.eps),
    weight_decay: scalar(hp.weightDecay),
    step: scalar(hp.step),
    grad_scale: scalar(hp.gradScale),
  };
}

export class AdamWKernel {
  readonly #sessions: KernelSessions;
  readonly #ones = new Map<number, Float32Array>();

  constructor(options: SessionOptions) {
    this.#sessions = new KernelSessions(options);
  }

  /** Updates each tensor's p, m, v in place. */
  async run(tensors: readonly AdamWTensor[], hp: AdamWHyper): Promise<void> {
    if (tensors.length === 0) return;
    if (!(hp.step >= 1)) throw new KernelError(`AdamW: step must be >= 1, got ${hp.step}`);
    const key = tensors.map((t) => `${t.rows}x${t.cols}`).join(",");
    const session = await this.#sessions.get(key, () => buildModel(tensors));
    const feeds = hyperFeeds(hp);
    tensors.forEach((t, i) => {
      const n = t.rows * t.cols;
      if (t.p.length !== n || t.g.length !== n || t.m.length !== n || t.v.length !== n) {
        throw new KernelError(`AdamW: tensor ${i} buffers do not match ${t.rows}x${t.cols}`);
      }
      const dims = [t.rows, t.cols];
      feeds[`p.${i}`] = new ort.Tensor("float32", t.p, dims);
      feeds[`g.${i}`] = new ort.Tensor("float32", t.g, dims);
      feeds[`m.${i}`] = new ort.Tensor("float32", t.m, dims);
      feeds[`v.${i}`] = new ort.Tensor("float32", t.v, dims);
      feeds[`dp.${i}`] = new ort.Tensor("float32", this.#scale(t.paramScale, t.cols), [t.cols]);
      feeds[`dg.${i}`] = new ort.Tensor("float32", this.#scale(t.momentScale, t.cols), [t.cols]);
    });
    const out = await session.run(feeds);
    tensors.forEach((t, i) => {
      t.p.set(out[`p_out.${i}`].data as Float32Array);
      t.m.set(out[`m_out.${i}`].data as Float32Array);
      t.v.set(out[`v_out.${i}`].data as Float32Array);
    });
  }

  /**
   * Updates p, m, v in place, element for element what `run` computes for
   * the same tensors (scales of one are exact, so an unscaled step skips them).
   */
  async runFlat(t: AdamWFlat, hp: AdamWHyper): Promise<void> {
    const n = t.p.length;
    if (!(hp.step >= 1)) throw new KernelError(`AdamW: step must be >= 1, got ${hp.step}`);
    const lengths = [t.g, t.m, t.v, t.paramScale ?? t.p, t.momentScale ?? t.p].map((x) => x.length);
    if (lengths.some((l) => l !== n)) throw new KernelError(`AdamW: flat buffers do not all hold ${n} values`);
    if (!!t.paramScale !== !!t.momentScale) throw new KernelError("AdamW: give both scales or neither");
    const scaled = !!t.paramScale;
    const session = await this.#sessions.get(`flat:${n}:${scaled}`, () => buildFlatModel(n, scaled));
    const vec = (x: Float32Array) => new ort.Tensor("float32", x, [n]);
    const feeds: Record<string, ort.Tensor> = {
      ...hyperFeeds(hp),
      p: vec(t.p),
      g: vec(t.g),
      m: vec(t.m),
      v: vec(t.v),
      ...(scaled ? { dp: vec(t.paramScale!), dg: vec(t.momentScale!) } : {}),
    };
    const out = await session.run(feeds);
    t.p.set(out.p_out.data as Float32Array);
    t.m.set(out.m_out.data as Float32Array);
    t.v.set(out.v_out.data as Float32Array);
  }

  #scale(d: Float32Array | undefined, cols: number): Float32Array {
    if (d) {
      if (d.length !== cols) throw new KernelError(`AdamW: column scale has ${d.length} entries, expected ${cols}`);
      return d;
    }
    let ones = this.#ones.get(cols);
    if (!ones) this.#ones.set(cols, ones = new Float32Array(cols).fill(1));
    return ones;
  }

  release(): Promise<void> {
    return this.#sessions.release();
  }
}

function buildModel(tensors: readonly AdamWTensor[]) {
  const g = new GraphBuilder("adamw");
  for (const f of [columnScaleFn, momentTransformFn, adamwStepFn]) g.addFunction(f);
  const s = Object.fromEntries(SCALARS.map((k) => [k, g.input(k, "float32", [])])) as Record<
    typeof SCALARS[number],
    Value
  >;
  tensors.forEach((t, i) => {
    const dims = [t.rows, t.cols];
    const type = { dtype: "float32" as const, shape: dims };
    const p = g.input(`p.${i}`, "float32", dims);
    const grad = g.input(`g.${i}`, "float32", dims);
    const m = g.input(`m.${i}`, "float32", dims);
    const v = g.input(`v.${i}`, "float32", dims);
    const dp = g.input(`dp.${i}`, "float32", [t.cols]);
    const dg = g.input(`dg.${i}`, "float32", [t.cols]);
    const call = (op: string, ins: Value[], n: number, names?: string[]) =>
      g.op(op, ins, {}, { domain: SCALORA_DOMAIN, types: Array(n).fill(type), names });
    const [ps] = call("ColumnScale", [p, dp], 1);
    const [gt, mt, vt] = call("MomentTransform", [g.mul(grad, s.grad_scale), m, v, dg], 3);
    const outs = call(
      "AdamWStep",
      [ps, gt, mt, vt, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.step],
      3,
      [`p_out.${i}`, `m_out.${i}`, `v_out.${i}`],
    );
    for (const o of outs) g.output(o);
  });
  return g.build();
}

function buildFlatModel(n: number, scaled: boolean) {
  const g = new GraphBuilder("adamw");
  for (const f of [columnScaleFn, momentTransformFn, adamwStepFn]) g.addFunction(f);
  const s = Object.fromEntries(SCALARS.map((k) => [k, g.input(k, "float32", [])])) as Record<
    typeof SCALARS[number],
    Value
  >;
  const type = { dtype: "float32" as const, shape: [n] };
  const call = (op: string, ins: Value[], k: number, names?: string[]) =>
    g.op(op, ins, {}, { domain: SCALORA_DOMAIN, types: Array(k).fill(type), names });
  let p = g.input("p", "float32", [n]), grad = g.mul(g.input("g", "float32", [n]), s.grad_scale);
  let m = g.input("m", "float32", [n]), v = g.input("v", "float32", [n]);
  if (scaled) {
    const dp = g.input("dp", "float32", [n]), dg = g.input("dg", "float32", [n]);
    [p] = call("ColumnScale", [p, dp], 1);
    [grad, m, v] = call("MomentTransform", [grad, m, v, dg], 3);
  }
  const outs = call("AdamWStep", [p, grad, m, v, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.step], 3, [
    "p_out",
    "m_out",
    "v_out",
  ]);
  for (const o of outs) g.output(o);
  return g.build();
}
