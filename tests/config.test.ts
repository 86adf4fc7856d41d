import assert from "node:assert/strict";
import { type ModelConfig, parseModelConfig } from "../src/model/config.ts";
import { ModelLoadError } from "../src/model/errors.ts";
import { parameterCount, weightLayout } from "../src/model/layout.ts";

// Trimmed copies of real config.json files (fields we read, plus noise).
const SMOLLM2_135M = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pad_token_id: 2,
  pretraining_tp: 1,
  rms_norm_eps: 1e-05,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.42.3",
  use_cache: true,
  vocab_size: 49152,
};

const LLAMA_32_1B = {
  architectures: ["LlamaForCausalLM"],
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: "silu",
  hidden_size: 2048,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-05,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  vocab_size: 128256,
};

const MISTRAL_7B_V01 = {
  architectures: ["MistralForCausalLM"],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-05,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  vocab_size: 32000,
};

const QWEN25_05B = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-06,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const QWEN3_06B = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: "qwen3",
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-06,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

function configError(raw: unknown, ...patterns: RegExp[]): ModelLoadError {
  try {
    parseModelConfig(raw);
  } catch (e) {
    assert.ok(e instanceof ModelLoadError, `expected ModelLoadError, got ${e}`);
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
    assert.match(e.message, /^config\.json: /);
    for (const re of patterns) assert.match(e.message, re);
    return e;
  }
  assert.fail("expected parseModelConfig to throw");
}

const patch = (base: Record<string, unknown>, over: Record<string, unknown>) => ({ ...base, ...over });

Deno.test("config: SmolLM2-135M (llama, tied, no head_dim)", () => {
  const c = parseModelConfig(SMOLLM2_135M);
  const want: ModelConfig = {
    architecture: "llama",
    modelType: "llama",
    vocabSize: 49152,
    hiddenSize: 576,
    intermediateSize: 1536,
    numLayers: 30,
    numHeads: 9,
    numKvHeads: 3,
    headDim: 64,
    rmsNormEps: 1e-5,
    ropeTheta: 100000,
    ropeScaling: null,
    maxPositionEmbeddings: 8192,
    tieWordEmbeddings: true,
    attentionBias: false,
    qkNorm: false,
    slidingWindow: null,
    bosTokenId: 1,
    eosTokenIds: [2],
    torchDtype: "bfloat16",
  };
  assert.deepEqual(c, want);
  assert.equal(parameterCount(c), 134_515_008);
});

Deno.test("config: Llama 3.2 (llama3 rope scaling, eos list, explicit head_dim)", () => {
  const c = parseModelConfig(LLAMA_32_1B);
  assert.deepEqual(c.ropeScaling, {
    type: "llama3",
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  assert.equal(c.ropeTheta, 500000);
  assert.deepEqual(c.eosTokenIds, [128001, 128008, 128009]);
  assert.equal(c.headDim, 64);
  assert.equal(c.tieWordEmbeddings, true);
});

Deno.test("config: Mistral sliding window (set, null, HF default when absent)", () => {
  const c = parseModelConfig(MISTRAL_7B_V01);
  assert.equal(c.architecture, "mistral");
  assert.equal(c.slidingWindow, 4096);
  assert.equal(c.attentionBias, false);
  assert.equal(parseModelConfig(patch(MISTRAL_7B_V01, { sliding_window: null })).slidingWindow, null);
  const { sliding_window: _, ...noKey } = MISTRAL_7B_V01;
  assert.equal(parseModelConfig(noKey).slidingWindow, 4096);
});

Deno.test("config: Qwen2 (qkv bias, sliding window only when enabled)", () => {
  const c = parseModelConfig(QWEN25_05B);
  assert.equal(c.architecture, "qwen2");
  assert.equal(c.attentionBias, true);
  assert.equal(c.qkNorm, false);
  assert.equal(c.slidingWindow, null);
  assert.equal(c.headDim, 64);
  // Sliding on every layer (layers >= max_window_layers slide).
  const all = parseModelConfig(
    patch(QWEN25_05B, { use_sliding_window: true, sliding_window: 4096, max_window_layers: 0 }),
  );
  assert.equal(all.slidingWindow, 4096);
  // max_window_layers >= num layers: no layer slides.
  const none = parseModelConfig(patch(QWEN25_05B, { use_sliding_window: true, max_window_layers: 24 }));
  assert.equal(none.slidingWindow, null);
  configError(
    patch(QWEN25_05B, { use_sliding_window: true }),
    /field "max_window_layers"/,
    /mixing full-attention and sliding-window layers is not supported \(3 of 24 layers slide\)/,
  );
  configError(patch(QWEN25_05B, { use_sliding_window: true, sliding_window: null }), /field "sliding_window"/);
  const types = Array.from({ length: 24 }, () => "sliding_attention");
  assert.equal(
    parseModelConfig(patch(QWEN25_05B, { use_sliding_window: true, sliding_window: 512, layer_types: types }))
      .slidingWindow,
    512,
  );
  configError(
    patch(QWEN25_05B, { use_sliding_window: true, layer_types: ["full_attention", ...types.slice(1)] }),
    /field "layer_types"/,
  );
});

Deno.test("config: Qwen3 (q/k norm, head_dim != hidden/heads)", () => {
  const c = parseModelConfig(QWEN3_06B);
  assert.equal(c.architecture, "qwen3");
  assert.equal(c.qkNorm, true);
  assert.equal(c.attentionBias, false);
  assert.equal(c.headDim, 128);
  assert.equal(c.numHeads * c.headDim, 2048); // != hidden_size 1024
  const layout = new Map(weightLayout(c).map((t) => [t.name, t.shape]));
  assert.deepEqual(layout.get("model.layers.0.self_attn.q_proj.weight"), [2048, 1024]);
  assert.deepEqual(layout.get("model.layers.0.self_attn.k_proj.weight"), [1024, 1024]);
  assert.deepEqual(layout.get("model.layers.0.self_attn.o_proj.weight"), [1024, 2048]);
  assert.deepEqual(layout.get("model.layers.27.self_attn.k_norm.weight"), [128]);
  assert.equal(layout.has("lm_head.weight"), false);
  assert.equal(layout.has("model.layers.0.self_attn.q_proj.bias"), false);
});

Deno.test("config: defaults (kv heads, head_dim, rope_theta, tie, eps, eos forms)", () => {
  const minimal = {
    architectures: ["LlamaForCausalLM"],
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
  };
  const c = parseModelConfig(minimal);
  assert.equal(c.numKvHeads, 4);
  assert.equal(c.headDim, 16);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.ropeScaling, null);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.rmsNormEps, 1e-6);
  assert.equal(c.maxPositionEmbeddings, 2048);
  assert.deepEqual(c.eosTokenIds, []);
  assert.equal(c.bosTokenId, null);
  assert.equal(c.torchDtype, null);
  assert.equal(c.modelType, "llama");
  assert.deepEqual(parseModelConfig(patch(minimal, { eos_token_id: 7 })).eosTokenIds, [7]);
  assert.deepEqual(parseModelConfig(patch(minimal, { eos_token_id: [7, 8] })).eosTokenIds, [7, 8]);
  assert.equal(parseModelConfig(patch(minimal, { dtype: "float16" })).torchDtype, "float16");
  for (const arch of ["MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]) {
    assert.equal(parseModelConfig(patch(minimal, { architectures: [arch] })).tieWordEmbeddings, false);
  }
  // No architectures: model_type decides.
  const { architectures: _, ...untyped } = minimal;
  assert.equal(parseModelConfig({ ...untyped, model_type: "qwen3" }).architecture, "qwen3");
});

Deno.test("config: rope variants (linear, default, rope_parameters)", () => {
  const linear = parseModelConfig(patch(SMOLLM2_135M, { rope_scaling: { type: "linear", factor: 2 } }));
  assert.deepEqual(linear.ropeScaling, { type: "linear", factor: 2 });
  const dflt = parseModelConfig(patch(SMOLLM2_135M, { rope_scaling: { rope_type: "default" } }));
  assert.equal(dflt.ropeScaling, null);
  const { rope_theta: _, rope_scaling: __, ...noRope } = LLAMA_32_1B;
  const params = parseModelConfig({
    ...noRope,
    rope_parameters: {
      rope_type: "llama3",
      rope_theta: 500000,
      factor: 32,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  });
  assert.equal(params.ropeTheta, 500000);
  assert.deepEqual(params.ropeScaling, parseModelConfig(LLAMA_32_1B).ropeScaling);
  const plain = parseModelConfig({ ...noRope, rope_parameters: { rope_type: "default", rope_theta: 1234 } });
  assert.equal(plain.ropeTheta, 1234);
  assert.equal(plain.ropeScaling, null);
});

Deno.test("config: errors are one line and name the field", () => {
  const arch = configError(
    patch(SMOLLM2_135M, { architectures: ["GPT2LMHeadModel"] }),
  );
  assert.equal(
    arch.message,
    'config.json: unsupported architecture "GPT2LMHeadModel" (field "architectures"); supported: ' +
      "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM",
  );
  assert.equal(arch.field, "architectures");

  const { architectures: _, model_type: __, ...anonymous } = SMOLLM2_135M;
  configError(anonymous, /missing field "architectures"/);
  configError({ ...anonymous, model_type: "gpt2" }, /unsupported model_type "gpt2"/);

  const rope = configError(
    patch(SMOLLM2_135M, { rope_scaling: { rope_type: "yarn", factor: 4 } }),
    /field "rope_scaling\.rope_type" unsupported rope type "yarn"; supported: default, linear, llama3/,
  );
  assert.equal(rope.field, "rope_scaling.rope_type");
  configError(patch(SMOLLM2_135M, { rope_scaling: { type: "dynamic", factor: 4 } }), /field "rope_scaling\.type"/);
  configError(
    patch(SMOLLM2_135M, { rope_parameters: { rope_type: "longrope" } }),
    /field "rope_parameters\.rope_type"/,
  );
  configError(
    patch(SMOLLM2_135M, { rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1 } }),
    /field "rope_scaling\.high_freq_factor" must be a positive number \(got nothing\)/,
  );
  configError(patch(SMOLLM2_135M, { hidden_act: "gelu" }), /field "hidden_act" unsupported activation "gelu"/);
  configError(
    patch(SMOLLM2_135M, { num_key_value_heads: 4 }),
    /field "num_key_value_heads" num_attention_heads \(9\) must be a multiple of num_key_value_heads \(4\)/,
  );
  configError(patch(SMOLLM2_135M, { num_attention_heads: 7, num_key_value_heads: 7 }), /field "num_attention_heads"/);
  configError(
    patch(SMOLLM2_135M, { num_attention_heads: "9" }),
    /field "num_attention_heads" must be a positive integer \(got "9"\)/,
  );
  configError(
    patch(SMOLLM2_135M, { vocab_size: undefined }),
    /field "vocab_size" must be a positive integer \(got nothing\)/,
  );
  configError(patch(SMOLLM2_135M, { hidden_size: 0 }), /field "hidden_size"/);
  configError(patch(SMOLLM2_135M, { eos_token_id: "x" }), /field "eos_token_id"/);
  configError(patch(SMOLLM2_135M, { eos_token_id: [1, -2] }), /field "eos_token_id\.1"/);
  configError(patch(SMOLLM2_135M, { attention_bias: true }), /field "attention_bias"/);
  configError(patch(SMOLLM2_135M, { mlp_bias: true }), /field "mlp_bias"/);
  configError(patch(QWEN3_06B, { attention_bias: true }), /field "attention_bias"/);
  configError([1, 2], /expected a JSON object/);
  configError(null, /expected a JSON object/);
});
