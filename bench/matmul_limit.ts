/**
 * The matrix-multiply limit of a training step on this machine, measured
 * through onnxruntime itself: the distinct product shapes of the step's graph
 * (its MatMul / Gemm nodes at the bench's sizes, src/onnx/graph_cost.ts)
 * that carry a visible share of its flops, each a MatMul on the same device
 * with the same intra-op threads, in proportion to how often the step runs
 * them. limit = the products' flops / the time onnxruntime takes for them:
 * the GFLOP/s a step made of nothing but its own products would reach.
 * Interleave `measure()` with the steps (a shared machine's speed drifts),
 * then efficiency = achieved / limit.
 *
 * Two sessions: one with the shapes the step runs many times, each repeated
 * count/10 times (rounded, at least once), one with the rare ones (the
 * vocabulary projection) as often as the step runs them; each gives a
 * flops-per-second rate for its group, and the step's products take
 * Σ group flops / group rate. Each round opens them, runs each once to warm
 * up and once timed, and closes them, so their buffers do not add to the
 * training step's memory. Operands: random, graph inputs (the step's
 * weights are inputs on the CPU too, packed by MLAS per call); uploaded as
 * device tensors on WebGPU; on CUDA the right operand is an initializer (the
 * step's weights are baked there). The output is sliced to one element, so
 * what comes back to the host is not timed (onnxruntime-node copies every
 * fetched output) and a device run ends when its products have.
 */
import type { MatMulCost } from "../src/onnx/graph_cost.ts";
import { GraphBuilder } from "../src/onnx/builder.ts";
import { DeviceCopier } from "../src/runtime/device_copy.ts";
import { ort, type OrtSession, type OrtTensor } from "../src/runtime/ort.ts";
import { type Device, openGraphSession } from "../src/runtime/session.ts";

export interface LimitShape {
  /** "batch×m×k×n", with "(shared)" when the right operand is one matrix for the whole batch. */
  key: string;
  batch: number;
  m: number;
  k: number;
  n: number;
  /** Right operand is one matrix (a weight): the product is one [batch·m, k] × [k, n] GEMM. */
  shared: boolean;
  /** Nodes of this shape in the step. */
  count: number;
  /** Flops of one product. */
  flops: number;
}

export interface LimitRound {
  /** Seconds the step's products (those measured) take at the measured rates. */
  seconds: number;
  /** Their flops. */
  flops: number;
  gflops: number;
  /** GFLOP/s per group ("repeated", "rare"). */
  groups: Record<string, number>;
}

/** Distinct product shapes of a step, most flops first. */
export function productShapes(costs: readonly MatMulCost[]): LimitShape[] {
  const byKey = new Map<string, LimitShape>();
  for (const c of costs) {
    const shared = c.ranks[1] <= 2;
    const key = `${c.batch}x${c.m}x${c.k}x${c.n}${shared && c.batch > 1 ? "(shared)" : ""}`;
    const hit = byKey.get(key);
    if (hit) hit.count++;
    else byKey.set(key, { key, batch: c.batch, m: c.m, k: c.k, n: c.n, shared, count: 1, flops: c.flops });
  }
  return [...byKey.values()].sort((a, b) => b.flops * b.count - a.flops * a.count);
}

/** Shapes a step runs at least this often are sampled: count / REPEAT_DIVISOR products per round. */
const REPEAT_DIVISOR = 10;

interface Group {
  name: string;
  /** Shape and how many products of it the group's session runs. */
  shapes: { shape: LimitShape; repeats: number }[];
}

export class MatMulLimit {
  readonly #groups: Group[];
  readonly #data: Map<string, Float32Array>;

  /**
   * For the shapes holding at least `minShare` of the step's product flops
   * each (the thin adapter products and the like fall below it).
   */
  constructor(
    costs: readonly MatMulCost[],
    readonly opts: { device: Device; threads: number; minShare?: number },
  ) {
    const all = productShapes(costs);
    const total = all.reduce((s, x) => s + x.flops * x.count, 0);
    this.shapes = all.filter((x) => x.flops * x.count >= (opts.minShare ?? 0.0025) * total);
    this.coverage = this.shapes.reduce((s, x) => s + x.flops * x.count, 0) / total;
    const repeated = this.shapes.filter((s) => s.count >= REPEAT_DIVISOR);
    const rare = this.shapes.filter((s) => s.count < REPEAT_DIVISOR);
    this.#groups = [
      { name: "repeated", shapes: repeated.map((s) => ({ shape: s, repeats: Math.round(s.count / REPEAT_DIVISOR) })) },
      { name: "rare", shapes: rare.map((s) => ({ shape: s, repeats: s.count })) },
    ].filter((g) => g.shapes.length > 0);
    // Operand data: views of one random buffer as long as the largest operand (what they hold does not
    // matter to the products' speed; random, not zeros).
    const sizes = this.shapes.flatMap((s) => [s.batch * s.m * s.k, (s.shared ? 1 : s.batch) * s.k * s.n]);
    const pool = random(Math.max(...sizes));
    this.#data = new Map();
    for (const s of this.shapes) {
      this.#data.set(`a:${s.key}`, pool.subarray(0, s.batch * s.m * s.k));
      this.#data.set(`b:${s.key}`, pool.subarray(0, (s.shared ? 1 : s.batch) * s.k * s.n));
    }
  }

  /** The shapes measured. */
  readonly shapes: LimitShape[];
  /** Their share of the step's product flops. */
  readonly coverage: number;

  /** One round: each group's session opened, run once to warm up and once timed, closed. */
  async measure(): Promise<LimitRound> {
    let seconds = 0, flops = 0;
    const groups: Record<string, number> = {};
    for (const group of this.#groups) {
      const { session, feeds, release } = await this.#open(group);
      try {
        await session.run(feeds);
        const t0 = performance.now();
        await session.run(feeds);
        const ran = (performance.now() - t0) / 1000;
        const sampled = group.shapes.reduce((s, x) => s + x.repeats * x.shape.flops, 0);
        const rate = sampled / ran;
        const stepFlops = group.shapes.reduce((s, x) => s + x.shape.count * x.shape.flops, 0);
        groups[group.name] = rate / 1e9;
        seconds += stepFlops / rate;
        flops += stepFlops;
      } finally {
        await release();
      }
    }
    return { seconds, flops, gflops: flops / seconds / 1e9, groups };
  }

  async #open(
    group: Group,
  ): Promise<{ session: OrtSession; feeds: Record<string, OrtTensor>; release(): Promise<void> }> {
    const { device, threads } = this.opts;
    const copier = device === "webgpu" ? new DeviceCopier() : null;
    const g = new GraphBuilder(`matmul_limit_${group.name}`);
    const feeds: Record<string, OrtTensor> = {};
    const feed = async (name: string, data: Float32Array, dims: number[]) => {
      feeds[name] = copier ? await copier.upload(data, dims) : new ort.Tensor("float32", data, dims);
    };
    for (const [i, { shape: s, repeats }] of group.shapes.entries()) {
      const aDims = s.shared ? [s.batch * s.m, s.k] : [s.batch, s.m, s.k];
      const bDims = s.shared ? [s.k, s.n] : [s.batch, s.k, s.n];
      const bData = this.#data.get(`b:${s.key}`)!, aData = this.#data.get(`a:${s.key}`)!;
      const b = device === "cuda"
        ? g.initializer(`b${i}`, "float32", bDims, bData)
        : g.input(`b${i}`, "float32", bDims);
      if (device !== "cuda") await feed(`b${i}`, bData, bDims);
      await feed(`a${i}`, aData, aDims);
      for (let rep = 0; rep < repeats; rep++) {
        // A left operand per repeat, all fed the same tensor: identical products (same inputs) would be
        // merged into one (common-subexpression elimination).
        const a = g.input(`a${i}_${rep}`, "float32", aDims);
        feeds[`a${i}_${rep}`] = feeds[`a${i}`];
        const y = g.matmul(a, b);
        const zeros = aDims.map(() => 0), ones = aDims.map(() => 1), axes = aDims.map((_, j) => j);
        g.output(g.slice(y, zeros, ones, axes), `corner${i}_${rep}`);
      }
      delete feeds[`a${i}`];
    }
    const session = await openGraphSession(g.build(), { device, threads, cpuMemArena: false });
    return {
      session,
      feeds,
      release: async () => {
        await session.release();
        for (const t of new Set(Object.values(feeds))) if (t.location === "gpu-buffer") t.dispose();
        await copier?.release();
      },
    };
  }
}

function random(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < x.length; i++) x[i] = Math.random() - 0.5;
  return x;
}
