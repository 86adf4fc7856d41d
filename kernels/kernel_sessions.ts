/**
 * Sessions of kernel models, built once per layer-shape signature and reused:
 * every scaling event over the same adapters runs the same model, so session
 * creation is paid once, and one run covers all layers (per-run overhead
 * matters on CUDA, where each run also copies its inputs to the device).
 */
import type { Graph } from "../src/onnx/ir.ts";
import type { OrtSession } from "../src/runtime/ort.ts";
import { openGraphSession, type SessionOptions } from "../src/runtime/session.ts";

export class KernelSessions {
  readonly #sessions = new Map<string, Promise<OrtSession>>();

  constructor(readonly options: SessionOptions) {}

  get(key: string, build: () => Graph): Promise<OrtSession> {
    let s = this.#sessions.get(key);
    if (!s) {
      s = openGraphSession(build(), this.options);
      this.#sessions.set(key, s);
      // A failed build must not poison the cache.
      s.catch(() => this.#sessions.delete(key));
    }
    return s;
  }

  async release(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of all) await (await s.catch(() => null))?.release();
  }
}

export class KernelError extends Error {
  override name = "KernelError";
}
