/** In-memory random-weight models for graph tests (no files, any config). */
import type { ModelConfig } from "../../src/model/config.ts";
import { weightLayout } from "../../src/model/layout.ts";
import { Rng } from "../../src/model/rng.ts";
import type { WeightSource } from "../../src/model/serving_graph.ts";

export function tinyConfig(overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: "llama",
    modelType: "llama",
    vocabSize: 97,
    hiddenSize: 32,
    intermediateSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    maxPositionEmbeddings: 512,
    tieWordEmbeddings: false,
    attentionBias: false,
    qkNorm: false,
    slidingWindow: null,
    bosTokenId: null,
    eosTokenIds: [0],
    torchDtype: "float32",
    ...overrides,
  };
}

/** The config variants the serving graph must reproduce exactly. */
export const VARIANTS: Record<string, ModelConfig> = {
  llama3_rope_untied: tinyConfig({
    ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
  }),
  smollm2_tied_linear_rope: tinyConfig({ tieWordEmbeddings: true, ropeScaling: { type: "linear", factor: 2 } }),
  mistral_sliding_window: tinyConfig({ architecture: "mistral", modelType: "mistral", slidingWindow: 5 }),
  qwen2_qkv_bias: tinyConfig({
    architecture: "qwen2",
    modelType: "qwen2",
    attentionBias: true,
    tieWordEmbeddings: true,
  }),
  qwen3_qk_norm_wide_heads: tinyConfig({
    architecture: "qwen3",
    modelType: "qwen3",
    qkNorm: true,
    headDim: 16,
    ropeTheta: 1000000,
  }),
  mha_no_gqa: tinyConfig({ numKvHeads: 4 }),
};

export interface MemoryModel extends WeightSource {
  tensors: Map<string, { data: Float32Array; shape: number[] }>;
}

export function randomModel(config: ModelConfig, seed = 1): MemoryModel {
  const tensors = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const { name, shape } of weightLayout(config)) {
    const rng = new Rng(seed, name);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = name.endsWith("norm.weight");
    const scale = name.endsWith(".bias")
      ? 0.1
      : shape.length === 2 && !name.includes("embed")
      ? 1 / Math.sqrt(shape[1])
      : 1;
    for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + 0.1 * rng.normal() : scale * rng.normal();
    tensors.set(name, { data, shape });
  }
  return {
    config,
    tensors,
    read: (name) => {
      const t = tensors.get(name);
      if (!t) throw new Error(`no tensor ${name}`);
      return Promise.resolve(t.data);
    },
  };
}
