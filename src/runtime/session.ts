/**
 * onnxruntime session creation, the one place for it: serving models opened
 * from files and graphs built at run time (training steps, kernels), which are
 * serialized in memory and never written to disk.
 */
import type { Graph } from "../onnx/ir.ts";
import { lowerForWebGpu } from "../onnx/lowering.ts";
import { serializeModel } from "../onnx/writer.ts";
import type { Device } from "./device.ts";
import { ort, type OrtSession } from "./ort.ts";

export type { Device } from "./device.ts";

/** Where a run's outputs land: host memory, or (WebGPU only) GPU buffers that later runs take as inputs. */
export type OutputLocation = "cpu" | "gpu-buffer";

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; the default depends on the kind of session (see createSession, openGraphSession). */
  threads?: number;
  /**
   * WebGPU: where outputs land, for all or per output name (default "cpu").
   * onnxruntime-node 1.30 looks a per-name location up by the output's
   * position among the fetched outputs, not by its name: with a per-name map,
   * fetch every output, in the session's order (CausalLM does).
   */
  outputLocation?: OutputLocation | Record<string, OutputLocation>;
  /** Write onnxruntime's profile (per-node times and execution provider) to files with this prefix. */
  profilePrefix?: string;
}

/** The execution providers of a device, in preference order (onnxruntime falls back along the list). */
export function executionProviders(device: Device): string[] {
  switch (device) {
    case "cuda":
      return ["cuda", "cpu"];
    case "webgpu":
      return ["webgpu", "cpu"];
    case "cpu":
      return ["cpu"];
  }
}

export class SessionError extends Error {
  override name = "SessionError";
}

/** A serving model from a file; intra-op threads default to every core this process may use. */
export function createSession(modelPath: string, opts: SessionOptions): Promise<OrtSession> {
  return open(modelPath, modelPath, opts, {
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
  const lowered = opts.device === "webgpu" ? lowerForWebGpu(graph) : graph;
  return open(await serializeModel(lowered), `graph "${graph.name}"`, opts, {
    intraOpNumThreads: opts.threads ?? 1,
    interOpNumThreads: 1,
  });
}

async function open(
  model: string | Uint8Array,
  what: string,
  opts: SessionOptions,
  threads: Pick<ort.InferenceSession.SessionOptions, "intraOpNumThreads" | "interOpNumThreads">,
): Promise<OrtSession> {
  const device = opts.device;
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: executionProviders(device),
    graphOptimizationLevel: "all",
    ...threads,
    // Arena growth on varying shapes would hold peak memory forever.
    enableCpuMemArena: true,
    enableMemPattern: false,
    ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    ...(device === "webgpu" && opts.outputLocation ? { preferredOutputLocation: opts.outputLocation } : {}),
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
