/**
 * The Llama-family decoder (Llama, Mistral, Qwen2, Qwen3, SmolLM2) as an ONNX
 * graph. One builder serves both uses: the serving graph (KV cache, the
 * transformers.js / onnx-community I/O names) and, without cache, the training
 * forward, where the caller's `linear` hook inserts adapters.
 *
 * Activations stay [batch, seq, hidden]; attention groups the query heads by
 * their KV head (q reshaped to [B, kvHeads, rep·S, hd]) so K/V are never
 * repeated in memory.
 */
import { type GraphBuilder, MS_DOMAIN } from "../onnx/builder.ts";
import type { DType, TensorArray, Value } from "../onnx/ir.ts";
import type { ModelConfig } from "./config.ts";
import { encodeBf16, encodeF16 } from "./half.ts";

export type ComputeDType = "float32" | "float16" | "bfloat16";

/** float32 values as stored for a compute dtype (half types as raw 16-bit patterns). */
export function convertWeights(data: Float32Array, dtype: ComputeDType): TensorArray {
  if (dtype === "float16") return encodeF16(data);
  if (dtype === "bfloat16") return encodeBf16(data);
  return data;
}

export interface DecoderOptions {
  dtype: ComputeDType;
  /**
   * Serving form: past_key_values.* inputs, present.* outputs, and the
   * `num_logits_to_keep` input (0 = logits at every position, k = the last k),
   * which transformers.js sets to 1 while generating, as this engine does.
   * Also `step_key_values.*` outputs: the keys and values of this step's
   * tokens only (see IO_NAMES.stepKey).
   */
  kvCache: boolean;
  /** The graph value of an HF tensor (an initializer or an input). */
  weight: (name: string) => Value;
  /** Linear layer hook (adapters); `name` is the HF module path, e.g. `model.layers.0.self_attn.q_proj`. */
  linear?: (x: Value, name: string, base: () => Value) => Value;
  /**
   * Training: each layer is a recomputed region (GraphBuilder.recomputed):
   * the backward pass recomputes a layer's activations from its input
   * instead of keeping them from the forward pass.
   */
  recompute?: boolean;
  /**
   * false: stop at the final norm (`hidden`), no vocabulary projection
   * (`logits` is then null); the training graph fuses it into its loss.
   * Default true.
   */
  head?: boolean;
}

export interface DecoderGraph {
  inputIds: Value;
  attentionMask: Value;
  positionIds: Value;
  /** [batch, seq, vocab], float32; null without the head. */
  logits: Value | null;
  /** The final norm's output [batch, seq, hidden] (what the head projects), compute dtype. */
  hidden: Value;
  /** The head's weight [vocab, hidden] (the embedding when tied), compute dtype. */
  headWeight: Value;
  /** Serving graph: [batch, seq, 1], float32 (IO_NAMES.logitsLogSumExp). */
  logSumExp: Value | null;
  past: { key: Value; value: Value }[];
  present: { key: Value; value: Value }[];
}

export const IO_NAMES = {
  inputIds: "input_ids",
  attentionMask: "attention_mask",
  numLogitsToKeep: "num_logits_to_keep",
  positionIds: "position_ids",
  logits: "logits",
  /**
   * log Σ exp(logits) per kept position, [batch, kept, 1] float32: what a
   * logprob needs besides the chosen logit, computed by onnxruntime's
   * vectorised LogSoftmax (~0.1 ms for 8 rows of a 49k vocabulary) instead of
   * a pass over the vocabulary in JS per token (~0.4 ms) on the serving thread.
   */
  logitsLogSumExp: "logits_logsumexp",
  pastKey: (i: number) => `past_key_values.${i}.key`,
  pastValue: (i: number) => `past_key_values.${i}.value`,
  presentKey: (i: number) => `present.${i}.key`,
  presentValue: (i: number) => `present.${i}.value`,
  /**
   * Keys (rotated) and values of the step's own tokens, [batch, kvHeads, seq,
   * headDim]: what `present` adds to `past`. The engine keeps its cache itself
   * and fetches these instead of `present`, because onnxruntime-node copies
   * every fetched output into a fresh buffer. (Not named `present*`:
   * transformers.js maps every output so named to a past input.)
   */
  stepKey: (i: number) => `step_key_values.${i}.key`,
  stepValue: (i: number) => `step_key_values.${i}.value`,
};

/** Rotary inverse frequencies with HF's rope scaling rules. */
export function ropeInvFreq(config: ModelConfig): Float32Array {
  const half = config.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(config.ropeTheta, (2 * i) / config.headDim);
  const rs = config.ropeScaling;
  if (rs?.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] /= rs.factor;
  } else if (rs?.type === "llama3") {
    const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
    const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] /= rs.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) /
          (rs.highFreqFactor - rs.lowFreqFactor);
        inv[i] = (1 - smooth) * inv[i] / rs.factor + smooth * inv[i];
      }
    }
  }
  return Float32Array.from(inv);
}

/** Lowest finite value of a dtype: masked scores stay finite, so fully masked rows give no NaN. */
function lowest(dtype: DType): number {
  return dtype === "float16" ? -65504 : -3.4028234663852886e38;
}

export function buildDecoder(g: GraphBuilder, config: ModelConfig, opts: DecoderOptions): DecoderGraph {
  const { dtype } = opts;
  const nH = config.numHeads, nKV = config.numKvHeads, hd = config.headDim;
  const rep = nH / nKV;
  const w = opts.weight;
  const linear = (x: Value, name: string, withBias = false): Value => {
    const base = () => g.linear(x, w(`${name}.weight`), withBias ? w(`${name}.bias`) : undefined);
    return opts.linear ? opts.linear(x, name, base) : base();
  };

  const inputIds = g.input(IO_NAMES.inputIds, "int64", ["batch_size", "sequence_length"]);
  const attentionMask = g.input(IO_NAMES.attentionMask, "int64", ["batch_size", "total_sequence_length"]);
  const positionIds = g.input(IO_NAMES.positionIds, "int64", ["batch_size", "sequence_length"]);
  const past = opts.kvCache
    ? Array.from({ length: config.numLayers }, (_, i) => ({
      key: g.input(IO_NAMES.pastKey(i), dtype, ["batch_size", nKV, "past_sequence_length", hd]),
      value: g.input(IO_NAMES.pastValue(i), dtype, ["batch_size", nKV, "past_sequence_length", hd]),
    }))
    : [];

  const rmsNorm = (x: Value, weightName: string): Value => {
    // HF computes the statistics in float32 whatever the weights' dtype.
    // Written as Pow→ReduceMean→Add→Sqrt→Div→Mul: the pattern onnxruntime fuses
    // into one SimplifiedLayerNormalization kernel.
    const x32 = g.cast(x, "float32");
    const variance = g.reduceMean(g.pow(x32, g.constant(2, "float32", [])), [-1]);
    const rms = g.sqrt(g.add(variance, g.constant(config.rmsNormEps, "float32", [])));
    return g.mul(g.cast(g.div(x32, rms), dtype), w(weightName));
  };

  const rotate = opts.kvCache
    ? fusedRotary(g, config, dtype, positionIds)
    : rotaryFromOps(g, config, dtype, positionIds);

  // Additive attention bias [B, 1, rep·S, T], by positions rather than cache
  // columns: a key's position is the number of unmasked columns before it
  // (CumSum of attention_mask), a query's is its position id. So a cache may
  // hold masked, unused columns anywhere (left padding, or the engine's spare
  // columns after each row's tokens) and causality and the window stay exact.
  const maskBias = g.scoped("mask", () => {
    const one = g.constant(1, "int64", []);
    const keyPos = g.unsqueeze(g.sub(g.op1("CumSum", [attentionMask, one]), one), [1, 2]); // [B,1,1,T]
    const queryPos = g.unsqueeze(positionIds, [1, 3]); // [B,1,S,1]
    let allowed = g.lessOrEqual(keyPos, queryPos);
    if (config.slidingWindow !== null) {
      // HF Mistral: query p sees keys k with p - window < k <= p.
      const lower = g.sub(queryPos, g.constant(config.slidingWindow, "int64", []));
      allowed = g.and(allowed, g.greater(keyPos, lower));
    }
    const present = g.unsqueeze(g.equal(attentionMask, one), [1, 2]); // [B,1,1,T]
    allowed = g.and(allowed, present); // [B,1,S,T]
    // Built in float32 and cast: not every EP has half-precision Where kernels.
    const bias = g.cast(g.where(allowed, g.scalar(0, "float32"), g.scalar(lowest(dtype), "float32")), dtype);
    return rep === 1 ? bias : g.concat(Array(rep).fill(bias), 2);
  });
  const scale = g.scalar(1 / Math.sqrt(hd), dtype);

  const present: { key: Value; value: Value }[] = [];
  let h = g.gather(w("model.embed_tokens.weight"), inputIds);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    const layer = (body: () => Value) =>
      g.scoped(`layers.${i}`, () => opts.recompute ? g.recomputed(`layers.${i}`, body) : body());
    h = layer(() => {
      const x = rmsNorm(h, `${p}.input_layernorm.weight`);
      // Graph outputs are named where they are computed: a renaming Identity would copy them.
      const stepName = (name: (i: number) => string) => opts.kvCache ? [name(i)] : undefined;
      const heads = (y: Value, n: number, normName: string | null, names?: string[]): Value => {
        let r = g.reshape(y, [0, 0, n, hd]);
        if (normName) r = rmsNorm(r, normName);
        return g.op1("Transpose", [r], { perm: [0, 2, 1, 3] }, { names }); // [B, n, S, hd]
      };
      const qk = config.qkNorm;
      let q = heads(
        linear(x, `${p}.self_attn.q_proj`, config.attentionBias),
        nH,
        qk ? `${p}.self_attn.q_norm.weight` : null,
      );
      let k = heads(
        linear(x, `${p}.self_attn.k_proj`, config.attentionBias),
        nKV,
        qk ? `${p}.self_attn.k_norm.weight` : null,
      );
      let v = heads(linear(x, `${p}.self_attn.v_proj`, config.attentionBias), nKV, null, stepName(IO_NAMES.stepValue));
      q = rotate(q);
      k = rotate(k, stepName(IO_NAMES.stepKey));
      if (opts.kvCache) {
        g.output(k);
        g.output(v);
        const grow = (pastValue: Value, x: Value, name: string) =>
          g.output(g.op1("Concat", [pastValue, x], { axis: 2 }, { names: [name] }));
        k = grow(past[i].key, k, IO_NAMES.presentKey(i));
        v = grow(past[i].value, v, IO_NAMES.presentValue(i));
        present.push({ key: k, value: v });
      }
      const qGrouped = g.reshape(g.mul(q, scale), [0, nKV, -1, hd]); // [B, nKV, rep·S, hd]
      const scores = g.add(g.matmul(qGrouped, g.transpose(k, [0, 1, 3, 2])), maskBias);
      const attn = g.matmul(g.softmax(scores, -1), v); // [B, nKV, rep·S, hd]
      const merged = g.reshape(g.transpose(g.reshape(attn, [0, nH, -1, hd]), [0, 2, 1, 3]), [0, 0, nH * hd]);
      const afterAttn = g.add(h, linear(merged, `${p}.self_attn.o_proj`));

      const y = rmsNorm(afterAttn, `${p}.post_attention_layernorm.weight`);
      const gate = linear(y, `${p}.mlp.gate_proj`);
      const act = g.mul(g.mul(gate, g.sigmoid(gate)), linear(y, `${p}.mlp.up_proj`));
      return g.add(afterAttn, linear(act, `${p}.mlp.down_proj`));
    });
  }
  if (opts.kvCache) h = keepLastPositions(g, h);
  const normed = rmsNorm(h, "model.norm.weight");
  const head = config.tieWordEmbeddings ? "model.embed_tokens" : "lm_head";
  const headWeight = w(`${head}.weight`);
  if (opts.head === false) {
    return {
      inputIds,
      attentionMask,
      positionIds,
      logits: null,
      hidden: normed,
      headWeight,
      logSumExp: null,
      past,
      present,
    };
  }
  const logits = g.cast(g.linear(normed, headWeight), "float32");
  // LogSoftmax is monotone, so its maximum sits where the logits' does:
  // max(x) − max(logSoftmax(x)) = log Σ exp(x), without cancellation.
  const rowMax = (x: Value) =>
    g.op1("ReduceMax", [x, g.constant([-1])], { keepdims: 1 }, { types: [{ dtype: "float32", shape: null }] });
  const logSumExp = opts.kvCache ? g.sub(rowMax(logits), rowMax(g.logSoftmax(logits, -1))) : null;
  return { inputIds, attentionMask, positionIds, logits, hidden: normed, headWeight, logSumExp, past, present };
}

/**
 * Rotary embedding from standard ops (differentiable: the training graphs use
 * it): x·cos + rotate_half(x)·sin, the tables computed in-graph from the
 * positions in float32 as HF does, shared by all layers as [B, 1, S, hd].
 */
function rotaryFromOps(g: GraphBuilder, config: ModelConfig, dtype: ComputeDType, positionIds: Value) {
  const hd = config.headDim;
  const { cos, sin } = g.scoped("rotary", () => {
    const invFreq = g.constant(Array.from(ropeInvFreq(config)), "float32", [hd / 2]);
    const pos = g.unsqueeze(g.cast(positionIds, "float32"), [-1]);
    const freqs = g.mul(pos, invFreq);
    const emb = g.concat([freqs, freqs], -1);
    return {
      cos: g.cast(g.unsqueeze(g.cos(emb), [1]), dtype),
      sin: g.cast(g.unsqueeze(g.sin(emb), [1]), dtype),
    };
  });
  return (x: Value): Value => {
    const x1 = g.slice(x, [0], [hd / 2], [-1]);
    const x2 = g.slice(x, [hd / 2], [hd], [-1]);
    const rotated = g.concat([g.neg(x2), x1], -1);
    return g.add(g.mul(x, cos), g.mul(rotated, sin));
  };
}

/**
 * The same rotation as one onnxruntime contrib kernel per tensor
 * (com.microsoft.RotaryEmbedding, non-interleaved = rotate_half), for the
 * serving graph: it replaces ~12 small nodes per layer, which on a batch-8
 * decode step cost more in per-node overhead than in arithmetic. Its cos/sin
 * tables [maxPositions, hd/2] hold what the op form computes: the angle
 * rounded to float32 (position · inverse frequency, both float32), then cos
 * and sin rounded to the compute dtype.
 */
function fusedRotary(g: GraphBuilder, config: ModelConfig, dtype: ComputeDType, positionIds: Value) {
  const half = config.headDim / 2, rows = config.maxPositionEmbeddings;
  const invFreq = ropeInvFreq(config);
  const table = (f: (angle: number) => number) => () => {
    const t = new Float32Array(rows * half);
    for (let p = 0; p < rows; p++) {
      for (let i = 0; i < half; i++) t[p * half + i] = f(Math.fround(Math.fround(p) * invFreq[i]));
    }
    return convertWeights(t, dtype);
  };
  const cos = g.initializer("rotary.cos_cache", dtype, [rows, half], table(Math.cos));
  const sin = g.initializer("rotary.sin_cache", dtype, [rows, half], table(Math.sin));
  return (x: Value, names?: string[]): Value =>
    g.op1("RotaryEmbedding", [x, positionIds, cos, sin], { interleaved: 0 }, {
      domain: MS_DOMAIN,
      types: [{ dtype: x.dtype, shape: x.shape }],
      names,
    });
}

/**
 * Hidden states of the last `num_logits_to_keep` positions (all when it is 0):
 * a prefill then pays the vocabulary projection once, not once per prompt token.
 */
function keepLastPositions(g: GraphBuilder, h: Value): Value {
  const keep = g.input(IO_NAMES.numLogitsToKeep, "int64", []);
  const zero = g.constant(0, "int64", []);
  const seq = g.gather(g.shapeOf(h), g.constant(1, "int64", []));
  const start = g.where(g.equal(keep, zero), zero, g.max(g.sub(seq, keep), zero));
  const shape = h.shape ? [h.shape[0], "logits_length", ...h.shape.slice(2)] : null;
  return g.op1(
    "Slice",
    [h, g.unsqueeze(start, [0]), g.constant([Number.MAX_SAFE_INTEGER]), g.constant([1])],
    {},
    { types: [{ dtype: h.dtype, shape }] },
  );
}
