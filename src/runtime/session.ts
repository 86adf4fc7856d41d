/** onnxruntime session creation: device choice and session options in one place. */
import { ort, type OrtSession } from "./ort.ts";

export type Device = "cpu" | "cuda";

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; default lets ORT use every core. */
  threads?: number;
}

export class SessionError extends Error {
  override name = "SessionError";
}

export async function createSession(modelPath: string, opts: SessionOptions): Promise<OrtSession> {
  const executionProviders = opts.device === "cuda" ? ["cuda", "cpu"] : ["cpu"];
  try {
    return await ort.InferenceSession.create(modelPath, {
      executionProviders,
      graphOptimizationLevel: "all",
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      // Arena growth on varying shapes would hold peak memory forever.
      enableCpuMemArena: true,
      enableMemPattern: false,
    });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new SessionError(
      `cannot create an onnxruntime session for ${modelPath} on ${opts.device}: ${msg.split("\n")[0]}`,
    );
  }
}
