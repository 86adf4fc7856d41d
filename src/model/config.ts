/**
 * Normalised model configuration: what the graph builders and the reference
 * forward need, parsed once from a HF `config.json` (see `parseModelConfig`).
 */
import { z } from "zod";
import { ModelLoadError } from "./errors.ts";

export type Architecture = "llama" | "mistral" | "qwen2" | "qwen3";

export type RopeScaling =
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  }
  | { type: "linear"; factor: number };

export interface ModelConfig {
  architecture: Architecture;
  /** `model_type` as written in config.json. */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections (Qwen2). */
  attentionBias: boolean;
  /** Per-head RMSNorm on q and k before rotary (Qwen3). */
  qkNorm: boolean;
  /** Mistral/Qwen2 sliding-window attention; null = full attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** `torch_dtype` / `dtype` from config.json, informational. */
  torchDtype: string | null;
}

/** HF `architectures[0]` -> our architecture. */
export const HF_ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "mistral",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
};

/** Our architecture -> what a generated config.json says. */
export const ARCHITECTURE_HF_NAMES: Readonly<
  Record<Architecture, { architecture: string; modelType: string }>
> = {
  llama: { architecture: "LlamaForCausalLM", modelType: "llama" },
  mistral: { architecture: "MistralForCausalLM", modelType: "mistral" },
  qwen2: { architecture: "Qwen2ForCausalLM", modelType: "qwen2" },
  qwen3: { architecture: "Qwen3ForCausalLM", modelType: "qwen3" },
};

/** Defaults of the HF config classes for fields a config.json may omit. */
const HF_DEFAULTS: Record<
  Architecture,
  { maxPositionEmbeddings: number; maxWindowLayers: number }
> = {
  llama: { maxPositionEmbeddings: 2048, maxWindowLayers: 0 },
  mistral: { maxPositionEmbeddings: 4096 * 32, maxWindowLayers: 0 },
  qwen2: { maxPositionEmbeddings: 32768, maxWindowLayers: 28 },
  qwen3: { maxPositionEmbeddings: 32768, maxWindowLayers: 28 },
};
/** MistralConfig's default when `sliding_window` is absent (not null). */
const MISTRAL_DEFAULT_SLIDING_WINDOW = 4096;

const FILE = "config.json";

const positiveInt = (what = "a positive integer") =>
  z.number({ error: `must be ${what}` }).int({ error: `must be ${what}` })
    .positive({ error: `must be ${what}` });
const tokenId = z.number({ error: "must be a token id" })
  .int({ error: "must be a token id" }).nonnegative({
    error: "must be a token id",
  });
const positiveNumber = z.number({ error: "must be a positive number" })
  .positive({ error: "must be a positive number" });
const bool = z.boolean({ error: "must be true or false" });
const str = z.string({ error: "must be a string" });

/** The raw config.json fields we read; anything else is passed through. */
const RawConfigSchema = z.looseObject({
  architectures: z.array(str, { error: "must be a list of strings" })
    .nullish(),
  model_type: str.nullish(),
  vocab_size: positiveInt(),
  hidden_size: positiveInt(),
  intermediate_size: positiveInt(),
  num_hidden_layers: positiveInt(),
  num_attention_heads: positiveInt(),
  num_key_value_heads: positiveInt().nullish(),
  head_dim: positiveInt().nullish(),
  rms_norm_eps: positiveNumber.nullish(),
  rope_theta: positiveNumber.nullish(),
  rope_scaling: z.record(z.string(), z.unknown(), {
    error: "must be an object or null",
  }).nullish(),
  rope_parameters: z.record(z.string(), z.unknown(), {
    error: "must be an object or null",
  }).nullish(),
  max_position_embeddings: positiveInt().nullish(),
  tie_word_embeddings: bool.nullish(),
  attention_bias: bool.nullish(),
  mlp_bias: bool.nullish(),
  hidden_act: str.nullish(),
  sliding_window: positiveInt().nullish(),
  use_sliding_window: bool.nullish(),
  max_window_layers: z.number({ error: "must be a non-negative integer" })
    .int({ error: "must be a non-negative integer" })
    .nonnegative({ error: "must be a non-negative integer" }).nullish(),
  layer_types: z.array(str, { error: "must be a list of strings" }).nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)], {
    error: "must be a token id or a list of token ids",
  }).nullish(),
  torch_dtype: str.nullish(),
  dtype: str.nullish(),
});
type RawConfig = z.infer<typeof RawConfigSchema>;

/**
 * Parses and validates a HF `config.json` object. Throws `ModelLoadError`
 * (one line, naming the field) for anything we cannot serve faithfully.
 */
export function parseModelConfig(raw: unknown): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelLoadError(`${FILE}: expected a JSON object`, { file: FILE });
  }
  const parsed = RawConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue.path.map(String).join(".");
    const got = valueAt(raw, issue.path);
    throw fieldError(
      field,
      `${issue.message} (got ${got === undefined ? "nothing" : preview(got)})`,
    );
  }
  const c = parsed.data;
  const architecture = resolveArchitecture(c);

  const numHeads = c.num_attention_heads;
  const numKvHeads = c.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw fieldError(
      "num_key_value_heads",
      `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  if (c.head_dim == null && c.hidden_size % numHeads !== 0) {
    throw fieldError(
      "num_attention_heads",
      `hidden_size (${c.hidden_size}) must be a multiple of num_attention_heads (${numHeads}) when head_dim is not given`,
    );
  }
  const headDim = c.head_dim ?? c.hidden_size / numHeads;

  const act = c.hidden_act ?? "silu";
  if (act !== "silu") {
    throw fieldError(
      "hidden_act",
      `unsupported activation ${JSON.stringify(act)}; supported: silu`,
    );
  }
  if (c.mlp_bias === true) {
    throw fieldError("mlp_bias", "MLP biases (mlp_bias: true) are not supported");
  }
  // Llama/Qwen3 `attention_bias` also puts a bias on o_proj, which the
  // normalised config cannot express; Qwen2 always has q/k/v bias only.
  if (
    (architecture === "llama" || architecture === "qwen3") &&
    c.attention_bias === true
  ) {
    throw fieldError(
      "attention_bias",
      `attention_bias: true (bias on q/k/v/o projections) is not supported for ${architecture}`,
    );
  }

  const rope = parseRope(c);
  const eos = c.eos_token_id;
  return {
    architecture,
    modelType: c.model_type ?? ARCHITECTURE_HF_NAMES[architecture].modelType,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps ?? 1e-6,
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    maxPositionEmbeddings: c.max_position_embeddings ??
      HF_DEFAULTS[architecture].maxPositionEmbeddings,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    attentionBias: architecture === "qwen2",
    qkNorm: architecture === "qwen3",
    slidingWindow: parseSlidingWindow(c, architecture),
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? [...eos] : [eos],
    torchDtype: c.torch_dtype ?? c.dtype ?? null,
  };
}

function resolveArchitecture(c: RawConfig): Architecture {
  const supported = Object.keys(HF_ARCHITECTURES).join(", ");
  const name = c.architectures?.[0];
  if (name !== undefined) {
    const arch = HF_ARCHITECTURES[name];
    if (arch === undefined) {
      throw new ModelLoadError(
        `${FILE}: unsupported architecture ${JSON.stringify(name)} (field "architectures"); supported: ${supported}`,
        { field: "architectures", file: FILE },
      );
    }
    return arch;
  }
  // No `architectures`: fall back to model_type, as HF Auto classes do.
  const byType = Object.values(ARCHITECTURE_HF_NAMES).find((n) => n.modelType === c.model_type);
  if (byType === undefined) {
    throw new ModelLoadError(
      c.model_type == null
        ? `${FILE}: missing field "architectures" (and no "model_type"); supported: ${supported}`
        : `${FILE}: unsupported model_type ${
          JSON.stringify(c.model_type)
        } (field "model_type") and no "architectures"; supported: ${supported}`,
      { field: c.model_type == null ? "architectures" : "model_type", file: FILE },
    );
  }
  return HF_ARCHITECTURES[byType.architecture];
}

/**
 * Rope theta and scaling from `rope_theta`/`rope_scaling`, or from the newer
 * `rope_parameters` object (which carries `rope_theta` itself).
 */
function parseRope(
  c: RawConfig,
): { theta: number; scaling: RopeScaling | null } {
  let prefix = "rope_scaling";
  let source = c.rope_scaling ?? null;
  let theta = c.rope_theta ?? 10000;
  if (c.rope_parameters != null) {
    prefix = "rope_parameters";
    source = c.rope_parameters;
    const hasType = "rope_type" in source || "type" in source;
    if (
      !hasType &&
      Object.values(source).some((v) => typeof v === "object" && v !== null)
    ) {
      throw fieldError(
        prefix,
        "per-layer-type rope parameters are not supported",
      );
    }
    if (source.rope_theta !== undefined) {
      theta = numberField(source, prefix, "rope_theta");
    }
  }
  if (source === null) return { theta, scaling: null };

  const typeKey = "rope_type" in source ? "rope_type" : "type";
  const type = source[typeKey] ?? "default";
  switch (type) {
    case "default":
      return { theta, scaling: null };
    case "linear":
      return {
        theta,
        scaling: { type: "linear", factor: numberField(source, prefix, "factor") },
      };
    case "llama3":
      return {
        theta,
        scaling: {
          type: "llama3",
          factor: numberField(source, prefix, "factor"),
          lowFreqFactor: numberField(source, prefix, "low_freq_factor"),
          highFreqFactor: numberField(source, prefix, "high_freq_factor"),
          originalMaxPositionEmbeddings: numberField(
            source,
            prefix,
            "original_max_position_embeddings",
          ),
        },
      };
    default:
      throw fieldError(
        `${prefix}.${typeKey}`,
        `unsupported rope type ${preview(type)}; supported: default, linear, llama3`,
      );
  }
}

function numberField(
  obj: Record<string, unknown>,
  prefix: string,
  key: string,
): number {
  const v = obj[key];
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw fieldError(
      `${prefix}.${key}`,
      `must be a positive number (got ${v === undefined ? "nothing" : preview(v)})`,
    );
  }
  return v;
}

/**
 * Effective sliding window, following the HF config classes: Mistral slides
 * on every layer whenever `sliding_window` is set; Qwen2/Qwen3 only with
 * `use_sliding_window`, and then only on layers >= `max_window_layers`.
 * `layer_types`, when present, says per layer. Mixed full/sliding layers are
 * not supported.
 */
function parseSlidingWindow(
  c: RawConfig,
  arch: Architecture,
): number | null {
  let window: number | null;
  if (arch === "mistral") {
    window = c.sliding_window === undefined ? MISTRAL_DEFAULT_SLIDING_WINDOW : c.sliding_window;
  } else if (arch === "qwen2" || arch === "qwen3") {
    if (c.use_sliding_window !== true) return null;
    if (c.sliding_window == null) {
      throw fieldError(
        "sliding_window",
        "must be set when use_sliding_window is true",
      );
    }
    window = c.sliding_window;
  } else {
    // LlamaConfig has no sliding window.
    return null;
  }
  if (window === null) return null;

  const n = c.num_hidden_layers;
  let sliding: boolean[];
  let field: string;
  if (c.layer_types != null) {
    field = "layer_types";
    if (c.layer_types.length !== n) {
      throw fieldError(
        field,
        `has ${c.layer_types.length} entries but num_hidden_layers is ${n}`,
      );
    }
    sliding = c.layer_types.map((t) => t === "sliding_attention");
  } else if (arch === "mistral") {
    return window;
  } else {
    field = "max_window_layers";
    const fullLayers = c.max_window_layers ??
      HF_DEFAULTS[arch].maxWindowLayers;
    sliding = Array.from({ length: n }, (_, i) => i >= fullLayers);
  }
  if (sliding.every((s) => s)) return window;
  if (sliding.every((s) => !s)) return null;
  throw fieldError(
    field,
    `mixing full-attention and sliding-window layers is not supported (${
      sliding.filter((s) => s).length
    } of ${n} layers slide)`,
  );
}

function fieldError(field: string, what: string): ModelLoadError {
  return new ModelLoadError(`${FILE}: field "${field}" ${what}`, {
    field,
    file: FILE,
  });
}

function valueAt(raw: object, path: readonly PropertyKey[]): unknown {
  let v: unknown = raw;
  for (const key of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** JSON preview of a value, cut short to keep messages on one line. */
function preview(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
