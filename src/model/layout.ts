/**
 * The tensors a HF checkpoint of a supported architecture holds: exact names
 * and shapes in HF/PyTorch layout (a Linear weight is [out_features,
 * in_features]). The checkpoint loader validates against it and the test-model
 * generator writes it.
 */
import type { ModelConfig } from "./config.ts";

export interface TensorSpec {
  name: string;
  shape: number[];
}

/** Every tensor in file order: embeddings, layer 0..n-1, final norm, head. */
export function weightLayout(config: ModelConfig): TensorSpec[] {
  const H = config.hiddenSize;
  const I = config.intermediateSize;
  const V = config.vocabSize;
  const hd = config.headDim;
  const qDim = config.numHeads * hd;
  const kvDim = config.numKvHeads * hd;

  const out: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [V, H] }];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [H] });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [qDim, H] });
    if (config.attentionBias) {
      out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [qDim] });
    }
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [kvDim, H] });
    if (config.attentionBias) {
      out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [kvDim] });
    }
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [kvDim, H] });
    if (config.attentionBias) {
      out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [kvDim] });
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [H, qDim] });
    if (config.qkNorm) {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [hd] });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [hd] });
    }
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H] });
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [I, H] });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [I, H] });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [H, I] });
  }
  out.push({ name: "model.norm.weight", shape: [H] });
  if (!config.tieWordEmbeddings) {
    out.push({ name: "lm_head.weight", shape: [V, H] });
  }
  return out;
}

/** Number of elements of a shape ([] is a scalar: 1). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Total parameters of the layout (tied embeddings counted once). */
export function parameterCount(config: ModelConfig): number {
  let n = 0;
  for (const t of weightLayout(config)) n += numel(t.shape);
  return n;
}
