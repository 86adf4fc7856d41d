/**
 * The LM training graph: adapter gradients against central finite differences
 * of the independent float64 reference forward (W_eff = W + s·A·Bᵀ, the same
 * shifted masked cross-entropy in JS), masking, accuracy, and a run over a
 * generated model + tokenized dataset.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { Rng } from "../src/model/rng.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { loadTokenizer } from "../src/model/tokenizer.ts";
import { collate, type LmBatch } from "../src/train/batching.ts";
import { IGNORE_INDEX, validateJsonl } from "../src/train/dataset.ts";
import {
  initAdapterFactors,
  lmAdapterSpecs,
  LmTrainingModel,
  loraScale,
  TARGET_MODULES,
} from "../src/train/lm_training_graph.ts";
import type { AdapterFactors, AdapterSpec } from "../src/train/types.ts";
import { type MemoryModel, randomModel, tinyConfig } from "./helpers/random_model.ts";
import { referenceForward } from "./reference/forward.ts";

type F64 = { data: Float64Array; shape: number[] };

const ROWS = [[3, 17, 5, 9, 1, 20, 7], [4, 4, 11, 0, 22]];
/** Unshifted labels; position 0 and some later tokens masked. */
const LABELS = [[IGNORE_INDEX, 17, 5, IGNORE_INDEX, 1, 20, 7], [IGNORE_INDEX, IGNORE_INDEX, 11, 0, 22]];

function batchOf(labels: number[][], rows = ROWS): LmBatch {
  return collate(rows.map((r, b) => ({ inputIds: r, labels: labels[b] })), { padTokenId: 2 });
}

function randomFactors(adapters: readonly AdapterSpec[], seed: number): Map<string, AdapterFactors> {
  return new Map(adapters.map((a) => {
    const rng = new Rng(seed, a.name);
    return [a.name, {
      A: rng.fillNormal(new Float32Array(a.m * a.rank), 0.3),
      B: rng.fillNormal(new Float32Array(a.n * a.rank), 0.3),
    }];
  }));
}

/** W + s·A·Bᵀ in float64. */
function effective(w: Float32Array, a: AdapterSpec, A: ArrayLike<number>, B: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(w);
  for (let i = 0; i < a.m; i++) {
    for (let j = 0; j < a.n; j++) {
      let acc = 0;
      for (let k = 0; k < a.rank; k++) acc += A[i * a.rank + k] * B[j * a.rank + k];
      out[i * a.n + j] += a.scale * acc;
    }
  }
  return out;
}

/** Reference logits per row (real tokens only: right padding never reaches them). */
function referenceLogits(config: ModelConfig, weights: Map<string, F64>, rows = ROWS): Float64Array[] {
  return rows.map((r) => referenceForward(config, (n) => weights.get(n)!, r));
}

/** Shifted masked mean cross-entropy, as the graph defines it. */
function referenceLoss(config: ModelConfig, logits: Float64Array[], labels: number[][]): number {
  const V = config.vocabSize;
  let total = 0, count = 0;
  logits.forEach((lg, b) => {
    for (let t = 0; t + 1 < labels[b].length; t++) {
      const label = labels[b][t + 1];
      if (label < 0) continue;
      const row = lg.subarray(t * V, (t + 1) * V);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      total += lse - row[label];
      count++;
    }
  });
  return total / count;
}

function referenceWeights(model: MemoryModel, adapters: readonly AdapterSpec[], factors: Map<string, AdapterFactors>) {
  const w = new Map<string, F64>();
  for (const [n, t] of model.tensors) w.set(n, { data: Float64Array.from(t.data), shape: t.shape });
  for (const a of adapters) {
    const f = factors.get(a.name)!;
    w.set(`${a.name}.weight`, {
      data: effective(model.tensors.get(`${a.name}.weight`)!.data, a, f.A, f.B),
      shape: [a.m, a.n],
    });
  }
  return w;
}

const LORA = { rank: 2, alpha: 3 };

const VARIANTS: Record<string, ModelConfig> = {
  llama_gqa_untied: tinyConfig({ vocabSize: 23, hiddenSize: 16, intermediateSize: 24, headDim: 4 }),
  qwen2_qkv_bias_tied: tinyConfig({
    architecture: "qwen2",
    modelType: "qwen2",
    vocabSize: 23,
    hiddenSize: 16,
    intermediateSize: 24,
    headDim: 4,
    attentionBias: true,
    tieWordEmbeddings: true,
  }),
  qwen3_qk_norm: tinyConfig({
    architecture: "qwen3",
    modelType: "qwen3",
    vocabSize: 23,
    hiddenSize: 16,
    intermediateSize: 24,
    headDim: 8,
    qkNorm: true,
  }),
};

/**
 * Tolerance as in tests/autodiff.test.ts's decoder check: relative to each
 * tensor's largest gradient, 2e-5 for a float32 graph (every op rounds).
 */
for (const [variant, config] of Object.entries(VARIANTS)) {
  Deno.test(`LoRA gradients of the LM training graph match finite differences: ${variant}`, async () => {
    const model = randomModel(config, 3);
    const lm = await LmTrainingModel.create(model, LORA);
    try {
      const factors = randomFactors(lm.adapters, 5);
      const out = await lm.forwardBackward(batchOf(LABELS), factors);
      const base = referenceWeights(model, lm.adapters, factors);
      const expectedLoss = referenceLoss(config, referenceLogits(config, base), LABELS);
      assert.ok(Math.abs(out.loss - expectedLoss) < 1e-5 * expectedLoss, `loss ${out.loss} vs ${expectedLoss}`);
      assert.equal(out.count, 8);
      assert.equal(out.grads.size, lm.adapters.length);

      // Every module type, spread over both layers; A and B; 6 entries each.
      const checked = TARGET_MODULES.map((mod, i) =>
        lm.adapters.find((a) => a.name.startsWith(`model.layers.${i % 2}.`) && a.name.endsWith(`.${mod}`))!
      );
      const h = 1e-4;
      let worst = 0;
      for (const a of checked) {
        const f = factors.get(a.name)!;
        const grad = out.grads.get(a.name)!;
        for (const which of ["A", "B"] as const) {
          const values = Float64Array.from(f[which]);
          const g = which === "A" ? grad.gA : grad.gB;
          assert.equal(g.length, values.length);
          const big = Math.max(...Array.from(g, Math.abs));
          assert.ok(big > 0, `${a.name}.${which}: zero gradient`);
          for (let p = 0; p < 6; p++) {
            const i = Math.floor((p + 0.5) * values.length / 6);
            const at = (delta: number) => {
              const v = values.slice();
              v[i] += delta;
              const A = which === "A" ? v : f.A, B = which === "B" ? v : f.B;
              const w = new Map(base).set(`${a.name}.weight`, {
                data: effective(model.tensors.get(`${a.name}.weight`)!.data, a, A, B),
                shape: [a.m, a.n],
              });
              return referenceLoss(config, referenceLogits(config, w), LABELS);
            };
            const fd = (at(h) - at(-h)) / (2 * h);
            const err = Math.abs(g[i] - fd) / big;
            worst = Math.max(worst, err);
            assert.ok(err < 2e-5, `${a.name}.${which}[${i}]: ${g[i]} vs finite difference ${fd} (${err} of the max)`);
          }
        }
      }
      console.log(`  worst adapter gradient error ${worst.toExponential(2)} of each tensor's max |grad|`);
    } finally {
      await lm.release();
    }
  });
}

Deno.test("masked tokens contribute nothing; accuracy counts argmax hits over counted tokens", async () => {
  const config = VARIANTS.llama_gqa_untied;
  const model = randomModel(config, 4);
  const lm = await LmTrainingModel.create(model, { ...LORA, targetModules: ["q_proj", "down_proj"] });
  try {
    const factors = randomFactors(lm.adapters, 6);
    const ref = await lm.forwardBackward(batchOf(LABELS), factors);
    const same = async (labels: number[][], rows = ROWS, why: string) => {
      const out = await lm.forwardBackward(batchOf(labels, rows), factors);
      assert.equal(out.loss, ref.loss, why);
      assert.equal(out.count, ref.count, why);
      for (const [name, g] of ref.grads) {
        assert.deepEqual(out.grads.get(name)!.gA, g.gA, `${why}: ${name}.A`);
        assert.deepEqual(out.grads.get(name)!.gB, g.gB, `${why}: ${name}.B`);
      }
    };
    // Position 0 is never a target (nothing predicts it), whatever its label.
    await same([[9, ...LABELS[0].slice(1)], [12, ...LABELS[1].slice(1)]], ROWS, "labels at position 0");
    // Any negative label is masked.
    await same(LABELS.map((r) => r.map((l) => l < 0 ? -1 - (l & 7) : l)), ROWS, "other negative labels");
    // Right padding: pad ids after a row's tokens change nothing (collate pads row 1 to 7).
    const padded = [ROWS[0], [...ROWS[1], 13, 21]];
    await same([LABELS[0], [...LABELS[1], IGNORE_INDEX, IGNORE_INDEX]], padded, "pad tokens");

    // Unmasking one more token changes the loss to the reference over 9 tokens.
    const more = [LABELS[0], [IGNORE_INDEX, 4, 11, 0, 22]];
    const out = await lm.forwardBackward(batchOf(more), factors);
    assert.equal(out.count, 9);
    const logits = referenceLogits(config, referenceWeights(model, lm.adapters, factors));
    const expected = referenceLoss(config, logits, more);
    assert.ok(Math.abs(out.loss - expected) < 1e-5 * expected);

    // Accuracy: label every counted target with the reference's argmax at even t, a wrong token at odd t.
    const V = config.vocabSize;
    const argmax = (b: number, t: number) => {
      const row = Array.from(logits[b].subarray(t * V, (t + 1) * V));
      const sorted = [...row].sort((x, y) => y - x);
      assert.ok(sorted[0] - sorted[1] > 1e-3, "clear top-1");
      return row.indexOf(sorted[0]);
    };
    let hits = 0;
    const labels = LABELS.map((r, b) =>
      r.map((l, t) => {
        if (l < 0) return l;
        const best = argmax(b, t - 1);
        if (t % 2 === 0) {
          hits++;
          return best;
        }
        return (best + 1) % V;
      })
    );
    const acc = await lm.forwardBackward(batchOf(labels), factors);
    assert.equal(acc.count, 8);
    assert.equal(acc.correct, hits);
    assert.ok(hits > 0 && hits < 8);
    const ev = await lm.evaluate(batchOf(labels), factors);
    assert.equal(ev.count, 8);
    assert.equal(ev.correct, hits);
    assert.ok(Math.abs(ev.loss - acc.loss) < 1e-6 * acc.loss, `evaluate ${ev.loss} vs ${acc.loss}`);

    // Baked weights (the CUDA layout: initializers + pending merges) compute the same step.
    const baked = await LmTrainingModel.create(model, { ...LORA, targetModules: ["q_proj", "down_proj"] }, {
      weightLayout: "baked",
    });
    try {
      const b = await baked.forwardBackward(batchOf(LABELS), factors);
      assert.ok(Math.abs(b.loss - ref.loss) < 1e-6 * ref.loss);
      for (const [name, g] of ref.grads) {
        const big = Math.max(...Array.from(g.gA, Math.abs));
        assert.ok(b.grads.get(name)!.gA.every((v, i) => Math.abs(v - g.gA[i]) < 1e-5 * big), name);
      }
    } finally {
      await baked.release();
    }

    // Nothing counted: loss 0, not NaN.
    const none = await lm.evaluate(batchOf(LABELS.map((r) => r.map(() => IGNORE_INDEX))), factors);
    assert.deepEqual([none.loss, none.count, none.correct], [0, 0, 0]);
  } finally {
    await lm.release();
  }
});

Deno.test("micro-batches (a batch over the activation budget) and recomputed layers give the batch's loss and gradients", async () => {
  const config = VARIANTS.qwen3_qk_norm;
  const model = randomModel(config, 7);
  const whole = await LmTrainingModel.create(model, LORA);
  // One row per run: any batch passes a 1-byte budget.
  const split = await LmTrainingModel.create(model, LORA, { activationBudgetBytes: 1, recompute: false });
  const recomputed = await LmTrainingModel.create(model, LORA, { recompute: true });
  // Recomputation is chosen by itself when one row of maxLength tokens passes the budget.
  const auto = await LmTrainingModel.create(model, LORA, { activationBudgetBytes: 1, maxLength: 8 });
  try {
    assert.equal(whole.recompute, false);
    assert.equal(recomputed.recompute, true);
    assert.equal(auto.recompute, true);
    assert.equal(split.rowsPerRun({ batchSize: 2, seqLen: 7 }), 1);
    assert.equal(whole.rowsPerRun({ batchSize: 2, seqLen: 7 }), 2);
    const factors = randomFactors(whole.adapters, 8);
    const ref = await whole.forwardBackward(batchOf(LABELS), factors);
    for (const [what, lm] of [["micro-batches", split], ["recomputed layers", recomputed], ["both", auto]] as const) {
      const out = await lm.forwardBackward(batchOf(LABELS), factors);
      assert.equal(out.count, ref.count, what);
      assert.equal(out.correct, ref.correct, what);
      assert.ok(Math.abs(out.loss - ref.loss) < 1e-6 * ref.loss, `${what}: loss ${out.loss} vs ${ref.loss}`);
      for (const [name, g] of ref.grads) {
        for (const which of ["gA", "gB"] as const) {
          const big = Math.max(...Array.from(g[which], Math.abs));
          const got = out.grads.get(name)![which];
          assert.ok(got.every((v, i) => Math.abs(v - g[which][i]) <= 1e-5 * big), `${what}: ${name}.${which}`);
        }
      }
      const ev = await lm.evaluate(batchOf(LABELS), factors);
      assert.equal(ev.count, ref.count, what);
      assert.ok(Math.abs(ev.loss - ref.loss) < 1e-6 * ref.loss, `${what}: evaluate`);
    }
  } finally {
    for (const lm of [whole, split, recomputed, auto]) await lm.release();
  }
});

Deno.test("adapter specs: targets, layers, scale (rsLoRA)", () => {
  const config = VARIANTS.qwen3_qk_norm;
  const all = lmAdapterSpecs(config, { rank: 4, alpha: 8 });
  assert.equal(all.length, 14);
  assert.deepEqual(all[0], { name: "model.layers.0.self_attn.q_proj", m: 32, n: 16, rank: 4, scale: 2 });
  assert.deepEqual(all[6], { name: "model.layers.0.mlp.down_proj", m: 16, n: 24, rank: 4, scale: 2 });
  const some = lmAdapterSpecs(config, { rank: 4, alpha: 8, rsLora: true, targetModules: ["v_proj"], layers: [1] });
  assert.deepEqual(some, [{ name: "model.layers.1.self_attn.v_proj", m: 16, n: 16, rank: 4, scale: 4 }]);
  assert.equal(loraScale({ rank: 16, alpha: 8, rsLora: true }), 2);
  assert.throws(() => lmAdapterSpecs(config, { rank: 0, alpha: 1 }), /rank/);
  assert.throws(() => lmAdapterSpecs(config, { rank: 1, alpha: 1, layers: [2] }), /out of range/);
});

Deno.test("a generated model trains on a tokenized chat dataset: counts match, a gradient step lowers the loss", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lm_train_test_" });
  try {
    await generateTinyModel({ out: dir, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 2 });
    const [ckpt, tok] = await Promise.all([openCheckpoint(dir), loadTokenizer(dir)]);
    const text = [
      { messages: [{ role: "user", content: "2+2?" }, { role: "assistant", content: "4" }] },
      {
        messages: [{ role: "system", content: "terse" }, { role: "user", content: "hi" }, {
          role: "assistant",
          content: "hello!",
        }],
      },
    ].map((l) => JSON.stringify(l)).join("\n");
    const { examples, errors } = validateJsonl(text, { tokenizer: tok, maxLength: 64 });
    assert.deepEqual(errors, []);
    const batch = collate(examples, { padTokenId: tok.eosTokenIds[0] });

    const lm = await LmTrainingModel.create(ckpt, {
      rank: 4,
      alpha: 8,
      targetModules: ["q_proj", "v_proj", "down_proj"],
    });
    try {
      assert.equal(lm.adapters.length, 6);
      const factors = initAdapterFactors(lm.adapters, 1);
      const first = await lm.forwardBackward(batch, factors);
      assert.equal(first.count, batch.targets);
      assert.equal(first.count, 2 + 7, "'4' and 'hello!' (one token per byte), each + <|im_end|>");
      assert.ok(Number.isFinite(first.loss) && first.loss > 0);
      // A starts at zero, so B gets no gradient yet; A does.
      for (const g of first.grads.values()) {
        assert.ok(g.gB.every((v) => v === 0));
        assert.ok(g.gA.some((v) => v !== 0));
      }
      const stepped = new Map([...factors].map(([name, f]) => {
        const gA = first.grads.get(name)!.gA;
        return [name, { A: f.A.map((v, i) => v - 0.05 * gA[i]), B: f.B }];
      }));
      const after = await lm.evaluate(batch, stepped);
      assert.ok(after.loss < first.loss, `loss ${first.loss} → ${after.loss}`);
    } finally {
      await lm.release();
      ckpt.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
