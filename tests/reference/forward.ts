/**
 * Independent float64 reference forward pass for Llama / Mistral / Qwen2 /
 * Qwen3 decoder-only models, following Hugging Face transformers semantics.
 *
 * This is the correctness oracle for the ONNX graph compiler, so it is kept
 * deliberately plain (simple loops, no caching, no batching) and shares no
 * code with src/ apart from the `ModelConfig` type.
 */
import type { ModelConfig } from "../../src/model/config.ts";

/** Looks up a tensor by its HF name; PyTorch layout (Linear weight is [out, in]). */
export type WeightFn = (name: string) => { data: ArrayLike<number>; shape: number[] };

export interface ReferenceOptions {
  /**
   * Rotary position ids, one per token (default 0..T-1). They only feed the
   * rotary embedding: the causal / sliding-window mask uses sequence indices,
   * exactly like HF, which builds masks from `cache_position`.
   */
  positions?: number[];
}

/** A dense float64 matrix [rows, cols], row-major. */
interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

function load(weight: WeightFn, name: string, shape: number[]): Float64Array {
  const t = weight(name);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${name}: expected shape [${shape}], got [${t.shape}]`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new Error(`${name}: expected ${n} values, got ${t.data.length}`);
  return Float64Array.from(t.data);
}

function loadMat(weight: WeightFn, name: string, rows: number, cols: number): Mat {
  return { rows, cols, data: load(weight, name, [rows, cols]) };
}

/** y = x Wᵀ + b, with W in PyTorch [out, in] layout. */
function linear(x: Mat, w: Mat, b: Float64Array | null): Mat {
  if (x.cols !== w.cols) throw new Error(`linear: in ${x.cols} vs weight in ${w.cols}`);
  const y = new Float64Array(x.rows * w.rows);
  for (let t = 0; t < x.rows; t++) {
    for (let o = 0; o < w.rows; o++) {
      let acc = b ? b[o] : 0;
      for (let i = 0; i < x.cols; i++) acc += x.data[t * x.cols + i] * w.data[o * w.cols + i];
      y[t * w.rows + o] = acc;
    }
  }
  return { rows: x.rows, cols: w.rows, data: y };
}

/** RMSNorm over contiguous groups of `dim` values: x / sqrt(mean(x²) + eps) * w. */
function rmsNorm(x: Mat, w: Float64Array, eps: number): Mat {
  const dim = w.length;
  const out = new Float64Array(x.data.length);
  for (let g = 0; g < x.data.length / dim; g++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x.data[g * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[g * dim + i] = x.data[g * dim + i] * inv * w[i];
  }
  return { rows: x.rows, cols: x.cols, data: out };
}

/**
 * Rotary inverse frequencies, with HF's rope scaling applied
 * (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
 * `_compute_llama3_parameters`). Length headDim / 2.
 */
export function ropeInvFreq(config: ModelConfig): Float64Array {
  const d = config.headDim;
  const half = d / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / config.ropeTheta ** ((2 * i) / d);
  const s = config.ropeScaling;
  if (s === null) return inv;
  if (s.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] /= s.factor;
    return inv;
  }
  if (s.type === "llama3") {
    const oldCtx = s.originalMaxPositionEmbeddings;
    const lowFreqWavelen = oldCtx / s.lowFreqFactor;
    const highFreqWavelen = oldCtx / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowFreqWavelen) {
        inv[i] = inv[i] / s.factor;
      } else if (wavelen >= highFreqWavelen) {
        // Medium band: interpolate between scaled and unscaled frequency.
        const smooth = (oldCtx / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = ((1 - smooth) * inv[i]) / s.factor + smooth * inv[i];
      } // else wavelen < highFreqWavelen: high frequency, unchanged.
    }
    return inv;
  }
  throw new Error(`unsupported rope scaling ${JSON.stringify(s)}`);
}

/**
 * Applies HF rotary ("rotate_half", non-interleaved) in place to every head
 * of x [T, nHeads * headDim]: out = x * cos + rotate_half(x) * sin, with
 * rotate_half([x1, x2]) = [-x2, x1] and cos/sin duplicated over both halves.
 */
function applyRotary(x: Mat, nHeads: number, headDim: number, invFreq: Float64Array, positions: number[]): void {
  const half = headDim / 2;
  for (let t = 0; t < x.rows; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = t * x.cols + h * headDim;
      const src = x.data.slice(base, base + headDim);
      for (let j = 0; j < headDim; j++) {
        const freq = invFreq[j % half];
        const angle = positions[t] * freq;
        const rotated = j < half ? -src[j + half] : src[j - half];
        x.data[base + j] = src[j] * Math.cos(angle) + rotated * Math.sin(angle);
      }
    }
  }
}

/**
 * Whether query at sequence index q may attend key at sequence index k.
 * Causal, plus HF's `sliding_window_overlay` (transformers masking_utils):
 * `kv_idx > q_idx - sliding_window`, i.e. q - w < k <= q: each query sees
 * itself and the w - 1 previous tokens (w keys in total).
 */
function canAttend(q: number, k: number, slidingWindow: number | null): boolean {
  if (k > q) return false;
  return slidingWindow === null || k > q - slidingWindow;
}

/**
 * Scaled dot-product attention with GQA. q [T, nH*D], k/v [T, nKv*D].
 * Query head h reads kv head floor(h / (nH / nKv)) (HF `repeat_kv` repeats
 * each kv head nH/nKv times consecutively).
 */
function attention(q: Mat, k: Mat, v: Mat, config: ModelConfig): Mat {
  const { numHeads: nH, numKvHeads: nKv, headDim: d } = config;
  const group = nH / nKv;
  const T = q.rows;
  const out = new Float64Array(T * nH * d);
  const scale = 1 / Math.sqrt(d);
  for (let h = 0; h < nH; h++) {
    const kvh = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      const scores = new Float64Array(T).fill(-Infinity);
      let max = -Infinity;
      for (let s = 0; s < T; s++) {
        if (!canAttend(t, s, config.slidingWindow)) continue;
        let dot = 0;
        for (let j = 0; j < d; j++) dot += q.data[t * nH * d + h * d + j] * k.data[s * nKv * d + kvh * d + j];
        scores[s] = dot * scale;
        if (scores[s] > max) max = scores[s];
      }
      let denom = 0;
      for (let s = 0; s < T; s++) {
        scores[s] = scores[s] === -Infinity ? 0 : Math.exp(scores[s] - max);
        denom += scores[s];
      }
      for (let s = 0; s < T; s++) {
        const p = scores[s] / denom;
        if (p === 0) continue;
        for (let j = 0; j < d; j++) out[t * nH * d + h * d + j] += p * v.data[s * nKv * d + kvh * d + j];
      }
    }
  }
  return { rows: T, cols: nH * d, data: out };
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

function addInPlace(x: Mat, y: Mat): void {
  for (let i = 0; i < x.data.length; i++) x.data[i] += y.data[i];
}

function validate(config: ModelConfig, tokens: number[], positions: number[]): void {
  if (config.numHeads % config.numKvHeads !== 0) throw new Error("numHeads must be a multiple of numKvHeads");
  if (config.headDim % 2 !== 0) throw new Error("headDim must be even for rotary");
  if (positions.length !== tokens.length) throw new Error("positions must have one entry per token");
  for (const tok of tokens) {
    if (!Number.isInteger(tok) || tok < 0 || tok >= config.vocabSize) throw new Error(`token ${tok} out of range`);
  }
  if (config.slidingWindow !== null && config.slidingWindow < 1) throw new Error("slidingWindow must be >= 1");
}

/**
 * Full forward pass; returns logits [T, vocab] row-major in float64.
 *
 * When `slidingWindow` is set it applies to every layer: `parseModelConfig`
 * only sets it when all layers slide (Mistral; Qwen2/Qwen3 with every layer
 * ≥ `max_window_layers`) and rejects mixed layouts.
 */
export function referenceForward(
  config: ModelConfig,
  weight: WeightFn,
  tokens: number[],
  opts?: ReferenceOptions,
): Float64Array {
  const T = tokens.length;
  const positions = opts?.positions ?? tokens.map((_, i) => i);
  validate(config, tokens, positions);
  const { hiddenSize: H, vocabSize: V, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: d } = config;
  const eps = config.rmsNormEps;
  const invFreq = ropeInvFreq(config);

  const embed = loadMat(weight, "model.embed_tokens.weight", V, H);
  const x: Mat = { rows: T, cols: H, data: new Float64Array(T * H) };
  for (let t = 0; t < T; t++) x.data.set(embed.data.subarray(tokens[t] * H, (tokens[t] + 1) * H), t * H);

  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const attnIn = rmsNorm(x, load(weight, `${p}.input_layernorm.weight`, [H]), eps);
    const bias = (name: string, n: number) =>
      config.attentionBias ? load(weight, `${p}.self_attn.${name}.bias`, [n]) : null;
    let q = linear(attnIn, loadMat(weight, `${p}.self_attn.q_proj.weight`, nH * d, H), bias("q_proj", nH * d));
    let k = linear(attnIn, loadMat(weight, `${p}.self_attn.k_proj.weight`, nKv * d, H), bias("k_proj", nKv * d));
    const v = linear(attnIn, loadMat(weight, `${p}.self_attn.v_proj.weight`, nKv * d, H), bias("v_proj", nKv * d));
    if (config.qkNorm) {
      // Qwen3: per-head RMSNorm over headDim, before rotary.
      q = rmsNorm(q, load(weight, `${p}.self_attn.q_norm.weight`, [d]), eps);
      k = rmsNorm(k, load(weight, `${p}.self_attn.k_norm.weight`, [d]), eps);
    }
    applyRotary(q, nH, d, invFreq, positions);
    applyRotary(k, nKv, d, invFreq, positions);
    const attn = attention(q, k, v, config);
    addInPlace(x, linear(attn, loadMat(weight, `${p}.self_attn.o_proj.weight`, H, nH * d), null));

    const mlpIn = rmsNorm(x, load(weight, `${p}.post_attention_layernorm.weight`, [H]), eps);
    const gate = linear(mlpIn, loadMat(weight, `${p}.mlp.gate_proj.weight`, I, H), null);
    const up = linear(mlpIn, loadMat(weight, `${p}.mlp.up_proj.weight`, I, H), null);
    for (let i = 0; i < gate.data.length; i++) gate.data[i] = silu(gate.data[i]) * up.data[i];
    addInPlace(x, linear(gate, loadMat(weight, `${p}.mlp.down_proj.weight`, H, I), null));
  }

  const final = rmsNorm(x, load(weight, "model.norm.weight", [H]), eps);
  const head = config.tieWordEmbeddings ? embed : loadMat(weight, "lm_head.weight", V, H);
  return linear(final, head, null).data;
}
