import assert from "node:assert/strict";
import { buildServingGraph } from "../src/model/serving_graph.ts";
import { serializeModel } from "../src/onnx/writer.ts";
import { ort } from "../src/runtime/ort.ts";
import { CausalLM } from "../src/serve/causal_lm.ts";
import { randomModel, VARIANTS } from "./helpers/random_model.ts";
import { referenceForward } from "./reference/forward.ts";

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
