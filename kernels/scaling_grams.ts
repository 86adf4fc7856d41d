/** Runs ScalingGrams for many layers in one session run. */
import { GraphBuilder } from "../src/onnx/builder.ts";
import { ort } from "../src/runtime/ort.ts";
import type { SessionOptions } from "../src/runtime/session.ts";
import { scalingGramsFn, SCALORA_DOMAIN } from "./functions.ts";
import { KernelError, KernelSessions } from "./kernel_sessions.ts";

/** One layer's factors and gradients, row-major float32: A, gA m x r; B, gB n x r. */
export interface GramInput {
  m: number;
  n: number;
  r: number;
  A: Float32Array;
  B: Float32Array;
  gA: Float32Array;
  gB: Float32Array;
}

/** The five r x r Grams of SCALORA.md, row-major float64; P = gA, Q = gB. */
export interface ScalingGrams {
  r: number;
  AtA: Float64Array;
  BtB: Float64Array;
  PtP: Float64Array;
  QtQ: Float64Array;
  AtP: Float64Array;
}

const OUTS = ["AtA", "BtB", "PtP", "QtQ", "AtP"] as const;

export class ScalingGramsKernel {
  readonly #sessions: KernelSessions;

  constructor(options: SessionOptions) {
    // On the CPU provider whatever the training device: the factors and
    // gradients are host arrays (a GPU run would copy 16 bytes per adapter
    // parameter for O((m + n)·r²) flops per layer), and WebGPU has no float64.
    this.#sessions = new KernelSessions({ ...options, device: "cpu" });
  }

  async run(layers: readonly GramInput[]): Promise<ScalingGrams[]> {
    if (layers.length === 0) return [];
    for (const [i, l] of layers.entries()) {
      const ok = l.A.length === l.m * l.r && l.gA.length === l.m * l.r && l.B.length === l.n * l.r &&
        l.gB.length === l.n * l.r;
      if (!ok) throw new KernelError(`ScalingGrams: layer ${i} buffers do not match m=${l.m} n=${l.n} r=${l.r}`);
    }
    const key = layers.map((l) => `${l.m}x${l.n}x${l.r}`).join(",");
    const session = await this.#sessions.get(key, () => buildModel(layers));
    const feeds: Record<string, ort.Tensor> = {};
    layers.forEach((l, i) => {
      feeds[`A.${i}`] = new ort.Tensor("float32", l.A, [l.m, l.r]);
      feeds[`B.${i}`] = new ort.Tensor("float32", l.B, [l.n, l.r]);
      feeds[`gA.${i}`] = new ort.Tensor("float32", l.gA, [l.m, l.r]);
      feeds[`gB.${i}`] = new ort.Tensor("float32", l.gB, [l.n, l.r]);
    });
    const out = await session.run(feeds);
    return layers.map((l, i) => {
      const get = (k: string) => out[`${k}.${i}`].data as Float64Array;
      return { r: l.r, AtA: get("AtA"), BtB: get("BtB"), PtP: get("PtP"), QtQ: get("QtQ"), AtP: get("AtP") };
    });
  }

  release(): Promise<void> {
    return this.#sessions.release();
  }
}

function buildModel(layers: readonly GramInput[]) {
  const g = new GraphBuilder("scaling_grams");
  g.addFunction(scalingGramsFn);
  layers.forEach((l, i) => {
    const ins = [
      g.input(`A.${i}`, "float32", [l.m, l.r]),
      g.input(`B.${i}`, "float32", [l.n, l.r]),
      g.input(`gA.${i}`, "float32", [l.m, l.r]),
      g.input(`gB.${i}`, "float32", [l.n, l.r]),
    ];
    const outs = g.op("ScalingGrams", ins, {}, {
      domain: SCALORA_DOMAIN,
      names: OUTS.map((k) => `${k}.${i}`),
      types: OUTS.map(() => ({ dtype: "float64" as const, shape: [l.r, l.r] })),
    });
    for (const o of outs) g.output(o);
  });
  return g.build();
}
