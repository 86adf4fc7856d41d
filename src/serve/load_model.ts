/**
 * From a model source (local directory or hub id) to a compiled serving model
 * and its tokenizer (`prepareModel`: open the checkpoint, compile or reuse the
 * serving graph), and optionally a session on this thread (`loadModel`; the
 * serving engine creates its session in a worker instead).
 */
import { openCheckpoint } from "../model/checkpoint.ts";
import { compiledModelDir } from "../model/compile_cache.ts";
import type { ModelConfig } from "../model/config.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { servingModelPath } from "../model/serving_graph.ts";
import { loadTokenizer, type Tokenizer } from "../model/tokenizer.ts";
import { resolveDevice } from "../runtime/device.ts";
import { createSession, type Device, SessionError } from "../runtime/session.ts";
import { CausalLM } from "../runtime/causal_lm.ts";

export interface PrepareOptions {
  /** Hub cache and compiled models. Default "./data". */
  dataDir?: string;
  /** Default "auto": CUDA when available. */
  device?: Device | "auto";
  /** Default: float32 on CPU, float16 on CUDA. */
  dtype?: ComputeDType;
}

/** A compiled model and its tokenizer, without an inference session. */
export interface PreparedModel {
  /** The source as given (directory or hub id). */
  source: string;
  /** Local checkpoint directory. */
  dir: string;
  /** The compiled, transformers.js-loadable directory. */
  compiledDir: string;
  config: ModelConfig;
  dtype: ComputeDType;
  tokenizer: Tokenizer;
  device: Device;
}

export interface LoadModelOptions extends PrepareOptions {
  threads?: number;
}

export interface LoadedModel extends PreparedModel {
  lm: CausalLM;
}

export function defaultDtype(device: Device): ComputeDType {
  // CPU kernels are fastest and exact in fp32; tensor cores want half precision on CUDA.
  return device === "cuda" ? "float16" : "float32";
}

export async function prepareModel(source: string, opts: PrepareOptions = {}): Promise<PreparedModel> {
  const device = resolveDevice(opts.device ?? "auto");
  const dtype = opts.dtype ?? defaultDtype(device);
  if (dtype === "bfloat16" && device === "cpu") {
    throw new SessionError(
      "bf16 needs DEVICE=cuda: onnxruntime's CPU kernels have no bfloat16 arithmetic (use fp32 or fp16)",
    );
  }
  const dataDir = opts.dataDir ?? "./data";
  const ckpt = await openCheckpoint(source, { cacheDir: `${dataDir}/hub` });
  try {
    const compiledDir = await compiledModelDir(ckpt, ckpt.dir, `${dataDir}/compiled`, dtype);
    const tokenizer = await loadTokenizer(ckpt.dir);
    return { source, dir: ckpt.dir, compiledDir, config: ckpt.config, dtype, tokenizer, device };
  } finally {
    ckpt.close();
  }
}

export async function loadModel(source: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const prepared = await prepareModel(source, opts);
  const session = await createSession(servingModelPath(prepared.compiledDir, prepared.dtype), {
    device: prepared.device,
    threads: opts.threads,
  });
  return { ...prepared, lm: new CausalLM(prepared.config, session, prepared.dtype) };
}
