/**
 * scoreModel (src/train/lm_evaluation.ts) scores with an evaluation-only
 * model (the forward graph alone): the same loss, accuracy and counts as the
 * full training model's evaluate on the same batches; such a model refuses
 * to compute gradients.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { loadTokenizer } from "../src/model/tokenizer.ts";
import { evaluationSet, scoreModel } from "../src/train/lm_evaluation.ts";
import { LmTrainingModel } from "../src/train/lm_training_graph.ts";
import type { AdapterFactors } from "../src/train/types.ts";
import { replyJsonl, tinyLlama, TRAIN_QUESTIONS, VALID_QUESTIONS } from "./helpers/service.ts";

Deno.test("scoreModel: an evaluation-only model scores as the training model evaluates; it has no gradients", async () => {
  const root = await Deno.makeTempDir();
  const dir = await tinyLlama(root);
  const ckpt = await openCheckpoint(dir);
  try {
    const tok = await loadTokenizer(dir);
    const set = evaluationSet(tok, 0, replyJsonl([...TRAIN_QUESTIONS, ...VALID_QUESTIONS]), {
      maxLength: 256,
      batchSize: 5,
    });
    const score = await scoreModel(ckpt, set, { threads: 1 });

    const lora = { rank: 1, alpha: 1, targetModules: ["q_proj" as const], layers: [0] };
    const full = await LmTrainingModel.create(ckpt, lora, { threads: 1 });
    try {
      const factors = new Map<string, AdapterFactors>(
        full.adapters.map((a) => [a.name, { A: new Float32Array(a.m), B: new Float32Array(a.n) }]),
      );
      let sum = 0, count = 0, correct = 0;
      for (const batch of set.batches) {
        const r = await full.evaluate(batch, factors);
        sum += r.loss * r.count;
        count += r.count;
        correct += r.correct ?? 0;
      }
      assert.ok(count > 0);
      assert.deepEqual(score, { loss: sum / count, tokenAccuracy: correct / count, tokens: count });

      const evalOnly = await LmTrainingModel.create(ckpt, lora, { threads: 1, gradients: false });
      try {
        await assert.rejects(() => evalOnly.forwardBackward(set.batches[0], factors), /no gradients/);
      } finally {
        await evalOnly.release();
      }
    } finally {
      await full.release();
    }
  } finally {
    ckpt.close();
    await Deno.remove(root, { recursive: true });
  }
});
