/**
 * Host ↔ device copies of float32 tensors on WebGPU, through onnxruntime
 * itself: a one-node graph run with a cpu input and a gpu-buffer output
 * uploads; the same with a gpu-buffer input and a cpu output downloads.
 * (onnxruntime-node's own Tensor.getData() on a gpu-buffer tensor aborts the
 * process, so downloads must go through a session.)
 */
import { GraphBuilder } from "../onnx/builder.ts";
import { ort, type OrtSession, type OrtTensor } from "./ort.ts";
import { openGraphSession } from "./session.ts";

export class DeviceCopier {
  readonly #sessions = new Map<string, Promise<OrtSession>>();

  #session(rank: number, to: "cpu" | "gpu-buffer"): Promise<OrtSession> {
    const key = `${rank}:${to}`;
    let s = this.#sessions.get(key);
    if (!s) {
      const g = new GraphBuilder(`copy_to_${to === "cpu" ? "host" : "device"}`);
      const x = g.input("x", "float32", Array.from({ length: rank }, (_, i) => `d${i}`));
      // A real kernel, not Identity (which onnxruntime may alias): y = x · 1 is bit-exact.
      g.output(g.mul(x, g.scalar(1, "float32")), "y");
      s = openGraphSession(g.build(), { device: "webgpu", outputLocation: to });
      this.#sessions.set(key, s);
      s.catch(() => this.#sessions.delete(key));
    }
    return s;
  }

  /** A device copy of host data (the caller disposes it). */
  async upload(data: Float32Array, dims: readonly number[]): Promise<OrtTensor> {
    const s = await this.#session(dims.length, "gpu-buffer");
    return (await s.run({ x: new ort.Tensor("float32", data, dims) })).y;
  }

  /** A host copy of a device tensor. */
  async download(t: OrtTensor): Promise<Float32Array> {
    const s = await this.#session(t.dims.length, "cpu");
    return (await s.run({ x: t })).y.data as Float32Array;
  }

  async release(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of all) await (await s.catch(() => null))?.release();
  }
}
