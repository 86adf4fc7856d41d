/** onnxruntime session creation: device choice and session options in one place. */
import { ort, type OrtSession } from "./ort.ts";

export type Device = "cpu" | "cuda";

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; default: every core this process may use. */
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
      // Set explicitly: onnxruntime's own default (physical cores as it
      // detects them) picked ONE thread on a 2-vCPU VM, halving prefill speed.
      intraOpNumThreads: opts.threads ?? navigator.hardwareConcurrency,
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
