/**
 * Opens an onnxruntime session over an in-memory graph (training graphs and
 * kernels are built at run time, never written to disk).
 */
import { serializeModel } from "../onnx/writer.ts";
import type { Graph } from "../onnx/ir.ts";
import { ort, type OrtSession } from "../runtime/ort.ts";
import type { Device } from "../runtime/session.ts";

export interface GraphSessionOptions {
  device: Device;
  /** Intra-op threads (default 1: training-step graphs here are small and thread hand-off costs more). */
  threads?: number;
}

export class GraphSessionError extends Error {
  override name = "GraphSessionError";
}

export async function openGraphSession(graph: Graph, opts: GraphSessionOptions): Promise<OrtSession> {
  const bytes = await serializeModel(graph);
  try {
    return await ort.InferenceSession.create(bytes, {
      executionProviders: opts.device === "cuda" ? ["cuda", "cpu"] : ["cpu"],
      graphOptimizationLevel: "all",
      intraOpNumThreads: opts.threads ?? 1,
      interOpNumThreads: 1,
      enableCpuMemArena: true,
      enableMemPattern: false,
    });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new GraphSessionError(
      `cannot open a session for graph "${graph.name}" on ${opts.device}: ${msg.split("\n")[0]}`,
    );
  }
}
