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
import { chooseDevice, type DeviceChoice } from "../runtime/device.ts";
import { type Device, SessionError } from "../runtime/session.ts";
import { CausalLM } from "../runtime/causal_lm.ts";

export interface PrepareOptions {
  /** Hub cache and compiled models. Default "./data". */
  dataDir?: string;
  /** Default "auto": CUDA, else WebGPU on a hardware adapter, else CPU (runtime/device.ts). */
  device?: Device | "auto";
  /** Default: defaultDtype of the device. */
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

/**
 * fp16 on a GPU (tensor cores, half the memory traffic); fp32 on the CPU,
 * whose kernels are fastest and exact in it, and on a software WebGPU
 * adapter, which computes on the CPU too.
 */
export function defaultDtype(choice: Pick<DeviceChoice, "device" | "software">): ComputeDType {
  return choice.device === "cpu" || choice.software ? "float32" : "float16";
}

export async function prepareModel(source: string, opts: PrepareOptions = {}): Promise<PreparedModel> {
  const choice = chooseDevice(opts.device ?? "auto");
  const device = choice.device;
  const dtype = opts.dtype ?? defaultDtype(choice);
  if (dtype === "bfloat16" && device !== "cuda") {
    throw new SessionError(
      `bf16 needs DEVICE=cuda: onnxruntime's ${device === "cpu" ? "CPU kernels" : "WebGPU shaders"} ` +
        "have no bfloat16 arithmetic (use fp32 or fp16)",
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
  const lm = await CausalLM.open(
    prepared.config,
    servingModelPath(prepared.compiledDir, prepared.dtype),
    prepared.dtype,
    {
      device: prepared.device,
      threads: opts.threads,
    },
  );
  return { ...prepared, lm };
}
