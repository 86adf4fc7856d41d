import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { buildServingGraph } from "../src/model/serving_graph.ts";
import { serializeModel } from "../src/onnx/writer.ts";
import { ort } from "../src/runtime/ort.ts";
import { CausalLM } from "../src/runtime/causal_lm.ts";
import { randomModel, VARIANTS } from "./helpers/random_model.ts";
import { referenceForward } from "./reference/forward.ts";
import { logSoftmax } from "./helpers/log_softmax.ts";

async function load(name: string): Promise<{ lm: CausalLM; model: ReturnType<typeof randomModel> }> {
  const model = randomModel(VARIANTS[name], 7);
  const session = await ort.InferenceSession.create(await serializeModel(buildServingGraph(model)));
  return { lm: new CausalLM(model.config, session, "float32"), model };
}

function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

const tokens = [3, 17, 42, 5, 96, 0, 11, 64, 29, 8, 50, 77];

for (const name of Object.keys(VARIANTS)) {
  Deno.test(`serving graph matches the float64 reference: ${name}`, async () => {
    const { lm, model } = await load(name);
    const out = await lm.forward({ inputIds: [tokens] });
    const ref = referenceForward(model.config, (n) => model.tensors.get(n)!, tokens);
    assert.equal(out.logits.length, ref.length);
    const err = maxRelError(out.logits, ref);
    assert.ok(err < 1e-4, `relative error ${err}`);
    // num_logits_to_keep = k returns exactly the last k rows.
    const V = model.config.vocabSize;
    const kept = await lm.forward({ inputIds: [tokens], numLogitsToKeep: 3 });
    assert.deepEqual(kept.logits, out.logits.slice(out.logits.length - 3 * V));
    await lm.release();
  });
}

for (const name of ["llama3_rope_untied", "mistral_sliding_window", "qwen3_qk_norm_wide_heads"]) {
  Deno.test(`incremental KV-cache decode of 32 tokens equals full recompute: ${name}`, async () => {
    const { lm } = await load(name);
    const V = lm.config.vocabSize;
    const seq = tokens.slice(0, 4);
    let step = await lm.forward({ inputIds: [seq] });
    for (let t = 0; t < 32; t++) {
      const last = step.logits.subarray(step.logits.length - V);
      const next = last.indexOf(Math.max(...last));
      seq.push(next);
      step = await lm.forward({ inputIds: [[next]], past: step.present });
      const full = await lm.forward({ inputIds: [seq] });
      const err = maxRelError(step.logits, full.logits.subarray(full.logits.length - V));
      assert.ok(err < 1e-5, `step ${t}: relative error ${err}`);
    }
    assert.equal(step.present.length, 36);
    await lm.release();
  });
}

Deno.test("left-padded batch rows equal their unpadded runs", async () => {
  const { lm } = await load("qwen2_qkv_bias");
  const V = lm.config.vocabSize;
  const a = [5, 6, 7, 8, 9], b = [20, 21, 22];
  const pad = a.length - b.length;
  const batch = await lm.forward({
    inputIds: [a, [...Array(pad).fill(0), ...b]],
    attentionMask: [a.map(() => 1), [...Array(pad).fill(0), ...b.map(() => 1)]],
    positionIds: [a.map((_, i) => i), [...Array(pad).fill(0), ...b.map((_, i) => i)]],
  });
  const solo = await lm.forward({ inputIds: [b] });
  const rowB = batch.logits.subarray(a.length * V + pad * V, 2 * a.length * V);
  assert.ok(maxRelError(rowB, solo.logits) < 1e-5);
  // Decode one more token for both rows over the padded cache.
  const next = await lm.forward({
    inputIds: [[1], [2]],
    attentionMask: [Array(a.length + 1).fill(1), [...Array(pad).fill(0), ...Array(b.length + 1).fill(1)]],
    positionIds: [[a.length], [b.length]],
    past: batch.present,
  });
  const soloNext = await lm.forward({ inputIds: [[2]], past: solo.present });
  assert.ok(maxRelError(next.logits.subarray(V), soloNext.logits) < 1e-5);
  await lm.release();
});

Deno.test("float16 serving graph tracks float32 and decodes with a half-precision KV cache", async () => {
  const model = randomModel(VARIANTS.qwen3_qk_norm_wide_heads, 7);
  const half = new CausalLM(
    model.config,
    await ort.InferenceSession.create(await serializeModel(buildServingGraph(model, "float16"))),
    "float16",
  );
  const { lm: full } = await load("qwen3_qk_norm_wide_heads");
  const a = await half.forward({ inputIds: [tokens] });
  const b = await full.forward({ inputIds: [tokens] });
  assert.ok(maxRelError(a.logits, b.logits) < 5e-3);
  assert.equal(a.present.layers[0].key.type, "float16");
  const stepHalf = await half.forward({ inputIds: [[9]], past: a.present });
  const stepFull = await full.forward({ inputIds: [[9]], past: b.present });
  assert.ok(maxRelError(stepHalf.logits, stepFull.logits) < 5e-3);
  await half.release();
  await full.release();
});

Deno.test("forwardStep: step keys/values are present's new columns; masked spare columns change nothing", async () => {
  // Mistral's sliding window (by position) must see through the spare columns too.
  const { lm } = await load("mistral_sliding_window");
  const prompt = tokens.slice(0, 9);
  const full = await lm.forward({ inputIds: [prompt] });
  const step = await lm.forwardStep({ inputIds: [prompt] });
  assert.deepEqual(step.logits, full.logits);
  full.present.layers.forEach((l, i) => {
    assert.deepEqual(step.step[i].key.data, l.key.data, "no past: the step's keys are the whole present");
    assert.deepEqual(step.step[i].value.data, l.value.data);
  });
  // The engine's layout: the row's 9 tokens, then 5 unused (garbage) columns, masked.
  const spare = 5, width = prompt.length + spare;
  const widen = (t: ort.Tensor) => {
    const [, kv, len, hd] = t.dims;
    const out = new Float32Array(kv * width * hd).fill(123.5);
    for (let h = 0; h < kv; h++) {
      out.set((t.data as Float32Array).subarray(h * len * hd, (h + 1) * len * hd), h * width * hd);
    }
    return new ort.Tensor("float32", out, [1, kv, width, hd]);
  };
  const past = {
    layers: full.present.layers.map((l) => ({ key: widen(l.key), value: widen(l.value) })),
    length: width,
    batch: 1,
  };
  let seq = [...prompt], cache = full.present;
  for (let t = 0; t < 3; t++) {
    const next = 30 + t;
    const ref = await lm.forward({ inputIds: [[next]], past: cache });
    const got = await lm.forwardStep({
      inputIds: [[next]],
      attentionMask: [[...Array(seq.length).fill(1), ...Array(width - seq.length).fill(0), 1]],
      positionIds: [[seq.length]],
      past,
    });
    assert.ok(maxRelError(got.logits, ref.logits) < 1e-5, `step ${t}`);
    // Write the step's column where the engine would, and go on.
    got.step.forEach((l, i) => {
      for (const [dst, src] of [[past.layers[i].key, l.key], [past.layers[i].value, l.value]]) {
        const [, kv, , hd] = dst.dims;
        for (let h = 0; h < kv; h++) {
          (dst.data as Float32Array).set(
            (src.data as Float32Array).subarray(h * hd, (h + 1) * hd),
            (h * width + seq.length) * hd,
          );
        }
      }
    });
    seq = [...seq, next];
    cache = ref.present;
  }
  await lm.release();
});

Deno.test("logits_logsumexp equals the float64 log-sum-exp of each logits row", async () => {
  const { lm } = await load("llama3_rope_untied");
  const V = lm.config.vocabSize;
  const out = await lm.forwardStep({ inputIds: [tokens] });
  assert.equal(out.logSumExp.length, tokens.length);
  for (let p = 0; p < tokens.length; p++) {
    const row = out.logits.subarray(p * V, (p + 1) * V);
    const lse = row[0] - logSoftmax(row)[0];
    assert.ok(Math.abs(out.logSumExp[p] - lse) <= 1e-6 * Math.max(1, Math.abs(lse)), `position ${p}`);
  }
  await lm.release();
});
