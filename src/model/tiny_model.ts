/**
 * Deterministic random-weight test models written as complete HF model
 * directories (config.json, generation_config.json, safetensors weights,
 * tokenizer files), so the whole load -> compile -> serve path runs without
 * the hub. Same options -> byte-identical files.
 *
 * Weights: each tensor draws from its own seeded stream (`Rng(seed, name)`),
 * so values do not depend on write order or sharding.
 * Scales keep activations O(1) through the residual stream and spread logits
 * widely (std ~8), so greedy decoding rarely hinges on near-ties.
 */
import { type Architecture, ARCHITECTURE_HF_NAMES, type ModelConfig, parseModelConfig } from "./config.ts";
import { parameterCount, type TensorSpec, weightLayout } from "./layout.ts";
import { Rng } from "./rng.ts";
import { type FloatDtype, type TensorToWrite, writeSafetensors } from "./safetensors.ts";
import { bytesTokenizerFiles, qwen3TokenizerFiles, type TokenizerFiles } from "./tokenizer_files.ts";

export type TinyPreset = "tiny" | "smollm2-135m" | "llama3.2-1b";
export type TinyTokenizer = "bytes" | "qwen3";

export const TINY_ARCHITECTURES: readonly Architecture[] = ["qwen3", "llama", "qwen2", "mistral"];
export const TINY_PRESETS: readonly TinyPreset[] = ["tiny", "smollm2-135m", "llama3.2-1b"];

/** Presets with a real model's shapes: llama models only. */
export function presetArchitecture(preset: TinyPreset): Architecture | null {
  return preset === "tiny" ? null : "llama";
}
export const TINY_TOKENIZERS: readonly TinyTokenizer[] = ["bytes", "qwen3"];

export interface TinyModelOptions {
  /** Output directory (created if needed; our files in it are replaced). */
  out: string;
  arch: Architecture;
  preset: TinyPreset;
  tokenizer: TinyTokenizer;
  seed: number;
  /** Storage dtype of the weights; default F32. */
  dtype?: FloatDtype;
  /** Number of safetensors shards; > 1 writes an index. Default 1. */
  shards?: number;
}

export interface TinyModelResult {
  dir: string;
  config: ModelConfig;
  rawConfig: Record<string, unknown>;
  /** Names of the files written, relative to `dir`. */
  files: string[];
  parameterCount: number;
}

/** What the config needs from the tokenizer. */
export type TokenizerIds = Pick<TokenizerFiles, "vocabSize" | "bosTokenId" | "eosTokenIds" | "padTokenId">;

export class TinyModelError extends Error {
  override readonly name = "TinyModelError";
}

const TORCH_DTYPES: Record<FloatDtype, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/**
 * The config.json a generated model gets. Exported so tests can check the
 * big preset's config and layout without writing 500 MB.
 */
export function tinyModelRawConfig(
  arch: Architecture,
  preset: TinyPreset,
  tok: TokenizerIds,
  dtype: FloatDtype = "F32",
): Record<string, unknown> {
  const fixed = presetArchitecture(preset);
  if (fixed && arch !== fixed) {
    throw new TinyModelError(`preset ${preset} is a ${fixed} model; use --arch ${fixed} (got ${arch})`);
  }
  // No padding rows: a random model would sample ids the tokenizer cannot decode.
  const padded = tok.vocabSize;
  const eos = tok.eosTokenIds.length === 1 ? tok.eosTokenIds[0] : [...tok.eosTokenIds];
  const { architecture, modelType } = ARCHITECTURE_HF_NAMES[arch];
  const common = {
    architectures: [architecture],
    model_type: modelType,
    hidden_act: "silu",
    initializer_range: 0.02,
    attention_dropout: 0.0,
    use_cache: true,
    bos_token_id: tok.bosTokenId,
    eos_token_id: eos,
    pad_token_id: tok.padTokenId,
    torch_dtype: TORCH_DTYPES[dtype],
  };

  if (preset === "smollm2-135m") {
    return {
      ...common,
      // SmolLM2-135M's shapes; a larger tokenizer grows the vocabulary.
      vocab_size: Math.max(49152, padded),
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      max_position_embeddings: 8192,
      rms_norm_eps: 1e-5,
      rope_theta: 100000,
      rope_scaling: null,
      attention_bias: false,
      mlp_bias: false,
      pretraining_tp: 1,
      tie_word_embeddings: true,
    };
  }

  if (preset === "llama3.2-1b") {
    return {
      ...common,
      // Llama-3.2-1B's shapes (1.24B parameters with its 128k vocabulary).
      vocab_size: Math.max(128256, padded),
      hidden_size: 2048,
      intermediate_size: 8192,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 64,
      max_position_embeddings: 131072,
      rms_norm_eps: 1e-5,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: "llama3",
        factor: 32,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
      attention_bias: false,
      mlp_bias: false,
      pretraining_tp: 1,
      tie_word_embeddings: true,
    };
  }

  const tiny = {
    ...common,
    vocab_size: padded,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
  };
  switch (arch) {
    case "llama":
      // llama3 rope scaling with a short original context so all three
      // frequency bands (kept, smoothed, divided) occur at head_dim 16.
      return {
        ...tiny,
        rope_theta: 10000,
        rope_scaling: {
          rope_type: "llama3",
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 256,
        },
        attention_bias: false,
        mlp_bias: false,
        tie_word_embeddings: false,
      };
    case "mistral":
      // A window short enough that ordinary test prompts cross it.
      return { ...tiny, rope_theta: 10000, sliding_window: 64, tie_word_embeddings: false };
    case "qwen2":
      return {
        ...tiny,
        rope_theta: 1000000,
        rope_scaling: null,
        use_sliding_window: false,
        sliding_window: null,
        max_window_layers: 2,
        tie_word_embeddings: true,
      };
    case "qwen3":
      // head_dim 32 != hidden/heads (16), as in real Qwen3 models.
      return {
        ...tiny,
        head_dim: 32,
        rope_theta: 1000000,
        rope_scaling: null,
        attention_bias: false,
        use_sliding_window: false,
        sliding_window: null,
        max_window_layers: 2,
        tie_word_embeddings: true,
      };
  }
}

/**
 * Initial values of one tensor, a pure function of (seed, name, shape, config).
 *
 * Measured with the f64 reference forward on the tiny presets (8 seeds, 2
 * prompts, 20 greedy steps): the median top-1/top-2 gap is 0.3-0.65 logit
 * std (std ~8) and 1-2.5% of steps have a gap under 1% of the std.
 * - Untied lm_head rows get a lognormal scale (sigma 0.5): heavier-tailed
 *   logits leave clearer top-1/top-2 gaps than iid rows.
 * - Tied models put the output row of the current token into the residual
 *   stream, so random ones mostly echo their input; large residual writes
 *   (o_proj/down_proj gain ~32 over the whole stack) drown that out.
 */
export function tinyTensorData(seed: number, spec: TensorSpec, config: ModelConfig): Float32Array {
  const rng = new Rng(seed, spec.name);
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const name = spec.name;
  if (name.endsWith("norm.weight")) return rng.fillNormal(out, 0.1, 1);
  if (name.endsWith(".bias")) return rng.fillNormal(out, 0.2);
  if (name === "model.embed_tokens.weight") return rng.fillNormal(out, 1);
  if (name === "lm_head.weight") {
    rng.fillNormal(out, 1);
    const [rows, cols] = spec.shape;
    const rowRng = new Rng(seed, `${name}#row_scale`);
    for (let r = 0; r < rows; r++) {
      const scale = Math.exp(0.5 * rowRng.normal());
      for (let i = r * cols; i < (r + 1) * cols; i++) out[i] *= scale;
    }
    return out;
  }
  // Linear [out, in]: variance gain^2 / fan_in keeps each block's output O(1)
  // times the gain (block inputs are RMS-normalised).
  const residualWrite = name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight");
  const gain = residualWrite && config.tieWordEmbeddings ? 45 / Math.sqrt(config.numLayers) : 1;
  return rng.fillNormal(out, gain / Math.sqrt(spec.shape[spec.shape.length - 1]));
}

export async function generateTinyModel(opts: TinyModelOptions): Promise<TinyModelResult> {
  const dtype = opts.dtype ?? "F32";
  const shards = opts.shards ?? 1;
  if (!Number.isSafeInteger(opts.seed)) throw new TinyModelError(`seed must be an integer, got ${opts.seed}`);
  if (!Number.isInteger(shards) || shards < 1) {
    throw new TinyModelError(`shards must be a positive integer, got ${shards}`);
  }
  const tok = opts.tokenizer === "bytes" ? bytesTokenizerFiles({ modelMaxLength: 2048 }) : await qwen3TokenizerFiles();
  const rawConfig = tinyModelRawConfig(opts.arch, opts.preset, tok, dtype);
  const config = parseModelConfig(rawConfig);
  const layout = weightLayout(config);
  if (shards > layout.length) {
    throw new TinyModelError(`shards (${shards}) exceeds the number of tensors (${layout.length})`);
  }

  const dir = opts.out.replace(/\/+$/, "") || ".";
  await Deno.mkdir(dir, { recursive: true });
  await removeOldWeights(dir);
  const files: string[] = [];
  const writeText = async (name: string, text: string) => {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    files.push(name);
  };

  await writeText("config.json", toJson(sortKeys(rawConfig)));
  await writeText("generation_config.json", toJson(generationConfig(rawConfig)));
  for (const name of Object.keys(tok.files).sort()) await writeText(name, tok.files[name]);

  const groups = splitShards(layout, shards, dtype);
  const metadata = { format: "pt" };
  const toWrite = (specs: TensorSpec[]): TensorToWrite[] =>
    specs.map((spec) => ({ name: spec.name, shape: spec.shape, data: () => tinyTensorData(opts.seed, spec, config) }));
  if (groups.length === 1) {
    await writeSafetensors(`${dir}/model.safetensors`, toWrite(groups[0]), { dtype, metadata });
    files.push("model.safetensors");
  } else {
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (let i = 0; i < groups.length; i++) {
      const name = `model-${pad5(i + 1)}-of-${pad5(groups.length)}.safetensors`;
      await writeSafetensors(`${dir}/${name}`, toWrite(groups[i]), { dtype, metadata });
      files.push(name);
      for (const spec of groups[i]) {
        weightMap[spec.name] = name;
        totalSize += tensorBytes(spec, dtype);
      }
    }
    await writeText(
      "model.safetensors.index.json",
      toJson({ metadata: { total_size: totalSize }, weight_map: weightMap }),
    );
  }
  return { dir, config, rawConfig, files, parameterCount: parameterCount(config) };
}

function generationConfig(raw: Record<string, unknown>): Record<string, unknown> {
  return {
    bos_token_id: raw.bos_token_id,
    eos_token_id: raw.eos_token_id,
    pad_token_id: raw.pad_token_id,
  };
}

/** Contiguous groups of roughly equal byte size, none empty. */
function splitShards(layout: TensorSpec[], shards: number, dtype: FloatDtype): TensorSpec[][] {
  const total = layout.reduce((s, t) => s + tensorBytes(t, dtype), 0);
  const groups: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let done = 0;
  for (let i = 0; i < layout.length; i++) {
    current.push(layout[i]);
    done += tensorBytes(layout[i], dtype);
    const remainingTensors = layout.length - i - 1;
    const remainingGroups = shards - groups.length - 1;
    const target = (total * (groups.length + 1)) / shards;
    if (
      remainingGroups > 0 && remainingTensors >= remainingGroups &&
      (done >= target || remainingTensors === remainingGroups)
    ) {
      groups.push(current);
      current = [];
    }
  }
  groups.push(current);
  return groups;
}

function tensorBytes(spec: TensorSpec, dtype: FloatDtype): number {
  return spec.shape.reduce((a, b) => a * b, 1) * (dtype === "F32" ? 4 : 2);
}

/** Drops weight files of an earlier run (e.g. with another shard count). */
async function removeOldWeights(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    if (
      entry.isFile &&
      (entry.name === "model.safetensors" || entry.name === "model.safetensors.index.json" ||
        /^model-\d{5}-of-\d{5}\.safetensors$/.test(entry.name))
    ) {
      await Deno.remove(`${dir}/${entry.name}`);
    }
  }
}

/** HF writes config files with sorted keys; so do we. */
function sortKeys(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));
}

function pad5(n: number): string {
  return String(n).padStart(5, "0");
}

function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}
