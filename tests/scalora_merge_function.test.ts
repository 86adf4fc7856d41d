/**
 * A ScaLoRA event must not change the model's function: merging
 * s·A·diag(1 − α∘β)·Bᵀ into W and rescaling A ← A·diag(α), B ← B·diag(β)
 * keeps W_eff = W + s·A·Bᵀ. Checked end to end through the LM training graph
 * on the generated test models that issue 12 singled out — qwen2 and qwen3,
 * with tied embeddings and residual writes (o_proj, down_proj) scaled ~32x by
 * the generator — and on llama, in both weight layouts (graph inputs merged in
 * place; baked initializers plus pending low-rank merges), with α, β spanning
 * full merges (0) and growth (> 1), as well as after many events.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { Rng } from "../src/model/rng.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { collate, type LmBatch } from "../src/train/batching.ts";
import { IGNORE_INDEX } from "../src/train/dataset.ts";
import { LmTrainingModel } from "../src/train/lm_training_graph.ts";
import type { AdapterFactors } from "../src/train/types.ts";

function batch(seed: number, vocab: number): LmBatch {
  const rng = new Rng(seed, "merge-function/batch");
  const rows = Array.from({ length: 4 }, () => Array.from({ length: 12 }, () => rng.nextInt(vocab - 3)));
  return collate(
    rows.map((r) => ({ inputIds: r, labels: r.map((t, i) => (i === 0 ? IGNORE_INDEX : t)) })),
    { padTokenId: 0 },
  );
}

for (const arch of ["qwen3", "qwen2", "llama"] as const) {
  for (const layout of ["input", "baked"] as const) {
    Deno.test(`a merge + rescale keeps the loss (${arch}, ${layout} weights)`, async () => {
      const dir = await Deno.makeTempDir({ prefix: `merge-fn-${arch}-` });
      try {
        await generateTinyModel({ out: dir, arch, preset: "tiny", tokenizer: "bytes", seed: 0 });
        const ckpt = await openCheckpoint(dir);
        const model = await LmTrainingModel.create(ckpt, { rank: 2, alpha: 4 }, {
          threads: 1,
          weightLayout: layout,
          maxPendingRank: 4, // re-bakes along the way (baked layout)
        });
        try {
          const rng = new Rng(7, "merge-function");
          // Trained-looking factors: B at PEFT's init scale, A grown to a comparable size.
          const factors = new Map<string, AdapterFactors>(model.adapters.map((a) => [a.name, {
            A: rng.fillNormal(new Float32Array(a.m * a.rank), 0.05),
            B: rng.fillNormal(new Float32Array(a.n * a.rank), 1 / Math.sqrt(3 * a.n)),
          }]));
          const b = batch(1, ckpt.config.vocabSize);
          const before = (await model.evaluate(b, factors)).loss;
          assert.ok(Number.isFinite(before));
          for (let event = 0; event < 6; event++) {
            const merges = model.adapters.map((a) => {
              const f = factors.get(a.name)!;
              // α, β in [0, 1.5]; the last event merges everything (α = 0: A restarts at zero).
              const last = event === 5;
              const alpha = Float32Array.from({ length: a.rank }, () => last ? 0 : 1.5 * rng.nextFloat());
              const beta = Float32Array.from({ length: a.rank }, () => last ? 1 : 1.5 * rng.nextFloat());
              const c = alpha.map((al, k) => 1 - al * beta[k]);
              const U = f.A.slice(), V = f.B.slice();
              f.A.forEach((v, i) => f.A[i] = v * alpha[i % a.rank]);
              f.B.forEach((v, i) => f.B[i] = v * beta[i % a.rank]);
              return { name: a.name, U, V, k: a.rank, c, scale: a.scale };
            });
            await model.weights.mergeLowRankMany(merges);
            const after = (await model.evaluate(b, factors)).loss;
            assert.ok(
              Math.abs(after - before) <= 2e-6 * before,
              `${arch}/${layout}, event ${event}: loss ${after} vs ${before} before the events`,
            );
          }
        } finally {
          await model.release();
          ckpt.close();
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
}
