/**
 * Runs Merge (W + s · A diag(c) Bᵀ) for many layers, as few runs as the
 * output budget allows: each run allocates every merged W it returns, so a
 * whole LM at once would transiently double the adapted weights' memory.
 */
import { GraphBuilder } from "../src/onnx/builder.ts";
import { ort } from "../src/runtime/ort.ts";
import type { SessionOptions } from "../src/runtime/session.ts";
import { mergeFn, SCALORA_DOMAIN } from "./functions.ts";
import { KernelError, KernelSessions } from "./kernel_sessions.ts";

/** W (m x n), A (m x k), B (n x k), c (k), all row-major float32. */
export interface MergeInput {
  m: number;
  n: number;
  k: number;
  W: Float32Array;
  A: Float32Array;
  B: Float32Array;
  c: Float32Array;
  s: number;
}

/** A merge over a W tensor (host or device): see MergeKernel.runTensors. */
export interface MergeTensorInput extends Omit<MergeInput, "W"> {
  W: ort.Tensor;
}

type MergeShape = Pick<MergeInput, "m" | "n" | "k">;

export interface MergeKernelOptions extends SessionOptions {
  /** Most output bytes per run (default 256 MiB). */
  maxOutputBytes?: number;
}

export class MergeKernel {
  readonly #sessions: KernelSessions;
  readonly #budget: number;

  constructor(options: MergeKernelOptions) {
    this.#sessions = new KernelSessions(options);
    this.#budget = options.maxOutputBytes ?? 256 * 2 ** 20;
  }

  /** Returns the merged weights (new buffers), in input order; `into` receives each as it is ready. */
  async run(items: readonly MergeInput[], into?: (index: number, W: Float32Array) => void): Promise<Float32Array[]> {
    for (const [i, it] of items.entries()) {
      if (it.W.length !== it.m * it.n) throw new KernelError(`Merge: item ${i} W does not match m=${it.m} n=${it.n}`);
    }
    const tensors = items.map((it) => ({ ...it, W: new ort.Tensor("float32", it.W, [it.m, it.n]) }));
    const out = await this.runTensors(tensors, (i, W) => into?.(i, W.data as Float32Array));
    return out.map((W) => W.data as Float32Array);
  }

  /**
   * The same over W tensors wherever they live: on WebGPU with gpu-buffer
   * outputs (the session options' outputLocation) the merge never leaves the
   * device. Results in input order; `into` receives each as it is ready.
   */
  async runTensors(
    items: readonly MergeTensorInput[],
    into?: (index: number, W: ort.Tensor) => void,
  ): Promise<ort.Tensor[]> {
    for (const [i, it] of items.entries()) {
      const ok = it.W.dims[0] === it.m && it.W.dims[1] === it.n && it.A.length === it.m * it.k &&
        it.B.length === it.n * it.k && it.c.length === it.k && it.k > 0;
      if (!ok) throw new KernelError(`Merge: item ${i} buffers do not match m=${it.m} n=${it.n} k=${it.k}`);
    }
    const results: ort.Tensor[] = [];
    for (const chunk of chunks(items, this.#budget)) {
      const key = chunk.map((it) => `${it.m}x${it.n}x${it.k}`).join(",");
      const session = await this.#sessions.get(key, () => buildModel(chunk));
      const feeds: Record<string, ort.Tensor> = {};
      chunk.forEach((it, i) => {
        feeds[`W.${i}`] = it.W;
        feeds[`A.${i}`] = new ort.Tensor("float32", it.A, [it.m, it.k]);
        feeds[`B.${i}`] = new ort.Tensor("float32", it.B, [it.n, it.k]);
        feeds[`c.${i}`] = new ort.Tensor("float32", it.c, [it.k]);
        feeds[`s.${i}`] = new ort.Tensor("float32", Float32Array.of(it.s), []);
      });
      const out = await session.run(feeds);
      chunk.forEach((_, i) => {
        const W = out[`Wout.${i}`];
        into?.(results.length, W);
        results.push(W);
      });
    }
    return results;
  }

  release(): Promise<void> {
    return this.#sessions.release();
  }
}

function chunks<T extends MergeShape>(items: readonly T[], budget: number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [], bytes = 0;
  for (const it of items) {
    const b = it.m * it.n * 4;
    if (cur.length && bytes + b > budget) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(it);
    bytes += b;
  }
  if (cur.length) out.push(cur);
  return out;
}

function buildModel(items: readonly MergeShape[]) {
  const g = new GraphBuilder("merge");
  g.addFunction(mergeFn);
  items.forEach((it, i) => {
    const ins = [
      g.input(`W.${i}`, "float32", [it.m, it.n]),
      g.input(`A.${i}`, "float32", [it.m, it.k]),
      g.input(`B.${i}`, "float32", [it.n, it.k]),
      g.input(`c.${i}`, "float32", [it.k]),
      g.input(`s.${i}`, "float32", []),
    ];
    g.output(g.op1("Merge", ins, {}, {
      domain: SCALORA_DOMAIN,
      names: [`Wout.${i}`],
      types: [{ dtype: "float32", shape: [it.m, it.n] }],
    }));
  });
  return g.build();
}
