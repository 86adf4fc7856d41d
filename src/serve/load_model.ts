/**
 * From a model source (local directory or hub id) to a ready CausalLM with
 * its tokenizer: open the checkpoint, compile (or reuse) the serving graph,
 * create the session on the chosen device.
 */
import { openCheckpoint } from "../model/checkpoint.ts";
import { compiledModelDir } from "../model/compile_cache.ts";
import type { ComputeDType } from "../model/decoder_graph.ts";
import { servingModelPath } from "../model/serving_graph.ts";
import { loadTokenizer, type Tokenizer } from "../model/tokenizer.ts";
import { createSession, type Device, SessionError } from "../runtime/session.ts";
import { CausalLM } from "./causal_lm.ts";

export interface LoadModelOptions {
  /** Root for the hub download cache and compiled models. */
  dataDir: string;
  device: Device;
  /** Default: float32 on CPU, float16 on CUDA. */
  dtype?: ComputeDType;
  threads?: number;
}

export interface LoadedModel {
  /** The source as given (directory or hub id). */
  source: string;
  /** Local checkpoint directory. */
  dir: string;
  /** The compiled, transformers.js-loadable directory. */
  compiledDir: string;
  lm: CausalLM;
  tokenizer: Tokenizer;
  device: Device;
}

export function defaultDtype(device: Device): ComputeDType {
  // CPU kernels are fastest and exact in fp32; GroupQueryAttention and tensor cores want half on CUDA.
  return device === "cuda" ? "float16" : "float32";
}

export async function loadModel(source: string, opts: LoadModelOptions): Promise<LoadedModel> {
  const dtype = opts.dtype ?? defaultDtype(opts.device);
  if (dtype === "bfloat16" && opts.device === "cpu") {
    throw new SessionError(
      "bf16 needs DEVICE=cuda: onnxruntime's CPU kernels have no bfloat16 arithmetic (use fp32 or fp16)",
    );
  }
  const ckpt = await openCheckpoint(source, { cacheDir: `${opts.dataDir}/hub` });
  try {
    const compiledDir = await compiledModelDir(ckpt, ckpt.dir, `${opts.dataDir}/compiled`, dtype);
    const tokenizer = await loadTokenizer(ckpt.dir);
    const session = await createSession(servingModelPath(compiledDir, dtype), {
      device: opts.device,
      threads: opts.threads,
    });
    return {
      source,
      dir: ckpt.dir,
      compiledDir,
      lm: new CausalLM(ckpt.config, session, dtype),
      tokenizer,
      device: opts.device,
    };
  } finally {
    ckpt.close();
  }
}
