/**
 * Worker entry point of the model evaluator (model_evaluator.ts): scores a
 * base model and versions of it on one JSONL set with the training engine's
 * evaluation (src/train/lm_evaluation.ts). The set is tokenized once, so
 * every model sees the same token ids; a version's weights are its base's
 * with the stored delta added on read (version_source.ts). ORT runs block
 * their thread, hence a Worker; one request per worker.
 */
/// <reference lib="deno.worker" />
import "./worker_globals.ts"; // before anything loads transformers.js
import "../runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { openCheckpoint } from "../model/checkpoint.ts";
import { loadTokenizer } from "../model/tokenizer.ts";
import { DatasetInvalidError, formatIssue } from "../train/dataset_errors.ts";
import { EvaluationDataError, evaluationSet, scoreModel } from "../train/lm_evaluation.ts";
import { DeltaArtifact } from "./delta_artifact.ts";
import type { EvalWorkerReply, EvalWorkerRequest } from "./eval_worker_protocol.ts";
import type { ModelScores } from "./types.ts";
import { versionWeightSource } from "./version_source.ts";

async function evaluate(req: EvalWorkerRequest): Promise<EvalWorkerReply> {
  const ckpt = await openCheckpoint(req.baseSource, { cacheDir: `${req.dataDir}/hub` });
  try {
    const { data } = req;
    const tokenizer = await loadTokenizer(ckpt.dir);
    const set = evaluationSet(tokenizer, ckpt.config.eosTokenIds[0] ?? 0, data.text, data);
    const scores: ModelScores[] = [];
    for (const target of req.targets) {
      const artifact = target.artifact ? await DeltaArtifact.open(target.artifact) : null;
      try {
        const s = await scoreModel(artifact ? versionWeightSource(ckpt, artifact) : ckpt, set, {
          device: req.device,
          threads: req.threads,
        });
        scores.push({
          model: target.model,
          full_valid_loss: s.loss,
          full_valid_mean_token_accuracy: s.tokenAccuracy,
          tokens: s.tokens,
        });
      } finally {
        artifact?.close();
      }
    }
    return { type: "scores", scores, examples: set.examples };
  } finally {
    ckpt.close();
  }
}

self.onmessage = async (e: MessageEvent<EvalWorkerRequest>) => {
  let reply: EvalWorkerReply;
  try {
    reply = await evaluate(e.data);
  } catch (err) {
    if (err instanceof DatasetInvalidError) {
      const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more)` : "";
      reply = { type: "error", kind: "invalid_data", message: `${formatIssue(err.issues[0])}${more}` };
    } else if (err instanceof EvaluationDataError) {
      reply = { type: "error", kind: "invalid_data", message: err.message };
    } else {
      reply = { type: "error", kind: "failed", message: err instanceof Error ? err.message : String(err) };
    }
  }
  self.postMessage(reply);
};
