/** Messages between the model evaluator (main thread) and eval_worker.ts: one request, one reply. */
import type { Device } from "../runtime/device.ts";
import type { EvaluationData, ModelScores } from "./types.ts";

export interface EvalWorkerRequest {
  /** The base checkpoint every target shares: a local directory or a hub id. */
  baseSource: string;
  dataDir: string;
  data: EvaluationData;
  /** `artifact`: a version's delta file (absolute path); null: the base itself. */
  targets: { model: string; artifact: string | null }[];
  device: Device;
  threads?: number;
}

export type EvalWorkerReply =
  | { type: "scores"; scores: ModelScores[]; examples: number }
  /** invalid_data: the set's lines (or lack of them) are at fault; failed: anything else. */
  | { type: "error"; kind: "invalid_data" | "failed"; message: string };
