/**
 * onnxruntime session creation, the one place for it: serving models opened
 * from files and graphs built at run time (training steps, kernels), which are
 * serialized in memory and never written to disk.
 */
import type { Graph } from "../onnx/ir.ts";
import { serializeModel } from "../onnx/writer.ts";
import { ort, type OrtSession } from "./ort.ts";

export type Device = "cpu" | "cuda";

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; the default depends on the kind of session (see createSession, openGraphSession). */
  threads?: number;
}

export class SessionError extends Error {
  override name = "SessionError";
}

/** A serving model from a file; intra-op threads default to every core this process may use. */
export function createSession(modelPath: string, opts: SessionOptions): Promise<OrtSession> {
  return open(modelPath, modelPath, opts.device, {
    // Set explicitly: onnxruntime's own default (physical cores as it
    // detects them) picked ONE thread on a 2-vCPU VM, halving prefill speed.
    intraOpNumThreads: opts.threads ?? navigator.hardwareConcurrency,
  });
}

/**
 * An in-memory graph; intra-op threads default to 1 (training-step graphs and
 * kernels here are small and thread hand-off costs more), inter-op to 1.
 */
export async function openGraphSession(graph: Graph, opts: SessionOptions): Promise<OrtSession> {
  return open(await serializeModel(graph), `graph "${graph.name}"`, opts.device, {
    intraOpNumThreads: opts.threads ?? 1,
    interOpNumThreads: 1,
  });
}

async function open(
  model: string | Uint8Array,
  what: string,
  device: Device,
  threads: Pick<ort.InferenceSession.SessionOptions, "intraOpNumThreads" | "interOpNumThreads">,
): Promise<OrtSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: device === "cuda" ? ["cuda", "cpu"] : ["cpu"],
    graphOptimizationLevel: "all",
    ...threads,
    // Arena growth on varying shapes would hold peak memory forever.
    enableCpuMemArena: true,
    enableMemPattern: false,
  };
  try {
    return typeof model === "string"
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new SessionError(`cannot create an onnxruntime session for ${what} on ${device}: ${msg.split("\n")[0]}`);
  }
}
