/**
 * onnxruntime session creation, the one place for it: serving models opened
 * from files and graphs built at run time (training steps, kernels), which are
 * serialized in memory and never written to disk.
 */
import { elementBytes, type Graph } from "../onnx/ir.ts";
import { lowerForWebGpu } from "../onnx/lowering.ts";
import { serializeModel, writeModel } from "../onnx/writer.ts";
import type { Device } from "./device.ts";
import { withDeviceLock } from "./device_lock.ts";
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
  /** openGraphSession: initializer bytes above which the graph goes through a file (default IN_MEMORY_GRAPH_BYTES). */
  maxInMemoryGraphBytes?: number;
  /**
   * onnxruntime's CPU memory arena (default on). Off for training graphs:
   * the arena grows in doubling regions and keeps ~1 GiB beyond a 135M
   * training step's live activations (measured: peak 4.0 vs 3.0 GiB), for
   * ~3% of step time (allocations straight from malloc).
   */
  cpuMemArena?: boolean;
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
 * Initializer bytes above which a graph is written to a temporary file with
 * external data rather than serialized in memory: a protobuf message cannot
 * exceed 2 GiB (a 1B model's baked training graph holds ~5 GB of weights).
 */
export const IN_MEMORY_GRAPH_BYTES = 1024 ** 3;

/** Bytes of a graph's initializers. */
export function initializerBytes(graph: Graph): number {
  return graph.initializers.reduce((n, i) => n + i.shape.reduce((a, b) => a * b, 1) * elementBytes[i.dtype], 0);
}

/**
 * A graph built at run time; intra-op threads default to 1 (training-step
 * graphs and kernels here are small and thread hand-off costs more), inter-op
 * to 1. Serialized in memory, or through a temporary directory (removed once
 * the session holds the weights) when it is too large for one protobuf.
 */
export async function openGraphSession(graph: Graph, opts: SessionOptions): Promise<OrtSession> {
  const lowered = opts.device === "webgpu" ? lowerForWebGpu(graph) : graph;
  const threads = { intraOpNumThreads: opts.threads ?? 1, interOpNumThreads: 1 };
  const what = `graph "${graph.name}"`;
  if (initializerBytes(lowered) <= (opts.maxInMemoryGraphBytes ?? IN_MEMORY_GRAPH_BYTES)) {
    return open(await serializeModel(lowered), what, opts, threads);
  }
  const dir = await Deno.makeTempDir({ prefix: "scalora-graph-" });
  try {
    await writeModel(lowered, `${dir}/model.onnx`);
    return await open(`${dir}/model.onnx`, what, opts, threads);
  } finally {
    // onnxruntime has read (or mapped) the external data by now; an unlinked mapped file stays valid.
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
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
    enableCpuMemArena: opts.cpuMemArena ?? true,
    enableMemPattern: false,
    ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    ...(device === "webgpu" && opts.outputLocation ? { preferredOutputLocation: opts.outputLocation } : {}),
  };
  const create = () =>
    typeof model === "string"
      ? ort.InferenceSession.create(model, options)
      : ort.InferenceSession.create(model, options);
  try {
    return device === "webgpu" ? lockedSession(await withDeviceLock(create)) : await create();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new SessionError(`cannot create an onnxruntime session for ${what} on ${device}: ${msg.split("\n")[0]}`);
  }
}

/** A WebGPU session whose runs and release take the process-wide device lock (see device_lock.ts). */
function lockedSession(session: OrtSession): OrtSession {
  const run = session.run.bind(session), release = session.release.bind(session);
  session.run = ((...args: Parameters<OrtSession["run"]>) => withDeviceLock(() => run(...args))) as OrtSession["run"];
  session.release = () => withDeviceLock(release);
  return session;
}
