/**
 * Messages between the main thread (worker_client.ts) and the model worker
 * (model_worker.ts). Requests carry an id; every request gets exactly one
 * reply with the same id, either `ok: true` with the op's result or
 * `ok: false` with a typed error. KV caches never cross the thread boundary:
 * the worker keys them by sequence id; only token ids go in and logits come
 * out (as transferable buffers).
 */
import type { ModelConfig } from "../model/config.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import type { TransferBytes } from "./transfer.ts";
import type { Device } from "./device.ts";

/** What the worker needs to open a compiled serving model. */
export interface LoadSpec {
  /** The serving ONNX file (`servingModelPath(compiledDir, dtype)`). */
  modelPath: string;
  config: ModelConfig;
  dtype: ComputeDType;
  device: Device;
  /** Intra-op threads; default: every core (see session.ts). */
  threads?: number;
  /** The process's WebGPU lock (device_lock.ts), shared by every worker that runs on the device. */
  deviceLock: SharedArrayBuffer;
}

export type WorkerRequest =
  | { id: number; op: "load"; spec: LoadSpec }
  /**
   * Runs new sequences' prompts in one batched (left-padded) pass and keeps
   * each KV cache under its `seq`. `allLogits` needs exactly one prompt.
   */
  | { id: number; op: "prefill"; prompts: PrefillPrompt[]; allLogits: boolean }
  /** One batched step: `tokens[i]` is the next input token of `seqs[i]`. */
  | { id: number; op: "decode"; seqs: number[]; tokens: number[] }
  /** Frees the caches of these sequences; unknown ids are ignored (idempotent). */
  | { id: number; op: "drop"; seqs: number[] }
  | { id: number; op: "close" };

export type WorkerOp = WorkerRequest["op"];

export interface PrefillPrompt {
  seq: number;
  tokens: number[];
}

export interface PrefillResult {
  /** [prompts.length × vocab]: row i holds the logits of prompt i's last position. */
  logits: Float32Array;
  /** log Σ exp of each `logits` row. */
  logSumExp: Float32Array;
  /**
   * Every position of the one prompt, only when asked for: logits
   * [promptLength × vocab] and the log Σ exp of each row.
   */
  allLogits: { logits: Float32Array; logSumExp: Float32Array } | null;
  /** Bytes the step copied between host and device (0 on the CPU). */
  transfer: TransferBytes;
  ms: number;
}

export interface DecodeResult {
  /** [seqs.length × vocab]: row i belongs to sequence `rows[i]`. */
  logits: Float32Array;
  /** log Σ exp of each `logits` row. */
  logSumExp: Float32Array;
  /** The step's sequences in the worker's batch order (saves re-ordering big logits). */
  rows: number[];
  /** Cache columns (past length) the step ran over, masked ones included. */
  width: number;
  /** Sequences copied into the batch cache before this step (their first decode step). */
  joined: number;
  /** Bytes the step copied between host and device (0 on the CPU; on WebGPU the cache never moves). */
  transfer: TransferBytes;
  ms: number;
}

export interface LoadResult {
  /** Inference session load time. */
  ms: number;
}

export interface OpResults {
  load: LoadResult;
  prefill: PrefillResult;
  decode: DecodeResult;
  drop: Record<string, never>;
  close: Record<string, never>;
}

export type WorkerErrorKind =
  /** A message the worker cannot act on (malformed, unknown or duplicate sequence). */
  | "BadRequest"
  /** A step command before a successful load. */
  | "NotLoaded"
  /** The session could not be created. */
  | "LoadFailed"
  /** onnxruntime failed while running a step. */
  | "RunFailed"
  /** The worker died or was closed; no reply will ever come. */
  | "WorkerGone";

export interface WorkerErrorInfo {
  kind: WorkerErrorKind;
  message: string;
}

export type WorkerReply =
  | { [Op in WorkerOp]: { id: number; ok: true; op: Op; result: OpResults[Op] } }[WorkerOp]
  | { id: number; ok: false; error: WorkerErrorInfo };
