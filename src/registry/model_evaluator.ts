/**
 * Evaluates servable models (base models and versions) on one JSONL set
 * with the training engine's validation loss, in a Worker (eval_worker.ts),
 * so two models can be compared fairly: the set is tokenized once with the
 * base model's tokenizer, and each model is scored on the same token ids.
 * Models of different base models do not share a tokenizer and cannot be
 * compared this way (invalid_evaluation).
 */
import type { Device } from "../runtime/device.ts";
import { errorText, RegistryError } from "./errors.ts";
import type { EvalWorkerReply, EvalWorkerRequest } from "./eval_worker_protocol.ts";
import type { ModelTarget } from "./model_registry.ts";
import type { EvaluationData, ModelScores } from "./types.ts";
import type { VersionService } from "./versions.ts";

export interface ModelEvaluatorOptions {
  versions: VersionService;
  device: Device;
  threads?: number;
  workerUrl?: URL;
}

export interface EvaluationResult {
  scores: ModelScores[];
  examples: number;
}

export class ModelEvaluator {
  readonly #o: ModelEvaluatorOptions;

  constructor(opts: ModelEvaluatorOptions) {
    this.#o = opts;
  }

  /** Scores of each target, in order. */
  async evaluate(targets: readonly ModelTarget[], data: EvaluationData): Promise<EvaluationResult> {
    const { versions } = this.#o;
    const baseOf = (t: ModelTarget) => (t.kind === "version" ? t.record.baseModel : t.id);
    const base = baseOf(targets[0]);
    const other = targets.find((t) => baseOf(t) !== base);
    if (other) {
      throw new RegistryError(
        "invalid_evaluation",
        `${other.id} is based on ${baseOf(other)}, not ${base}: models of different base models use different ` +
          "tokenizers and cannot be compared on one evaluation set",
        "target",
      );
    }
    // Makes each version's delta present locally (fetched from an object store when this replica lacks it).
    for (const t of targets) if (t.kind === "version") (await versions.openArtifact(t.record)).close();
    const request: EvalWorkerRequest = {
      baseSource: versions.bases.source(base),
      dataDir: versions.dataDir,
      data,
      targets: targets.map((t) => ({
        model: t.id,
        artifact: t.kind === "version" ? versions.artifactPath(t.record) : null,
      })),
      device: this.#o.device,
      threads: this.#o.threads,
    };
    const reply = await this.#run(request);
    if (reply.type === "scores") return { scores: reply.scores, examples: reply.examples };
    if (reply.kind === "invalid_data") {
      throw new RegistryError("invalid_evaluation", `evaluation set (${data.source}): ${reply.message}`, "evaluation");
    }
    throw new RegistryError(
      "evaluation_failed",
      `evaluating ${targets.map((t) => t.id).join(", ")} failed: ${reply.message}`,
    );
  }

  #run(request: EvalWorkerRequest): Promise<EvalWorkerReply> {
    const worker = new Worker(this.#o.workerUrl ?? new URL("./eval_worker.ts", import.meta.url), { type: "module" });
    return new Promise<EvalWorkerReply>((resolve) => {
      const done = (reply: EvalWorkerReply) => {
        worker.terminate();
        resolve(reply);
      };
      worker.onmessage = (e: MessageEvent<EvalWorkerReply>) => done(e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault(); // a crashed evaluation must not take the server down
        done({ type: "error", kind: "failed", message: `the evaluation worker crashed: ${errorText(e.message)}` });
      };
      worker.onmessageerror = () => done({ type: "error", kind: "failed", message: "unreadable reply" });
      worker.postMessage(request);
    });
  }
}
