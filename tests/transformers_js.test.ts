/**
 * A directory this project exports loads in transformers.js and behaves the
 * same as this engine: logits within 1e-4, and the same greedy continuation.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { AutoModelForCausalLM, type PreTrainedModel, Tensor } from "@huggingface/transformers";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { configureTransformersOffline } from "../src/model/tokenizer.ts";
import { generate } from "../src/serve/generate.ts";
import { loadModel } from "../src/serve/load_model.ts";

function int64(ids: number[]): Tensor {
  return new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
}

for (const arch of ["llama", "qwen3"] as const) {
  Deno.test(`transformers.js loads the exported ${arch} directory: same logits and greedy continuation`, async () => {
    const root = await Deno.makeTempDir();
    try {
      const { dir } = await generateTinyModel({
        out: `${root}/model`,
        arch,
        preset: "tiny",
        tokenizer: "bytes",
        seed: 3,
      });
      const model = await loadModel(dir, { dataDir: `${root}/data`, device: "cpu" });
      const promptIds = model.tokenizer.encodeChat([{ role: "user", content: "Tell me a story." }], {
        addGenerationPrompt: true,
      });

      configureTransformersOffline();
      const tjs = await AutoModelForCausalLM.from_pretrained(model.compiledDir, {
        local_files_only: true,
        dtype: "fp32",
      }) as PreTrainedModel;
      const tjsOut = await tjs({ input_ids: int64(promptIds), attention_mask: int64(promptIds.map(() => 1)) });
      const tjsLogits = tjsOut.logits.data as Float32Array;
      const ours = await model.lm.forward({ inputIds: [promptIds] });
      assert.equal(tjsLogits.length, ours.logits.length);
      let diff = 0, scale = 0;
      for (let i = 0; i < ours.logits.length; i++) {
        diff = Math.max(diff, Math.abs(tjsLogits[i] - ours.logits[i]));
        scale = Math.max(scale, Math.abs(ours.logits[i]));
      }
      assert.ok(diff / scale < 1e-4, `relative logit error ${diff / scale}`);

      const maxTokens = 24;
      const result = await generate(model.lm, model.tokenizer, promptIds, {
        maxTokens,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        stopTokenIds: [],
      });
      const tjsIds = await tjs.generate({
        input_ids: int64(promptIds),
        max_new_tokens: maxTokens,
        do_sample: false,
        eos_token_id: [],
      }) as Tensor;
      const continuation = (tjsIds.tolist() as bigint[][])[0].slice(promptIds.length).map(Number);
      assert.deepEqual(result.tokenIds, continuation);
      await tjs.dispose();
      await model.lm.release();
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}
