import assert from "node:assert/strict";
import type { ModelConfig } from "../src/model/config.ts";
import { referenceForward, ropeInvFreq, type WeightFn } from "./reference/forward.ts";

/** mulberry32: tiny seeded RNG so random weights are reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function config(overrides: Partial<ModelConfig>): ModelConfig {
  return {
    architecture: "llama",
    modelType: "llama",
    vocabSize: 11,
    hiddenSize: 8,
    intermediateSize: 12,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 4,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    ropeScaling: null,
    maxPositionEmbeddings: 128,
    tieWordEmbeddings: false,
    attentionBias: false,
    qkNorm: false,
    slidingWindow: null,
    bosTokenId: null,
    eosTokenIds: [],
    torchDtype: null,
    ...overrides,
  };
}

/** Every tensor name / shape the model needs, per HF naming. */
function tensorShapes(c: ModelConfig): Map<string, number[]> {
  const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: d, vocabSize: V } = c;
  const m = new Map<string, number[]>([["model.embed_tokens.weight", [V, H]], ["model.norm.weight", [H]]]);
  if (!c.tieWordEmbeddings) m.set("lm_head.weight", [V, H]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.input_layernorm.weight`, [H]);
    m.set(`${p}.post_attention_layernorm.weight`, [H]);
    m.set(`${p}.self_attn.q_proj.weight`, [nH * d, H]);
    m.set(`${p}.self_attn.k_proj.weight`, [nKv * d, H]);
    m.set(`${p}.self_attn.v_proj.weight`, [nKv * d, H]);
    m.set(`${p}.self_attn.o_proj.weight`, [H, nH * d]);
    if (c.attentionBias) {
      m.set(`${p}.self_attn.q_proj.bias`, [nH * d]);
      m.set(`${p}.self_attn.k_proj.bias`, [nKv * d]);
      m.set(`${p}.self_attn.v_proj.bias`, [nKv * d]);
    }
    if (c.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [d]);
      m.set(`${p}.self_attn.k_norm.weight`, [d]);
    }
    m.set(`${p}.mlp.gate_proj.weight`, [I, H]);
    m.set(`${p}.mlp.up_proj.weight`, [I, H]);
    m.set(`${p}.mlp.down_proj.weight`, [H, I]);
  }
  return m;
}

type Tensors = Map<string, { data: number[]; shape: number[] }>;

function randomWeights(c: ModelConfig, seed: number): Tensors {
  const rnd = mulberry32(seed);
  const out: Tensors = new Map();
  for (const [name, shape] of tensorShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    // Norm weights around 1, everything else small and signed.
    const isNorm = name.endsWith("norm.weight") || name.endsWith("layernorm.weight");
    const data = Array.from({ length: n }, () => isNorm ? 0.5 + rnd() : (rnd() - 0.5) * 1.2);
    out.set(name, { data, shape });
  }
  return out;
}

function weightFn(t: Tensors): WeightFn {
  return (name) => {
    const w = t.get(name);
    if (!w) throw new Error(`missing ${name}`);
    return w;
  };
}

function row(logits: Float64Array, t: number, V: number): number[] {
  return Array.from(logits.subarray(t * V, (t + 1) * V));
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, msg = ""): void {
  assert.equal(actual.length, expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    assert.ok(err <= rel * Math.max(scale, 1e-12), `${msg} [${i}] ${actual[i]} vs ${expected[i]}`);
  }
}

// ---------------------------------------------------------------------------
// A differently structured direct formula: nested arrays, per-token closures,
// rotary as explicit 2D rotations of (x[i], x[i + D/2]) pairs, attention as an
// explicit weighted sum over a filtered key list.
// ---------------------------------------------------------------------------
function directForward(c: ModelConfig, t: Tensors, tokens: number[]): number[][] {
  const W = (name: string) => t.get(name)!.data;
  const matvec = (name: string, x: number[], rows: number, biasName?: string): number[] => {
    const w = W(name);
    const b = biasName ? W(biasName) : null;
    return Array.from({ length: rows }, (_, r) => x.reduce((s, xi, i) => s + xi * w[r * x.length + i], b ? b[r] : 0));
  };
  const norm = (x: number[], w: number[]): number[] => {
    const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + c.rmsNormEps);
    return x.map((v, i) => (v / rms) * w[i]);
  };
  const heads = (x: number[], n: number) =>
    Array.from({ length: n }, (_, h) => x.slice(h * c.headDim, (h + 1) * c.headDim));
  const rotate = (x: number[], pos: number): number[] => {
    const half = c.headDim / 2;
    const y = [...x];
    for (let i = 0; i < half; i++) {
      const a = pos * Math.pow(c.ropeTheta, -(2 * i) / c.headDim);
      y[i] = x[i] * Math.cos(a) - x[i + half] * Math.sin(a);
      y[i + half] = x[i + half] * Math.cos(a) + x[i] * Math.sin(a);
    }
    return y;
  };
  const H = c.hiddenSize;
  let xs = tokens.map((tok) => W("model.embed_tokens.weight").slice(tok * H, (tok + 1) * H));
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (n: string) => (c.attentionBias ? `${p}self_attn.${n}.bias` : undefined);
    const qs: number[][][] = [], ks: number[][][] = [], vs: number[][][] = [];
    xs.forEach((x, pos) => {
      const h = norm(x, W(`${p}input_layernorm.weight`));
      let q = heads(matvec(`${p}self_attn.q_proj.weight`, h, c.numHeads * c.headDim, bias("q_proj")), c.numHeads);
      let k = heads(matvec(`${p}self_attn.k_proj.weight`, h, c.numKvHeads * c.headDim, bias("k_proj")), c.numKvHeads);
      if (c.qkNorm) {
        q = q.map((qh) => norm(qh, W(`${p}self_attn.q_norm.weight`)));
        k = k.map((kh) => norm(kh, W(`${p}self_attn.k_norm.weight`)));
      }
      qs.push(q.map((qh) => rotate(qh, pos)));
      ks.push(k.map((kh) => rotate(kh, pos)));
      vs.push(heads(matvec(`${p}self_attn.v_proj.weight`, h, c.numKvHeads * c.headDim, bias("v_proj")), c.numKvHeads));
    });
    const perGroup = c.numHeads / c.numKvHeads;
    xs = xs.map((x, tq) => {
      const attnOut: number[] = [];
      for (let h = 0; h < c.numHeads; h++) {
        const g = Math.floor(h / perGroup);
        const keys = [...Array(tq + 1).keys()].filter((s) => c.slidingWindow === null || tq - s < c.slidingWindow);
        const logits = keys.map((s) =>
          qs[tq][h].reduce((acc, qv, j) => acc + qv * ks[s][g][j], 0) / Math.sqrt(c.headDim)
        );
        const m = Math.max(...logits);
        const e = logits.map((z) => Math.exp(z - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < c.headDim; j++) attnOut.push(keys.reduce((acc, s, n) => acc + (e[n] / z) * vs[s][g][j], 0));
      }
      const o = matvec(`${p}self_attn.o_proj.weight`, attnOut, H);
      const mid = x.map((v, i) => v + o[i]);
      const h2 = norm(mid, W(`${p}post_attention_layernorm.weight`));
      const gate = matvec(`${p}mlp.gate_proj.weight`, h2, c.intermediateSize);
      const up = matvec(`${p}mlp.up_proj.weight`, h2, c.intermediateSize);
      const act = gate.map((g2, i) => (g2 / (1 + Math.exp(-g2))) * up[i]);
      const down = matvec(`${p}mlp.down_proj.weight`, act, H);
      return mid.map((v, i) => v + down[i]);
    });
  }
  const head = c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return xs.map((x) => matvec(head, norm(x, W("model.norm.weight")), c.vocabSize));
}

Deno.test("micro case (1 layer, hidden 4) matches a direct formula", () => {
  const c = config({
    vocabSize: 5,
    hiddenSize: 4,
    intermediateSize: 3,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 2,
  });
  const t = randomWeights(c, 1);
  const tokens = [3, 1, 4, 1];
  const got = referenceForward(c, weightFn(t), tokens);
  const want = directForward(c, t, tokens);
  for (let i = 0; i < tokens.length; i++) assertClose(row(got, i, c.vocabSize), want[i], 1e-12, `row ${i}`);
});

Deno.test("micro case: single token at position 0 reduces to a closed form", () => {
  // With one token, rotary at position 0 is the identity and attention weight
  // is 1, so the attention output is just v; check against that formula.
  const c = config({
    vocabSize: 3,
    hiddenSize: 4,
    intermediateSize: 2,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 2,
    headDim: 2,
    tieWordEmbeddings: true,
  });
  const t = randomWeights(c, 2);
  const w = (n: string) => t.get(n)!.data;
  const x0 = w("model.embed_tokens.weight").slice(2 * 4, 3 * 4);
  const rms = (x: number[]) => Math.sqrt((x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2) / 4 + c.rmsNormEps);
  const mv = (m: number[], x: number[], rows: number) =>
    [...Array(rows).keys()].map((r) =>
      m[r * x.length] * x[0] + m[r * x.length + 1] * x[1] + m[r * x.length + 2] * x[2] + m[r * x.length + 3] * x[3]
    );
  const n1 = x0.map((v, i) => (v / rms(x0)) * w("model.layers.0.input_layernorm.weight")[i]);
  const v = mv(w("model.layers.0.self_attn.v_proj.weight"), n1, 4);
  const x1 = x0.map((xv, i) => xv + mv(w("model.layers.0.self_attn.o_proj.weight"), v, 4)[i]);
  const n2 = x1.map((xv, i) => (xv / rms(x1)) * w("model.layers.0.post_attention_layernorm.weight")[i]);
  const g = mv(w("model.layers.0.mlp.gate_proj.weight"), n2, 2);
  const u = mv(w("model.layers.0.mlp.up_proj.weight"), n2, 2);
  const a = [0, 1].map((i) => g[i] * (1 / (1 + Math.exp(-g[i]))) * u[i]);
  const down = w("model.layers.0.mlp.down_proj.weight"); // [4, 2]
  const x2 = x1.map((xv, i) => xv + down[i * 2] * a[0] + down[i * 2 + 1] * a[1]);
  const nf = x2.map((xv, i) => (xv / rms(x2)) * w("model.norm.weight")[i]);
  const want = mv(w("model.embed_tokens.weight"), nf, 3); // tied head
  assertClose(referenceForward(c, weightFn(t), [2]), want, 1e-12);
});

Deno.test("Qwen2/Qwen3-style features (bias, qk-norm, GQA, tied) match the direct formula", () => {
  for (
    const [i, over] of [
      { architecture: "qwen2", attentionBias: true, numHeads: 4, numKvHeads: 2 },
      { architecture: "qwen3", qkNorm: true, numHeads: 4, numKvHeads: 1, headDim: 6, tieWordEmbeddings: true },
      { architecture: "mistral", slidingWindow: 3, numHeads: 2, numKvHeads: 2 },
    ].entries()
  ) {
    const c = config(over as Partial<ModelConfig>);
    const t = randomWeights(c, 10 + i);
    const tokens = [0, 5, 9, 2, 2, 7, 10];
    const got = referenceForward(c, weightFn(t), tokens);
    const want = directForward(c, t, tokens);
    for (let r = 0; r < tokens.length; r++) {
      assertClose(row(got, r, c.vocabSize), want[r], 1e-12, `${c.architecture} row ${r}`);
    }
  }
});

Deno.test("causality: a later token never changes earlier logits", () => {
  for (const over of [{}, { qkNorm: true, attentionBias: true }, { slidingWindow: 2 }]) {
    const c = config(over);
    const t = randomWeights(c, 3);
    const a = [1, 2, 3, 4, 5, 6];
    const b = [1, 2, 3, 4, 9, 6];
    const la = referenceForward(c, weightFn(t), a);
    const lb = referenceForward(c, weightFn(t), b);
    for (let r = 0; r < 4; r++) assert.deepEqual(row(la, r, c.vocabSize), row(lb, r, c.vocabSize));
    assert.notDeepEqual(row(la, 4, c.vocabSize), row(lb, 4, c.vocabSize));
    assert.notDeepEqual(row(la, 5, c.vocabSize), row(lb, 5, c.vocabSize));
  }
});

Deno.test("sliding window boundary: query p sees keys p-w < k <= p", () => {
  // One layer, w = 2: a token only reaches positions p and p+1.
  const c = config({ numLayers: 1, slidingWindow: 2 });
  const t = randomWeights(c, 4);
  const la = referenceForward(c, weightFn(t), [1, 2, 3, 4, 5]);
  const lb = referenceForward(c, weightFn(t), [7, 2, 3, 4, 5]);
  assert.notDeepEqual(row(la, 1, c.vocabSize), row(lb, 1, c.vocabSize));
  for (let r = 2; r < 5; r++) assert.deepEqual(row(la, r, c.vocabSize), row(lb, r, c.vocabSize));
});

Deno.test("GQA: query head h reads kv head floor(h / (nH / nKv))", () => {
  // 4 q heads, 2 kv heads, headDim 2, T = 1 (attention weight is 1, so each
  // head outputs its kv head's v). kv head j has v = j + 1; o_proj copies q
  // head h's output to hidden dim 4 + h; lm_head is the identity.
  const H = 8;
  const c = config({
    vocabSize: H,
    hiddenSize: H,
    intermediateSize: 1,
    numLayers: 1,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 2,
  });
  const zeros = (n: number) => new Array<number>(n).fill(0);
  const t: Tensors = new Map();
  for (const [name, shape] of tensorShapes(c)) t.set(name, { data: zeros(shape.reduce((a, b) => a * b, 1)), shape });
  const set = (name: string, i: number, val: number) => (t.get(name)!.data[i] = val);
  const p = "model.layers.0";
  set("model.embed_tokens.weight", 0, 1); // token 0 = e0
  for (let i = 0; i < H; i++) {
    set(`${p}.input_layernorm.weight`, i, 1);
    set(`${p}.post_attention_layernorm.weight`, i, 1);
    set("model.norm.weight", i, 1);
    set("lm_head.weight", i * H + i, 1);
  }
  // v_proj [nKv*d = 4, H]: kv head j's first component = (j + 1) * x[0].
  set(`${p}.self_attn.v_proj.weight`, 0 * H, 1);
  set(`${p}.self_attn.v_proj.weight`, 2 * H, 2);
  // o_proj [H, nH*d = 8]: hidden 4 + h <- head h's first component.
  for (let h = 0; h < 4; h++) set(`${p}.self_attn.o_proj.weight`, (4 + h) * 8 + h * 2, 1);
  const logits = referenceForward(c, weightFn(t), [0]);
  // Relative to head 0 (the input RMSNorm scales every v by the same sqrt(8)).
  const ratios = [4, 5, 6, 7].map((i) => logits[i] / logits[4]);
  assertClose(ratios, [1, 1, 2, 2], 1e-12); // not [1, 2, 1, 2] (h % nKv)
});

Deno.test("rotary: a uniform position offset leaves logits unchanged (relative positions only)", () => {
  const c = config({ qkNorm: true });
  const t = randomWeights(c, 5);
  const tokens = [4, 8, 1, 0, 6];
  const base = referenceForward(c, weightFn(t), tokens);
  const shifted = referenceForward(c, weightFn(t), tokens, { positions: tokens.map((_, i) => 37 + i) });
  assertClose(shifted, base, 1e-10);
  const scrambled = referenceForward(c, weightFn(t), tokens, { positions: [0, 2, 3, 4, 5] });
  assert.notDeepEqual(Array.from(scrambled.subarray(c.vocabSize)), Array.from(base.subarray(c.vocabSize)));
});

Deno.test("rope scaling: linear factor f equals positions / f; llama3 factor 1 is the identity", () => {
  const c = config({});
  const t = randomWeights(c, 6);
  const tokens = [3, 1, 4, 1, 5];
  const lin = referenceForward({ ...c, ropeScaling: { type: "linear", factor: 2 } }, weightFn(t), tokens, {
    positions: [0, 2, 4, 6, 8],
  });
  assertClose(lin, referenceForward(c, weightFn(t), tokens), 1e-10);
  const l3 = {
    type: "llama3",
    factor: 1,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 64,
  } as const;
  assertClose(
    referenceForward({ ...c, ropeScaling: l3 }, weightFn(t), tokens),
    referenceForward(c, weightFn(t), tokens),
    1e-12,
  );
});

Deno.test("llama3 inv_freq matches hand-computed values", () => {
  // headDim 8, theta 1e4 → inv_freq = [1, 0.1, 0.01, 0.001];
  // wavelen = 2π/inv = [6.283, 62.83, 628.3, 6283.2].
  // old_ctx 2048, low 1, high 4 → low_freq_wavelen 2048, high_freq_wavelen 512.
  //   i=0,1: wavelen < 512 → unchanged.
  //   i=2: medium, smooth = (2048/628.31853 − 1)/(4 − 1) = (3.2594932 − 1)/3 = 0.75316441;
  //        inv = (1 − 0.75316441)·0.01/8 + 0.75316441·0.01 = 0.0078401886.
  //   i=3: wavelen 6283 > 2048 → 0.001/8 = 0.000125.
  const c = config({
    headDim: 8,
    ropeTheta: 10000,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 2048,
    },
  });
  const inv = ropeInvFreq(c);
  const want = [1, 0.1, 0.01 * (0.24683559 / 8 + 0.75316441), 0.000125];
  for (let i = 0; i < 4; i++) {
    assert.ok(Math.abs(inv[i] - want[i]) <= 1e-7 * want[i], `inv[${i}] ${inv[i]} vs ${want[i]}`);
  }
  assert.ok(Math.abs(inv[2] - 0.0078401886) < 1e-9);
  // Llama 3.1 real numbers: headDim 128, theta 5e5, factor 8, ctx 8192.
  const l31 = ropeInvFreq(config({
    headDim: 128,
    ropeTheta: 500000,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    },
  }));
  assert.equal(l31[0], 1); // highest frequency untouched
  // i=63: 500000^(-126/128) = 2.4298e-6, wavelen ≈ 2.586e6 > 8192 → /8.
  assert.ok(Math.abs(l31[63] - Math.pow(500000, -126 / 128) / 8) < 1e-18);
});

Deno.test("rejects shape mismatches and out-of-range tokens", () => {
  const c = config({});
  const t = randomWeights(c, 7);
  assert.throws(() => referenceForward(c, weightFn(t), [c.vocabSize]), /out of range/);
  const bad = new Map(t);
  bad.set("model.norm.weight", { data: [1, 2], shape: [2] });
  assert.throws(() => referenceForward(c, weightFn(bad), [1]), /expected shape/);
});
